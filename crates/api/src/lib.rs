//! The palisade server: command line, settings assembly, router and handlers.
//! `build_router` is separate from serving so tests can run the real stack on port 0.

pub mod app;
pub mod background;
pub mod cli;
pub mod data_rights;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod middleware;
pub mod openapi;
pub mod resources;
pub mod routes;
pub mod settings;
pub mod state;
pub mod webhooks;

pub use app::{Application, StartupError, build_router};
pub use settings::{Environment, Settings};
pub use state::AppState;
