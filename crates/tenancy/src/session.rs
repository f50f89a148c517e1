//! The tenant-scoped database session: one transaction, and on PostgreSQL the transaction-local
//! `app.tenant_id` that the row-level security policies compare every row against.

use palisade_store::{Database, Tx, on_tx};
use uuid::Uuid;

use crate::TenancyError;

/// A transaction bound to one tenant. Dropping it without [`TenantSession::commit`] rolls back.
#[derive(Debug)]
pub struct TenantSession {
    tenant_id: Uuid,
    tx: Tx,
}

impl TenantSession {
    /// Begins a transaction for `tenant_id`.
    pub async fn begin(db: &Database, tenant_id: Uuid) -> Result<Self, TenancyError> {
        let mut tx = db.begin().await?;
        bind_tenant(&mut tx, tenant_id).await?;
        Ok(Self { tenant_id, tx })
    }

    pub fn tenant_id(&self) -> Uuid {
        self.tenant_id
    }

    /// The transaction, for repository functions (which take the tenant explicitly as well).
    pub fn tx(&mut self) -> &mut Tx {
        &mut self.tx
    }

    pub async fn commit(self) -> Result<(), TenancyError> {
        Ok(self.tx.commit().await?)
    }
}

/// Sets `app.tenant_id` for the rest of the transaction (`set_config(…, true)` is local to it,
/// so a pooled connection never carries one request's tenant into the next). SQLite has no
/// row-level security; there the explicit tenant argument of every query is the isolation.
pub async fn bind_tenant(tx: &mut Tx, tenant_id: Uuid) -> Result<(), TenancyError> {
    if let Tx::Postgres(_) = tx {
        on_tx!(tx, |conn| sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
            .bind(tenant_id.to_string())
            .execute(conn)
            .await
            .map(drop))?;
    }
    Ok(())
}
