//! The export archive (format version [`FORMAT_VERSION`], specified in docs/data-rights.md): one
//! NDJSON file per exported table and a `manifest.json` with each file's row count and SHA-256,
//! packed as a gzip-compressed tar.
//!
//! Why tar.gz: the `tar` and `flate2` crates are small, widely used and pure Rust (flate2 is in
//! the tree already), and `tar xzf` opens the archive anywhere a DPO or a customer's engineer
//! works; zip's central directory buys random access that one-shot exports do not need.

use palisade_store::{Backend, Tx, on_tx};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

/// The archive format's version; bump it when a file's shape or the manifest changes.
pub const FORMAT_VERSION: i32 = 1;

/// One exported table: every row whose `key` column is the tenant's id, with exactly `columns`
/// (a list: secrets are never selected, so a new column is not exported until it is added here).
#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub name: &'static str,
    pub key: &'static str,
    pub columns: &'static str,
}

/// What an export holds. A table that does not exist in this database is skipped (and is absent
/// from the manifest), so a line may name a table that a later migration creates.
///
/// API keys are listed without `secret_hash`, webhook endpoints without their signing secrets.
pub const TABLES: &[Table] = &[
    Table { name: "tenants", key: "id", columns: "id, slug, name, status, created_at, updated_at" },
    Table { name: "users", key: "tenant_id", columns: "id, tenant_id, subject, role, created_at, updated_at" },
    Table {
        name: "todos",
        key: "tenant_id",
        columns: "id, tenant_id, title, done, version, created_by, created_at, updated_at",
    },
    Table {
        name: "audit_events",
        key: "tenant_id",
        columns: "id, tenant_id, actor, action, resource_type, resource_id, request_id, client_ip, created_at",
    },
    Table {
        name: "api_keys",
        key: "tenant_id",
        columns: "id, tenant_id, lookup_id, name, scopes, created_by, created_at, expires_at, last_used_at, \
                  last_used_ip, revoked_at",
    },
    Table {
        name: "webhook_endpoints",
        key: "tenant_id",
        columns: "id, tenant_id, url, description, event_types, enabled, consecutive_failures, disabled_reason, \
                  disabled_at, version, created_at, updated_at",
    },
    Table {
        name: "webhook_deliveries",
        key: "tenant_id",
        columns: "id, tenant_id, endpoint_id, event_id, event_type, payload, status, attempts, last_status_code, \
                  created_at, updated_at",
    },
];

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `palisade-tenant-export`.
    pub format: String,
    pub format_version: i32,
    pub export_id: Uuid,
    pub tenant_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub files: Vec<ManifestFile>,
}

/// One file of the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ManifestFile {
    /// `<table>.ndjson`.
    #[schema(example = "todos.ndjson")]
    pub name: String,
    pub table: String,
    /// Lines (rows) in the file.
    pub rows: u64,
    pub bytes: u64,
    /// Lowercase hex SHA-256 of the file.
    pub sha256: String,
}

/// A built archive.
#[derive(Debug)]
pub struct Archive {
    pub bytes: Vec<u8>,
    pub sha256: String,
    pub manifest: Manifest,
}

/// Whether `table` exists in the database `tx` is on.
async fn exists(tx: &mut Tx, table: &str) -> Result<bool, sqlx::Error> {
    let found: Option<(i64,)> = match tx {
        Tx::Postgres(conn) => {
            sqlx::query_as("SELECT 1::bigint WHERE to_regclass($1) IS NOT NULL")
                .bind(format!("public.{table}"))
                .fetch_optional(&mut **conn)
                .await?
        }
        Tx::Sqlite(conn) => {
            sqlx::query_as("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = $1")
                .bind(table)
                .fetch_optional(&mut **conn)
                .await?
        }
    };
    Ok(found.is_some())
}

/// The query giving one JSON object (text) per row of `table` in the tenant `$1`.
fn row_query(backend: Backend, table: &Table) -> String {
    let first = table.columns.split(',').next().unwrap_or("id").trim();
    match backend {
        Backend::Postgres => format!(
            "SELECT row_to_json(r)::text FROM (SELECT {} FROM {} WHERE {} = $1 ORDER BY {first}) r",
            table.columns, table.name, table.key
        ),
        Backend::Sqlite => {
            // SQLite keeps uuids as 16-byte blobs, which JSON cannot hold: spelt as uuids.
            let fields: Vec<String> = table
                .columns
                .split(',')
                .map(str::trim)
                .map(|c| {
                    format!(
                        "'{c}', CASE typeof({c}) WHEN 'blob' THEN lower(substr(hex({c}), 1, 8) || '-' || \
                         substr(hex({c}), 9, 4) || '-' || substr(hex({c}), 13, 4) || '-' || \
                         substr(hex({c}), 17, 4) || '-' || substr(hex({c}), 21)) ELSE {c} END"
                    )
                })
                .collect();
            format!(
                "SELECT json_object({}) FROM {} WHERE {} = $1 ORDER BY {first}",
                fields.join(", "),
                table.name,
                table.key
            )
        }
    }
}

/// The NDJSON of one table's rows of the tenant; `None` when the table does not exist.
pub async fn dump(tx: &mut Tx, table: &Table, tenant_id: Uuid) -> Result<Option<(Vec<u8>, u64)>, sqlx::Error> {
    if !exists(tx, table.name).await? {
        return Ok(None);
    }
    let backend = match tx {
        Tx::Postgres(_) => Backend::Postgres,
        Tx::Sqlite(_) => Backend::Sqlite,
    };
    let sql = row_query(backend, table);
    let rows: Vec<(String,)> =
        on_tx!(tx, |conn| sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(tenant_id).fetch_all(conn).await)?;
    let mut out = Vec::new();
    for (line,) in &rows {
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    Ok(Some((out, rows.len() as u64)))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Packs the files (name, content, rows) and their manifest into a tar.gz.
pub fn pack(
    export_id: Uuid,
    tenant_id: Uuid,
    created_at: OffsetDateTime,
    files: Vec<(&'static str, Vec<u8>, u64)>,
) -> std::io::Result<Archive> {
    let manifest = Manifest {
        format: "palisade-tenant-export".to_owned(),
        format_version: FORMAT_VERSION,
        export_id,
        tenant_id,
        created_at,
        files: files
            .iter()
            .map(|(table, content, rows)| ManifestFile {
                name: format!("{table}.ndjson"),
                table: (*table).to_owned(),
                rows: *rows,
                bytes: content.len() as u64,
                sha256: sha256_hex(content),
            })
            .collect(),
    };
    let manifest_json = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?;
    let mtime = u64::try_from(created_at.unix_timestamp()).unwrap_or(0);
    let gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gzip);
    let mut append = |name: &str, content: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, name, content)
    };
    append("manifest.json", &manifest_json)?;
    for (file, (_, content, _)) in manifest.files.iter().zip(&files) {
        append(&file.name, content)?;
    }
    let bytes = tar.into_inner()?.finish()?;
    let sha256 = sha256_hex(&bytes);
    Ok(Archive { bytes, sha256, manifest })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_exported_table_selects_a_secret_column() {
        for table in TABLES {
            for column in table.columns.split(',').map(str::trim) {
                assert!(
                    !["secret", "hash", "password", "token", "archive"].iter().any(|s| column.contains(s)),
                    "{}.{column} looks secret",
                    table.name
                );
            }
        }
    }
}
