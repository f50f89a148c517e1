//! Tenant exports: the `tenant_exports` rows, the `export.tenant` job that fills one with its
//! archive, and the `cleanup.exports` job that deletes expired ones.

use std::time::{Duration, Instant};

use palisade_jobs::{Job, JobFailure, JobsError, Queue};
use palisade_ops::Metrics;
use palisade_store::{Database, Page, PageRequest, StoreError, Tx, on_tx};
use palisade_tenancy::{RequestMeta, TenancyError, audit::Change, session::bind_tenant, write};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    ExportsConfig,
    archive::{self, FORMAT_VERSION, ManifestFile, TABLES},
};

/// Builds one export's archive.
pub const EXPORT_TENANT: &str = "export.tenant";
/// Deletes exports past `exports.retention`.
pub const PURGE_EXPORTS: &str = "cleanup.exports";
/// The actor of the audit rows written by the export job.
const SYSTEM_ACTOR: &str = "system:export";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = ExportStatus)]
pub enum Status {
    Pending,
    Running,
    Ready,
    Failed,
}

impl Status {
    fn parse(value: &str) -> Self {
        match value {
            "running" => Self::Running,
            "ready" => Self::Ready,
            "failed" => Self::Failed,
            _ => Self::Pending,
        }
    }
}

/// An export of the tenant's data, as its status endpoint shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Export {
    pub id: Uuid,
    pub status: Status,
    /// The subject that asked for it.
    pub requested_by: String,
    /// The archive's format version (docs/data-rights.md).
    pub format_version: i32,
    /// The archive's size in bytes, once ready.
    pub size_bytes: Option<i64>,
    /// Lowercase hex SHA-256 of the archive, once ready.
    pub sha256: Option<String>,
    /// The archive's files with their row counts and checksums, once ready.
    pub files: Option<Vec<ManifestFile>>,
    /// Why it failed.
    pub error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub completed_at: Option<OffsetDateTime>,
    /// The export and its archive are deleted then.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
}

#[derive(sqlx::FromRow)]
struct ExportRow {
    id: Uuid,
    status: String,
    requested_by: String,
    format_version: i32,
    size_bytes: Option<i64>,
    sha256: Option<String>,
    manifest: Option<String>,
    error: Option<String>,
    created_at: OffsetDateTime,
    completed_at: Option<OffsetDateTime>,
    expires_at: OffsetDateTime,
}

impl From<ExportRow> for Export {
    fn from(row: ExportRow) -> Self {
        let files =
            row.manifest.as_deref().and_then(|m| serde_json::from_str::<archive::Manifest>(m).ok()).map(|m| m.files);
        Self {
            id: row.id,
            status: Status::parse(&row.status),
            requested_by: row.requested_by,
            format_version: row.format_version,
            size_bytes: row.size_bytes,
            sha256: row.sha256,
            files,
            error: row.error,
            created_at: row.created_at,
            completed_at: row.completed_at,
            expires_at: row.expires_at,
        }
    }
}

macro_rules! columns {
    () => {
        "id, status, requested_by, format_version, size_bytes, sha256, manifest, error, created_at, completed_at, \
         expires_at"
    };
}

/// The job's payload.
#[derive(Debug, Serialize, Deserialize)]
struct ExportJob {
    export_id: Uuid,
    tenant_id: Uuid,
}

/// Inserts a pending export and enqueues its job, both in `tx` (so the job exists exactly when the
/// export does).
pub async fn request(
    tx: &mut Tx,
    queue: &Queue,
    tenant_id: Uuid,
    requested_by: &str,
    retention: Duration,
) -> Result<Export, TenancyError> {
    let id = Uuid::now_v7();
    let now = OffsetDateTime::now_utc();
    let sql = concat!(
        "INSERT INTO tenant_exports (id, tenant_id, status, requested_by, format_version, created_at, expires_at) \
         VALUES ($1, $2, 'pending', $3, $4, $5, $6) RETURNING ",
        columns!()
    );
    let row: ExportRow = on_tx!(tx, |conn| sqlx::query_as(sql)
        .bind(id)
        .bind(tenant_id)
        .bind(requested_by)
        .bind(FORMAT_VERSION)
        .bind(now)
        .bind(now + retention)
        .fetch_one(conn)
        .await)?;
    queue
        .enqueue_in(tx, EXPORT_TENANT, &format!("export:{id}"), &ExportJob { export_id: id, tenant_id }, now)
        .await
        .map_err(|e| match e {
            JobsError::Store(store) => TenancyError::Store(store),
            JobsError::Payload(payload) => TenancyError::Event(payload.to_string()),
        })?;
    Ok(row.into())
}

