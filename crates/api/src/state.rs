//! The one application state every handler takes through `State`.

use std::sync::Arc;

use axum::extract::FromRef;
use palisade_auth::Authenticator;
use palisade_ops::{Metrics, Readiness};
use palisade_store::{Database, Redis};
use palisade_tenancy::Tenancy;

use crate::Settings;

#[derive(Debug, Clone, FromRef)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    pub db: Database,
    pub redis: Option<Redis>,
    pub auth: Arc<Authenticator>,
    pub tenancy: Tenancy,
}
