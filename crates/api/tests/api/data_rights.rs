//! Data rights (docs/data-rights.md): tenant export round trip, tenant erasure (soft delete on every
//! replica, restore, purge leaving nothing but the tombstone), and a person's own data.

use std::{io::Read, time::Duration};

use palisade_api::data_rights::{archive::Manifest, export, purge};
use palisade_store::{Database, on_tx};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::support::{Backend, TestApp, create_todo, send, spawn_app};

on_both_backends!(
    an_export_round_trips_the_tenant_and_nothing_of_another,
    only_the_tenants_admin_may_export_or_download,
    expired_exports_are_deleted_by_the_cleanup,
    a_deleted_tenant_is_gone_at_once_and_can_be_restored_in_its_grace,
    a_purge_leaves_no_row_of_the_tenant_anywhere_but_its_tombstone,
    a_person_sees_and_erases_their_own_data_across_tenants
);

const RW: &[&str] = &["todos:read", "todos:write"];

fn fast_jobs(settings: &mut palisade_api::Settings) {
    settings.jobs.poll_interval = Duration::from_millis(50);
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Starts an export as `token` and waits until it is ready; returns its final status.
async fn finished_export(app: &TestApp, token: &str) -> Value {
    let started = send(app, Method::POST, "/api/v1/exports", token, None).await;
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let location = started.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = started.json().await.unwrap();
    assert_eq!(location, format!("/api/v1/exports/{}", body["id"].as_str().unwrap()));
    for _ in 0..200 {
        let status: Value = send(app, Method::GET, &location, token, None).await.json().await.unwrap();
        if status["status"] != "pending" && status["status"] != "running" {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the export did not finish");
}

/// The archive's files by name.
fn unpack(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            (name, content)
        })
        .collect()
}

async fn an_export_round_trips_the_tenant_and_nothing_of_another(backend: Backend) {
    let Some(app) = spawn_app(backend, fast_jobs).await else { return };
    let tenant = app.create_tenant("exported").await;
    app.create_tenant("bystander").await;
    let admin = app.token(Some("exported"), "ada", &["tenant:admin", "todos:read", "todos:write"]);
    let member = app.token(Some("exported"), "bob", RW);
    let other = app.token(Some("bystander"), "eve", RW);
    create_todo(&app, &member, "first of ours").await;
    create_todo(&app, &admin, "second of ours").await;
    create_todo(&app, &other, "bystander-secret-title").await;

    let done = finished_export(&app, &admin).await;
    assert_eq!(done["status"], "ready", "{done}");
    let id = done["id"].as_str().unwrap();
    let download = send(&app, Method::GET, &format!("/api/v1/exports/{id}/archive"), &admin, None).await;
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(download.headers()["content-type"], "application/gzip");
    let bytes = download.bytes().await.unwrap();
    assert_eq!(sha256_hex(&bytes), done["sha256"].as_str().unwrap(), "the archive's checksum");
    assert_eq!(done["size_bytes"].as_u64().unwrap(), bytes.len() as u64);

    let files = unpack(&bytes);
    let (name, manifest) = &files[0];
    assert_eq!(name, "manifest.json");
    let manifest: Manifest = serde_json::from_slice(manifest).unwrap();
    assert_eq!(manifest.format, "palisade-tenant-export");
    assert_eq!(manifest.format_version, 1);
    assert_eq!(manifest.tenant_id.to_string(), tenant["id"].as_str().unwrap());
    assert_eq!(manifest.files.len(), files.len() - 1, "every file is in the manifest");
    let tables: Vec<&str> = manifest.files.iter().map(|f| f.table.as_str()).collect();
    assert_eq!(
        tables,
        ["tenants", "users", "todos", "audit_events", "api_keys", "webhook_endpoints", "webhook_deliveries"]
    );
    for file in &manifest.files {
        let (_, content) = files.iter().find(|(n, _)| *n == file.name).expect("file in the archive");
        assert_eq!(sha256_hex(content), file.sha256, "{}", file.name);
        let lines: Vec<Value> = content
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len() as u64, file.rows, "{}", file.name);
        for line in &lines {
            let secret = line.as_object().unwrap().keys().find(|k| k.contains("secret") || k.contains("hash"));
            assert!(secret.is_none(), "{}: {line} exports a secret", file.name);
            let owner = line.get("tenant_id").or_else(|| line.get("id")).unwrap();
            assert_eq!(owner.as_str().unwrap(), tenant["id"].as_str().unwrap(), "{}: {line}", file.name);
        }
    }
    let count = |table: &str| manifest.files.iter().find(|f| f.table == table).unwrap().rows;
    assert_eq!((count("tenants"), count("users"), count("todos")), (1, 2, 2));
    assert_eq!(done["files"].as_array().unwrap().len(), manifest.files.len(), "the status shows the counts");
    let everything =
        String::from_utf8_lossy(&files.iter().flat_map(|(_, c)| c.clone()).collect::<Vec<u8>>()).into_owned();
    assert!(everything.contains("first of ours") && everything.contains("second of ours"));
    assert!(!everything.contains("bystander"), "another tenant's data is absent");
    assert!(!everything.contains("Bearer") && !everything.contains("eyJ"), "no token in the archive");

    let listed: Value = send(&app, Method::GET, "/api/v1/exports", &admin, None).await.json().await.unwrap();
    assert_eq!(listed["items"][0]["id"], done["id"]);
    app.stop().await;
}