pub async fn get(tx: &mut Tx, tenant_id: Uuid, id: Uuid) -> Result<Option<Export>, TenancyError> {
    let sql = concat!("SELECT ", columns!(), " FROM tenant_exports WHERE tenant_id = $1 AND id = $2");
    let row: Option<ExportRow> =
        on_tx!(tx, |conn| sqlx::query_as(sql).bind(tenant_id).bind(id).fetch_optional(conn).await)?;
    Ok(row.map(Export::from))
}

/// Newest first.
pub async fn list(tx: &mut Tx, tenant_id: Uuid, page: &PageRequest) -> Result<Page<Export>, TenancyError> {
    let (limit, before) = page.parse()?;
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM tenant_exports WHERE tenant_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
    );
    let rows: Vec<ExportRow> = on_tx!(tx, |conn| sqlx::query_as(sql)
        .bind(tenant_id)
        .bind(before)
        .bind(i64::from(limit) + 1)
        .fetch_all(conn)
        .await)?;
    Ok(Page::from_rows(rows.into_iter().map(Export::from).collect(), limit, |e| e.id))
}

/// The archive of a ready export.
pub async fn archive(tx: &mut Tx, tenant_id: Uuid, id: Uuid) -> Result<Option<Vec<u8>>, TenancyError> {
    let row: Option<(Option<Vec<u8>>,)> = on_tx!(tx, |conn| sqlx::query_as(
        "SELECT archive FROM tenant_exports WHERE tenant_id = $1 AND id = $2 AND status = 'ready'"
    )
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(conn)
    .await)?;
    Ok(row.and_then(|(archive,)| archive))
}

