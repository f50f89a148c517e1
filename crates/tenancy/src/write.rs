//! The one way a change to tenant data is committed. Handlers make their change in a transaction
//! and end it here: the audit row is inserted into that same transaction, exactly once, right
//! before the commit, so an audit event exists exactly when its change does and no resource
//! writes (or forgets) its own. The change's outbox event ([`crate::outbox`]) goes in with it.

use palisade_store::{Database, Tx};
use uuid::Uuid;

use crate::{
    RequestMeta, TenancyError,
    audit::{self, Change},
    outbox,
    session::bind_tenant,
    tenants::{self, Tenant},
};

/// Records `change`, made by `actor` in `tenant_id`, and commits `tx`.
pub async fn commit(
    mut tx: Tx,
    tenant_id: Uuid,
    actor: &str,
    change: Change<'_>,
    meta: &RequestMeta,
) -> Result<(), TenancyError> {
    audit::record(&mut tx, tenant_id, actor, change, meta).await?;
    outbox::record(&mut tx, tenant_id, change.action, &outbox::ChangePayload::of(&change, actor)).await?;
    tx.commit().await?;
    Ok(())
}

/// Creates a tenant with its `tenant.created` audit row, in one transaction.
pub async fn create_tenant(
    db: &Database,
    slug: &str,
    name: &str,
    actor: &str,
    meta: &RequestMeta,
) -> Result<Tenant, TenancyError> {
    let mut tx = db.begin().await?;
    let tenant = tenants::create(&mut tx, slug, name).await?;
    bind_tenant(&mut tx, tenant.id).await?;
    let id = tenant.id.to_string();
    commit(tx, tenant.id, actor, Change { action: "tenant.created", resource_type: "tenant", resource_id: &id }, meta)
        .await?;
    Ok(tenant)
}
