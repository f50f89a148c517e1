//! The application's resources. Each is one module, `src/resources/<name>.rs`, holding its
//! scopes, routes, schemas and queries, with a `routes()` function the API router merges. The
//! build script (`crates/api/build.rs`) declares the modules found here, so adding a resource
//! edits no list: see docs/adopting.md.

include!(concat!(env!("OUT_DIR"), "/resources.rs"));
