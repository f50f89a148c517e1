//! The tenant-scoped database session: one transaction, and on PostgreSQL the transaction-local
//! `app.tenant_id` that the row-level security policies compare every row against.

use palisade_store::{Database, Tx, on_tx};
use uuid::Uuid;

use crate::{RequestMeta, TenancyError, audit::Change, write};

/// A transaction bound to one tenant, begun on first use: a handler's extractors (a slowly
/// uploaded body, say) finish before any connection or lock is held for it. Dropping the session
/// without [`TenantSession::commit`] rolls back.
#[derive(Debug)]
pub struct TenantSession {
    db: Database,
    tenant_id: Uuid,
    access: Access,
    tx: Option<Tx>,
}

/// What a session's transaction may do, which decides how it begins (see [`Database::begin_read`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads only: on SQLite a deferred transaction that waits for no lock.
    Read,
    /// Reads and writes: on SQLite the write lock is taken when it begins.
    Write,
}

impl TenantSession {
    /// A read-write session whose transaction begins when first used.
    pub fn lazy(db: Database, tenant_id: Uuid) -> Self {
        Self::lazy_with(db, tenant_id, Access::Write)
    }

    /// A session of the given access whose transaction begins when first used.
    pub fn lazy_with(db: Database, tenant_id: Uuid, access: Access) -> Self {
        Self { db, tenant_id, access, tx: None }
    }

    /// A read-write session whose transaction has begun.
    pub async fn begin(db: &Database, tenant_id: Uuid) -> Result<Self, TenancyError> {
        Self::begin_with(db, tenant_id, Access::Write).await
    }

    /// A session of the given access whose transaction has begun.
    pub async fn begin_with(db: &Database, tenant_id: Uuid, access: Access) -> Result<Self, TenancyError> {
        let mut session = Self::lazy_with(db.clone(), tenant_id, access);
        session.tx().await?;
        Ok(session)
    }

    pub fn access(&self) -> Access {
        self.access
    }

    pub fn tenant_id(&self) -> Uuid {
        self.tenant_id
    }

    /// The transaction, for repository functions (which take the tenant explicitly as well).
    pub async fn tx(&mut self) -> Result<&mut Tx, TenancyError> {
        if let Some(tx) = self.tx.take() {
            return Ok(self.tx.insert(tx));
        }
        let tx = self.open_tx().await?;
        Ok(self.tx.insert(tx))
    }

    /// Commits the session's change with its audit row ([`crate::write::commit`]).
    pub async fn commit(mut self, actor: &str, change: Change<'_>, meta: &RequestMeta) -> Result<(), TenancyError> {
        let tx = match self.tx.take() {
            Some(tx) => tx,
            None => self.open_tx().await?,
        };
        write::commit(tx, self.tenant_id, actor, change, meta).await
    }

    /// A new transaction of the session's access, bound to its tenant.
    async fn open_tx(&self) -> Result<Tx, TenancyError> {
        Ok(self.db.begin_for_tenant(self.tenant_id, self.access == Access::Read).await?)
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
