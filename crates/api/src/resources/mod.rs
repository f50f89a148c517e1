//! The application's resources, each one module holding its scopes, routes, schemas and queries.

pub mod todos;