/// Why an export attempt ended without an archive.
#[derive(Debug, thiserror::Error)]
enum ExportError {
    /// Final: the export is marked failed, the job ends.
    #[error("{0}")]
    Refused(String),
    /// Retried by the job runner.
    #[error(transparent)]
    Tenancy(#[from] TenancyError),
}

impl From<sqlx::Error> for ExportError {
    fn from(error: sqlx::Error) -> Self {
        Self::Tenancy(error.into())
    }
}

impl From<StoreError> for ExportError {
    fn from(error: StoreError) -> Self {
        Self::Tenancy(error.into())
    }
}

/// The `export.tenant` handler: builds the archive from one consistent snapshot, stores it and
/// records `export.completed` (audit and outbox), or marks the export failed. A failure that
/// retrying could cure (the database) is retried; on the last attempt the export is marked failed.
pub async fn run(
    db: Database,
    config: ExportsConfig,
    metrics: std::sync::Arc<Metrics>,
    job: Job,
) -> Result<(), JobFailure> {
    let payload: ExportJob = job.payload().map_err(|e| JobFailure(format!("bad payload: {e}")))?;
    let started = Instant::now();
    let outcome = build(&db, &config, &payload).await;
    let (label, result) = match outcome {
        Ok(Some(bytes)) => {
            metrics.tenant_export_bytes.observe(bytes as f64);
            ("completed", Ok(()))
        }
        Ok(None) => ("skipped", Ok(())),
        Err(ExportError::Refused(reason)) => {
            mark_failed(&db, &payload, &reason).await.map_err(|e| JobFailure(e.to_string()))?;
            ("failed", Ok(()))
        }
        Err(ExportError::Tenancy(error)) => {
            if job.attempts >= job.max_attempts {
                mark_failed(&db, &payload, "the export could not be built; see the server logs")
                    .await
                    .map_err(|e| JobFailure(e.to_string()))?;
                ("failed", Err(JobFailure(error.to_string())))
            } else {
                return Err(JobFailure(error.to_string()));
            }
        }
    };
    metrics.tenant_exports_total.with_label_values(&[label]).inc();
    metrics.tenant_export_duration_seconds.observe(started.elapsed().as_secs_f64());
    result
}

/// Builds and stores the archive; `Ok(None)` when the export is gone or already finished.
async fn build(db: &Database, config: &ExportsConfig, job: &ExportJob) -> Result<Option<u64>, ExportError> {
    let mut tx = db.begin_read().await?;
    if let Tx::Postgres(conn) = &mut tx {
        // Every file from one snapshot, so the files agree with each other.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut **conn).await?;
    }
    bind_tenant(&mut tx, job.tenant_id).await?;
    let Some(export) = get(&mut tx, job.tenant_id, job.export_id).await? else { return Ok(None) };
    if matches!(export.status, Status::Ready | Status::Failed) {
        return Ok(None);
    }
    let deleted: Option<(Option<OffsetDateTime>,)> =
        on_tx!(&mut tx, |conn| sqlx::query_as("SELECT deleted_at FROM tenants WHERE id = $1")
            .bind(job.tenant_id)
            .fetch_optional(conn)
            .await)?;
    if !matches!(deleted, Some((None,))) {
        return Err(ExportError::Refused("the tenant was deleted".to_owned()));
    }
    let mut files = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        if let Some((content, rows)) = archive::dump(&mut tx, table, job.tenant_id).await? {
            files.push((table.name, content, rows));
        }
    }
    tx.commit().await?;
    let built = archive::pack(job.export_id, job.tenant_id, export.created_at, files)
        .map_err(|e| ExportError::Refused(format!("the archive could not be written: {e}")))?;
    let size = built.bytes.len() as u64;
    if size > config.max_bytes {
        return Err(ExportError::Refused(format!(
            "the archive ({size} bytes) exceeds exports.max_bytes ({}); ask the operator",
            config.max_bytes
        )));
    }
    let manifest = serde_json::to_string(&built.manifest).map_err(|e| ExportError::Refused(e.to_string()))?;
    let mut tx = db.begin().await?;
    bind_tenant(&mut tx, job.tenant_id).await?;
    let updated = on_tx!(&mut tx, |conn| sqlx::query(
        "UPDATE tenant_exports SET status = 'ready', archive = $1, size_bytes = $2, sha256 = $3, manifest = $4, \
         completed_at = $5 WHERE tenant_id = $6 AND id = $7 AND status IN ('pending', 'running')"
    )
    .bind(&built.bytes)
    .bind(i64::try_from(size).unwrap_or(i64::MAX))
    .bind(&built.sha256)
    .bind(manifest)
    .bind(OffsetDateTime::now_utc())
    .bind(job.tenant_id)
    .bind(job.export_id)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    if updated == 0 {
        return Ok(None);
    }
    let id = job.export_id.to_string();
    let change = Change { action: "export.completed", resource_type: "export", resource_id: &id };
    write::commit(tx, job.tenant_id, SYSTEM_ACTOR, change, &RequestMeta::default()).await?;
    Ok(Some(size))
}

async fn mark_failed(db: &Database, job: &ExportJob, reason: &str) -> Result<(), TenancyError> {
    let mut tx = db.begin().await?;
    bind_tenant(&mut tx, job.tenant_id).await?;
    on_tx!(&mut tx, |conn| sqlx::query(
        "UPDATE tenant_exports SET status = 'failed', error = $1, completed_at = $2 \
         WHERE tenant_id = $3 AND id = $4 AND status IN ('pending', 'running')"
    )
    .bind(reason)
    .bind(OffsetDateTime::now_utc())
    .bind(job.tenant_id)
    .bind(job.export_id)
    .execute(conn)
    .await
    .map(drop))?;
    tx.commit().await?;
    Ok(())
}

/// Deletes exports (archives included) whose `expires_at` has passed, in every tenant; returns
/// how many.
pub async fn purge_expired(db: &Database, now: OffsetDateTime) -> Result<u64, StoreError> {
    crate::background::purge_in_every_tenant(
        db,
        "DELETE FROM tenant_exports WHERE tenant_id = $1 AND expires_at <= $2",
        now,
    )
    .await
}
