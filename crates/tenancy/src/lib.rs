//! Tenant isolation. Tenants and their resolution from a request, the tenant-scoped database
//! session every tenant query runs in (with PostgreSQL row-level security keyed on
//! `app.tenant_id`), users provisioned per tenant, and the audit log.
//!
//! The rule that keeps tenants apart even when a handler has a bug: every repository function
//! takes the tenant explicitly, and on PostgreSQL the session's `app.tenant_id` makes rows of
//! any other tenant invisible and unwritable regardless of the SQL.

pub mod api_keys;
pub mod audit;
pub mod config;
pub mod context;
pub mod error;
pub mod membership;
pub mod outbox;
pub mod resolve;
pub mod session;
pub mod tenants;
pub mod users;
pub mod write;

pub use config::{TenancyConfig, TenantSource};
pub use context::{Enforced, RequestMeta, Tenancy, TenantContext};
pub use error::TenancyError;
pub use membership::Memberships;
pub use session::TenantSession;
pub use tenants::{Tenant, TenantStatus};
pub use users::{User, UserRole};

#[cfg(test)]
mod tests {
    /// Every rate limit lives in the edge, which tenancy reaches only through
    /// [`context::CallerLimits`]; the client address is an `ops` type. A dependency on the edge
    /// would let limits creep back in here.
    #[test]
    fn tenancy_does_not_depend_on_the_edge() {
        let manifest = include_str!("../Cargo.toml");
        assert!(!manifest.contains("palisade-edge"), "crates/tenancy/Cargo.toml depends on palisade-edge");
    }
}
