//! Tenant erasure, second step: the `tenant.purge` job deletes every row of every tenant deleted
//! longer than `tenancy.erasure_grace` ago, from every table with a `tenant_id` column (found in
//! the catalog, so a table added later is purged without a change here), then the tenant itself,
//! and leaves one tombstone (id, deletion time, who asked, purge time) in `tenant_tombstones`.

use std::time::Duration;

use palisade_ops::Metrics;
use palisade_store::{Database, StoreError, Tx, on_tx};
use time::OffsetDateTime;
use uuid::Uuid;

/// Purges the tenants whose erasure grace has run out.
pub const PURGE_TENANTS: &str = "tenant.purge";

/// Purges every tenant deleted at least `grace` ago; returns their ids. Also refreshes the
/// `tenants_pending_purge` gauge.
pub async fn purge_due(db: &Database, grace: Duration, metrics: &Metrics) -> Result<Vec<Uuid>, StoreError> {
    let cutoff = OffsetDateTime::now_utc() - grace;
    let mut tx = db.begin().await?;
    let due: Vec<(Uuid,)> = on_tx!(&mut tx, |conn| sqlx::query_as(
        "SELECT id FROM tenants WHERE deleted_at IS NOT NULL AND deleted_at <= $1 ORDER BY deleted_at"
    )
    .bind(cutoff)
    .fetch_all(conn)
    .await)
    .map_err(|e| db.observe(e))?;
    tx.commit().await?;
    let mut purged = Vec::with_capacity(due.len());
    for (tenant,) in due {
        purge(db, tenant).await?;
        metrics.tenant_purges_total.inc();
        tracing::info!(%tenant, "tenant purged after its erasure grace");
        purged.push(tenant);
    }
    let mut tx = db.begin().await?;
    let (pending,): (i64,) =
        on_tx!(&mut tx, |conn| sqlx::query_as("SELECT count(*) FROM tenants WHERE deleted_at IS NOT NULL")
            .fetch_one(conn)
            .await)
        .map_err(|e| db.observe(e))?;
    tx.commit().await?;
    metrics.tenants_pending_purge.set(pending);
    Ok(purged)
}

/// Purges one deleted tenant in one transaction (all or nothing).
async fn purge(db: &Database, tenant: Uuid) -> Result<(), StoreError> {
    let mut tx = db.begin().await?;
    // Jobs are platform-wide: those naming the tenant (its exports' jobs) go too.
    let pattern = format!("%{tenant}%");
    on_tx!(&mut tx, |conn| sqlx::query("DELETE FROM jobs WHERE payload LIKE $1 OR key LIKE $1")
        .bind(&pattern)
        .execute(conn)
        .await
        .map(drop))
    .map_err(|e| db.observe(e))?;
    match &mut tx {
        Tx::Postgres(conn) => {
            // The owner's function (migrations/postgres/0008_data_rights.sql): the server may
            // only append to the audit log and the outbox.
            sqlx::query("SELECT palisade_purge_tenant($1)")
                .bind(tenant)
                .execute(&mut **conn)
                .await
                .map_err(|e| db.observe(e))?;
        }
        Tx::Sqlite(conn) => purge_sqlite(conn, tenant).await.map_err(|e| db.observe(e))?,
    }
    tx.commit().await?;
    Ok(())
}

/// SQLite's version of `palisade_purge_tenant`: the same catalog discovery and retry passes.
async fn purge_sqlite(conn: &mut sqlx::SqliteConnection, tenant: Uuid) -> Result<(), sqlx::Error> {
    let victim: Option<(Option<OffsetDateTime>, Option<String>)> =
        sqlx::query_as("SELECT deleted_at, deleted_by FROM tenants WHERE id = $1")
            .bind(tenant)
            .fetch_optional(&mut *conn)
            .await?;
    let Some((Some(deleted_at), deleted_by)) = victim else { return Ok(()) };
    let mut pending: Vec<String> = sqlx::query_scalar(
        "SELECT m.name FROM sqlite_master m, pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND p.name = 'tenant_id' ORDER BY m.name",
    )
    .fetch_all(&mut *conn)
    .await?;
    while !pending.is_empty() {
        let mut blocked = Vec::new();
        for table in &pending {
            let sql = format!("DELETE FROM \"{}\" WHERE tenant_id = $1", table.replace('"', "\"\""));
            match sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant).execute(&mut *conn).await {
                Ok(_) => {}
                Err(sqlx::Error::Database(error)) if error.is_foreign_key_violation() => blocked.push(table.clone()),
                Err(error) => return Err(error),
            }
        }
        if blocked.len() == pending.len() {
            return Err(sqlx::Error::Protocol(format!(
                "rows of {blocked:?} are referenced from outside tenant {tenant}"
            )));
        }
        pending = blocked;
    }
    sqlx::query("DELETE FROM tenants WHERE id = $1").bind(tenant).execute(&mut *conn).await?;
    sqlx::query(
        "INSERT INTO tenant_tombstones (id, deleted_at, deleted_by, purged_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(tenant)
    .bind(deleted_at)
    .bind(deleted_by.unwrap_or_default())
    .bind(OffsetDateTime::now_utc())
    .execute(&mut *conn)
    .await?;
    Ok(())
}
