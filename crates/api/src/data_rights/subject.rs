//! A person's own data across tenants (GDPR art. 15 and 17). A person is known to the platform
//! only by the token subject; each tenant they used has one `users` row for it. Access lists those
//! rows; erasure replaces the subject in each with a random pseudonym (the rows stay, so what the
//! user created keeps a valid `created_by`), auditing `user.erased` under that pseudonym. Audit
//! rows that name the subject as actor are kept until `jobs.audit_retention` (docs/data-rights.md).

use palisade_store::{Database, Tx, on_tx};
use palisade_tenancy::{Memberships, RequestMeta, TenancyError, UserRole, audit::Change, session::bind_tenant, write};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

/// One tenant the subject is a user of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Membership {
    pub tenant_id: Uuid,
    pub tenant_slug: String,
    pub tenant_name: String,
    /// The user's id in that tenant.
    pub user_id: Uuid,
    pub role: UserRole,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

/// Everything the platform holds about the caller as a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SubjectData {
    /// The token subject: the only personal identifier the platform stores for a user.
    pub subject: String,
    pub memberships: Vec<Membership>,
}

/// The result of an erasure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Erasure {
    /// Users (one per tenant) whose subject was replaced.
    pub erased: u64,
    /// What replaced the subject in those users and names them in the `user.erased` audit rows.
    pub pseudonym: String,
}

type Row = (Uuid, Uuid, String, OffsetDateTime, OffsetDateTime);

/// The subject's users in every tenant not deleted.
pub async fn memberships(db: &Database, subject: &str) -> Result<Vec<Membership>, TenancyError> {
    let mut tx = db.begin_read().await?;
    let rows: Vec<Row> =
        match &mut tx {
            // Users are row-level secured per tenant: the owner's function visits every tenant.
            Tx::Postgres(conn) => sqlx::query_as(
                "SELECT id, tenant_id, role, created_at, updated_at FROM palisade_subject_memberships($1) ORDER BY id",
            )
            .bind(subject)
            .fetch_all(&mut **conn)
            .await?,
            Tx::Sqlite(conn) => {
                sqlx::query_as(
                    "SELECT u.id, u.tenant_id, u.role, u.created_at, u.updated_at FROM users u \
                 JOIN tenants t ON t.id = u.tenant_id WHERE u.subject = $1 AND t.deleted_at IS NULL ORDER BY u.id",
                )
                .bind(subject)
                .fetch_all(&mut **conn)
                .await?
            }
        };
    let mut found = Vec::with_capacity(rows.len());
    for (user_id, tenant_id, role, created_at, updated_at) in rows {
        let tenant: Option<(String, String)> =
            on_tx!(&mut tx, |conn| sqlx::query_as("SELECT slug, name FROM tenants WHERE id = $1")
                .bind(tenant_id)
                .fetch_optional(conn)
                .await)?;
        let Some((tenant_slug, tenant_name)) = tenant else { continue };
        let role = if role == "admin" { UserRole::Admin } else { UserRole::Member };
        found.push(Membership { tenant_id, tenant_slug, tenant_name, user_id, role, created_at, updated_at });
    }
    tx.commit().await?;
    Ok(found)
}

/// Replaces `subject` in each of its users with one new pseudonym, auditing `user.erased` in each
/// tenant (one transaction per tenant: each tenant's audit row commits with its change).
pub async fn erase(
    db: &Database,
    cache: &Memberships,
    subject: &str,
    meta: &RequestMeta,
) -> Result<Erasure, TenancyError> {
    let pseudonym = format!("erased:{}", Uuid::new_v4());
    let mut erased = 0;
    for membership in memberships(db, subject).await? {
        let mut tx = db.begin().await?;
        bind_tenant(&mut tx, membership.tenant_id).await?;
        let updated = on_tx!(&mut tx, |conn| sqlx::query(
            "UPDATE users SET subject = $1, updated_at = $2 WHERE tenant_id = $3 AND id = $4 AND subject = $5"
        )
        .bind(&pseudonym)
        .bind(OffsetDateTime::now_utc())
        .bind(membership.tenant_id)
        .bind(membership.user_id)
        .bind(subject)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
        if updated == 0 {
            continue;
        }
        let id = membership.user_id.to_string();
        let change = Change { action: "user.erased", resource_type: "user", resource_id: &id };
        write::commit(tx, membership.tenant_id, &pseudonym, change, meta).await?;
        // The subject no longer names this user: no replica may serve it from memory.
        cache.changed(membership.tenant_id).await;
        erased += updated;
    }
    Ok(Erasure { erased, pseudonym })
}