async fn only_the_tenants_admin_may_export_or_download(backend: Backend) {
    let Some(app) = spawn_app(backend, fast_jobs).await else { return };
    app.create_tenant("guarded").await;
    app.create_tenant("elsewhere").await;
    let admin = app.token(Some("guarded"), "ada", &["tenant:admin"]);
    let member = app.token(Some("guarded"), "bob", RW);
    let foreign_admin = app.token(Some("elsewhere"), "mallory", &["tenant:admin"]);
    assert_eq!(send(&app, Method::POST, "/api/v1/exports", &member, None).await.status(), StatusCode::FORBIDDEN);
    let done = finished_export(&app, &admin).await;
    let archive = format!("/api/v1/exports/{}/archive", done["id"].as_str().unwrap());
    assert_eq!(send(&app, Method::GET, &archive, &member, None).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(send(&app, Method::GET, &archive, &foreign_admin, None).await.status(), StatusCode::NOT_FOUND);
    let status = format!("/api/v1/exports/{}", done["id"].as_str().unwrap());
    assert_eq!(send(&app, Method::GET, &status, &foreign_admin, None).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(send(&app, Method::GET, &archive, &admin, None).await.status(), StatusCode::OK);
    app.stop().await;
}

async fn expired_exports_are_deleted_by_the_cleanup(backend: Backend) {
    let Some(app) = spawn_app(backend, fast_jobs).await else { return };
    app.create_tenant("expiring").await;
    let admin = app.token(Some("expiring"), "ada", &["tenant:admin"]);
    let done = finished_export(&app, &admin).await;
    let status = format!("/api/v1/exports/{}", done["id"].as_str().unwrap());
    let now = OffsetDateTime::now_utc();
    assert_eq!(export::purge_expired(&app.state.db, now).await.unwrap(), 0, "not expired yet");
    assert_eq!(send(&app, Method::GET, &status, &admin, None).await.status(), StatusCode::OK);
    let later = now + app.state.settings.exports.retention + Duration::from_secs(1);
    assert_eq!(export::purge_expired(&app.state.db, later).await.unwrap(), 1);
    assert_eq!(send(&app, Method::GET, &status, &admin, None).await.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

async fn a_deleted_tenant_is_gone_at_once_and_can_be_restored_in_its_grace(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    // On PostgreSQL a second replica shares the database, with the tenant in its cache already.
    let second = match backend {
        Backend::Postgres => Some(
            crate::support::start(
                (*app.state.settings).clone(),
                axum::Router::new(),
                Backend::Postgres,
                app.database.shared(),
            )
            .await,
        ),
        Backend::Sqlite => None,
    };
    let replicas: Vec<&TestApp> = std::iter::once(&app).chain(second.as_ref()).collect();
    let tenant = app.create_tenant("doomed").await;
    let id = tenant["id"].as_str().unwrap();
    let member = app.token(Some("doomed"), "bob", RW);
    let platform = app.token(None, "operator", &["platform:admin"]);
    for replica in &replicas {
        assert_eq!(send(replica, Method::GET, "/api/v1/users/me", &member, None).await.status(), StatusCode::OK);
    }
    let deleted = send(&app, Method::DELETE, &format!("/api/v1/tenants/{id}"), &platform, None).await;
    assert_eq!(deleted.status(), StatusCode::OK);
    let deleted: Value = deleted.json().await.unwrap();
    assert_eq!(deleted["status"], "deleted");
    assert!(deleted["deleted_at"].is_string());
    for replica in &replicas {
        for (method, path) in [(Method::GET, "/api/v1/users/me"), (Method::POST, "/api/v1/todos")] {
            let refused = send(replica, method, path, &member, Some(json!({"title": "late"}))).await;
            assert_eq!(refused.status(), StatusCode::GONE, "{path} on a replica");
            let problem: Value = refused.json().await.unwrap();
            assert!(problem["type"].as_str().unwrap().ends_with("tenant-deleted"), "{problem}");
        }
    }
    let again = send(&app, Method::DELETE, &format!("/api/v1/tenants/{id}"), &platform, None).await;
    assert_eq!(again.status(), StatusCode::GONE);
    let suspend = send(&app, Method::POST, &format!("/api/v1/tenants/{id}/suspend"), &platform, None).await;
    assert_eq!(suspend.status(), StatusCode::GONE);
    let not_platform = app.token(Some("doomed"), "ada", &["tenant:admin"]);
    let refused = send(&app, Method::POST, &format!("/api/v1/tenants/{id}/restore"), &not_platform, None).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let restored = send(&app, Method::POST, &format!("/api/v1/tenants/{id}/restore"), &platform, None).await;
    assert_eq!(restored.status(), StatusCode::OK);
    assert_eq!(restored.json::<Value>().await.unwrap()["status"], "active");
    for replica in &replicas {
        assert_eq!(send(replica, Method::GET, "/api/v1/users/me", &member, None).await.status(), StatusCode::OK);
    }
    let twice = send(&app, Method::POST, &format!("/api/v1/tenants/{id}/restore"), &platform, None).await;
    assert_eq!(twice.status(), StatusCode::CONFLICT);
    if let Some(second) = second {
        second.stop().await;
    }
    app.stop().await;
}

/// Every (table, column) of the database holding `needle`: uuid columns compared as uuids, text
/// columns searched for it. On PostgreSQL as the superuser (no row-level security hides a row).
async fn rows_mentioning(app: &TestApp, needle: uuid::Uuid) -> Vec<(String, String, i64)> {
    let mut found = Vec::new();
    match app.backend {
        Backend::Postgres => {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(app.database.admin_url.as_deref().unwrap()).await.unwrap();
            let columns: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT c.table_name::text, c.column_name::text, c.data_type::text FROM information_schema.columns c \
                 JOIN information_schema.tables t USING (table_schema, table_name) \
                 WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' \
                 AND c.data_type IN ('uuid', 'text', 'character varying', 'bytea')",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap();
            assert!(columns.len() > 20, "the catalog was read: {columns:?}");
            for (table, column, kind) in columns {
                let condition = match kind.as_str() {
                    "uuid" => format!("\"{column}\" = $1"),
                    "bytea" => format!("position(decode(replace($1::text, '-', ''), 'hex') in \"{column}\") > 0"),
                    _ => format!("\"{column}\" ILIKE '%' || $1::text || '%'"),
                };
                let sql = format!("SELECT count(*) FROM \"{table}\" WHERE {condition}");
                let (n,): (i64,) =
                    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(needle).fetch_one(&mut conn).await.unwrap();
                if n > 0 {
                    found.push((table, column, n));
                }
            }
        }
        Backend::Sqlite => {
            let db: &Database = &app.state.db;
            let mut tx = db.begin().await.unwrap();
            let columns: Vec<(String, String)> = on_tx!(&mut tx, |conn| sqlx::query_as(
                "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p \
                 WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%'"
            )
            .fetch_all(conn)
            .await)
            .unwrap();
            assert!(columns.len() > 20, "the catalog was read: {columns:?}");
            for (table, column) in columns {
                // Blobs (uuids) compared by value, text searched for the hyphenated form.
                let sql = format!(
                    "SELECT count(*) FROM \"{table}\" WHERE \"{column}\" = $1 OR \
                     (typeof(\"{column}\") = 'text' AND instr(lower(\"{column}\"), $2) > 0)"
                );
                let (n,): (i64,) = on_tx!(&mut tx, |conn| sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                    .bind(needle)
                    .bind(needle.to_string())
                    .fetch_one(conn)
                    .await)
                .unwrap();
                if n > 0 {
                    found.push((table, column, n));
                }
            }
            tx.commit().await.unwrap();
        }
    }
    found
}

/// A tenant table created after the purge was written (as a later migration would), holding a row
/// of the tenant that references one of its todos: the purge must find it in the catalog and
/// delete it before the todo it references (its name sorts after `todos`, so a first pass that
/// visits `todos` first is refused by the foreign key and the table is retried).
async fn add_a_table_the_purge_has_never_heard_of(app: &TestApp, tenant: uuid::Uuid) {
    let create = "CREATE TABLE upcoming_notes (id uuid PRIMARY KEY, tenant_id uuid NOT NULL REFERENCES tenants (id), \
                  todo_id uuid NOT NULL REFERENCES todos (id), note text NOT NULL)";
    let insert = "INSERT INTO upcoming_notes (id, tenant_id, todo_id, note) \
                  SELECT $1, tenant_id, id, 'a later feature' FROM todos WHERE tenant_id = $2 LIMIT 1";
    match app.backend {
        Backend::Postgres => {
            use sqlx::Connection;
            let mut owner = sqlx::PgConnection::connect(app.database.admin_url.as_deref().unwrap()).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(create)).execute(&mut owner).await.unwrap();
            sqlx::query("SELECT palisade_tenant_scoped('upcoming_notes', 'SELECT, INSERT, UPDATE, DELETE')")
                .execute(&mut owner)
                .await
                .unwrap();
            let done = sqlx::query(insert).bind(uuid::Uuid::now_v7()).bind(tenant).execute(&mut owner).await.unwrap();
            assert_eq!(done.rows_affected(), 1);
        }
        Backend::Sqlite => {
            let mut tx = app.state.db.begin().await.unwrap();
            on_tx!(&mut tx, |conn| sqlx::raw_sql(sqlx::AssertSqlSafe(create)).execute(conn).await.map(drop)).unwrap();
            let done = on_tx!(&mut tx, |conn| sqlx::query(insert)
                .bind(uuid::Uuid::now_v7())
                .bind(tenant)
                .execute(conn)
                .await
                .map(|r| r.rows_affected()))
            .unwrap();
            assert_eq!(done, 1);
            tx.commit().await.unwrap();
        }
    }
}

async fn a_purge_leaves_no_row_of_the_tenant_anywhere_but_its_tombstone(backend: Backend) {
    let Some(app) = spawn_app(backend, fast_jobs).await else { return };
    let tenant = app.create_tenant("erased").await;
    app.create_tenant("survivor").await;
    let id: uuid::Uuid = tenant["id"].as_str().unwrap().parse().unwrap();
    let admin = app.token(Some("erased"), "ada", &["tenant:admin", "todos:read", "todos:write"]);
    let member = app.token(Some("erased"), "bob", RW);
    let survivor = app.token(Some("survivor"), "sam", RW);
    create_todo(&app, &member, "to be forgotten").await;
    create_todo(&app, &admin, "also forgotten").await;
    create_todo(&app, &survivor, "still here").await;
    let idempotent = app
        .client
        .post(app.url("/api/v1/todos"))
        .bearer_auth(&member)
        .header("idempotency-key", "k1")
        .json(&json!({"title": "keyed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(idempotent.status(), StatusCode::CREATED);
    assert_eq!(finished_export(&app, &admin).await["status"], "ready");
    add_a_table_the_purge_has_never_heard_of(&app, id).await;
    assert!(rows_mentioning(&app, id).await.len() > 5, "the tenant's data is all over the schema before");

    let platform = app.token(None, "operator", &["platform:admin"]);
    let metrics = &app.state.metrics;
    assert!(purge::purge_due(&app.state.db, Duration::from_secs(3600), metrics).await.unwrap().is_empty());
    let deleted = send(&app, Method::DELETE, &format!("/api/v1/tenants/{id}"), &platform, None).await;
    assert_eq!(deleted.status(), StatusCode::OK);
    assert!(
        purge::purge_due(&app.state.db, Duration::from_secs(3600), metrics).await.unwrap().is_empty(),
        "inside the grace, nothing is purged"
    );
    assert_eq!(purge::purge_due(&app.state.db, Duration::ZERO, metrics).await.unwrap(), vec![id]);
    assert_eq!(metrics.tenant_purges_total.get(), 1);
    assert_eq!(metrics.tenants_pending_purge.get(), 0);

    let left = rows_mentioning(&app, id).await;
    assert_eq!(left, vec![("tenant_tombstones".to_owned(), "id".to_owned(), 1)], "only the tombstone remains");
    let mut tx = app.state.db.begin().await.unwrap();
    let (deleted_by,): (String,) =
        on_tx!(&mut tx, |conn| sqlx::query_as("SELECT deleted_by FROM tenant_tombstones WHERE id = $1")
            .bind(id)
            .fetch_one(conn)
            .await)
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(deleted_by, "operator");

    assert_eq!(send(&app, Method::GET, "/api/v1/users/me", &member, None).await.status(), StatusCode::NOT_FOUND);
    let restore = send(&app, Method::POST, &format!("/api/v1/tenants/{id}/restore"), &platform, None).await;
    assert_eq!(restore.status(), StatusCode::NOT_FOUND);
    let kept: Value = send(&app, Method::GET, "/api/v1/todos", &survivor, None).await.json().await.unwrap();
    assert_eq!(kept["items"][0]["title"], "still here", "another tenant keeps its data");
    app.stop().await;
}

async fn a_person_sees_and_erases_their_own_data_across_tenants(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    app.create_tenant("first-club").await;
    app.create_tenant("second-club").await;
    let in_first = app.token(Some("first-club"), "carol@example.com", RW);
    let in_second = app.token(Some("second-club"), "carol@example.com", RW);
    create_todo(&app, &in_first, "carol's todo").await;
    assert_eq!(send(&app, Method::GET, "/api/v1/users/me", &in_second, None).await.status(), StatusCode::OK);
    let mine: Value = send(&app, Method::GET, "/api/v1/users/me/data", &in_first, None).await.json().await.unwrap();
    assert_eq!(mine["subject"], "carol@example.com");
    let slugs: Vec<&str> =
        mine["memberships"].as_array().unwrap().iter().map(|m| m["tenant_slug"].as_str().unwrap()).collect();
    assert_eq!(slugs, ["first-club", "second-club"]);

    let erased = send(&app, Method::DELETE, "/api/v1/users/me/data", &in_second, None).await;
    assert_eq!(erased.status(), StatusCode::OK);
    let erased: Value = erased.json().await.unwrap();
    assert_eq!(erased["erased"], 2);
    let pseudonym = erased["pseudonym"].as_str().unwrap();
    assert!(pseudonym.starts_with("erased:"));

    let after: Value = send(&app, Method::GET, "/api/v1/users/me/data", &in_first, None).await.json().await.unwrap();
    assert_eq!(after["memberships"], json!([]), "no user holds the subject any more");
    let admin = app.token(Some("first-club"), "ada", &["tenant:admin", "todos:read"]);
    let users: Value = send(&app, Method::GET, "/api/v1/users", &admin, None).await.json().await.unwrap();
    let subjects: Vec<&str> =
        users["items"].as_array().unwrap().iter().map(|u| u["subject"].as_str().unwrap()).collect();
    assert!(subjects.contains(&pseudonym) && !subjects.contains(&"carol@example.com"), "{subjects:?}");
    let audit: Value = send(&app, Method::GET, "/api/v1/audit-events", &admin, None).await.json().await.unwrap();
    assert!(
        audit["items"].as_array().unwrap().iter().any(|e| e["action"] == "user.erased" && e["actor"] == pseudonym),
        "{audit}"
    );
    let todos: Value = send(&app, Method::GET, "/api/v1/todos", &admin, None).await.json().await.unwrap();
    assert_eq!(todos["items"][0]["title"], "carol's todo", "non-personal rows are kept");
    app.stop().await;
}
