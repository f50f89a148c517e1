//! API keys over HTTP on both backends: the lifecycle (create, list, get, rotate, revoke), the
//! secret shown once, each refusal's problem type, tenant isolation, scopes, per-key rate limits,
//! the audit trail, and on PostgreSQL the row-level security of the key table.

use std::time::Duration;

use palisade_edge::rate_limit::{AUTHENTICATED, Policy};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Backend, TestApp, contract::Contract, create_todo, send, spawn_app};

const ADMIN: &[&str] = &["tenant:admin", "api_keys:read", "api_keys:write", "todos:read", "todos:write"];

on_both_backends!(
    a_key_goes_through_create_use_rotate_and_revoke_and_its_secret_is_shown_once,
    each_refused_key_gets_its_own_problem_type_and_metric,
    a_key_never_crosses_tenants,
    a_key_of_a_suspended_tenant_stops_working,
    a_key_carries_only_scopes_its_creator_holds_and_only_what_it_was_given,
    only_tenant_admins_with_the_api_key_scopes_manage_keys,
    every_key_has_its_own_rate_limit_bucket,
    uses_are_recorded_once_a_minute_and_a_new_address_is_audited,
);

/// The documented pattern, anchored.
fn key_pattern() -> regex::Regex {
    regex::Regex::new(&format!("^{}$", palisade_auth::api_key::PATTERN)).unwrap()
}

async fn document(app: &TestApp) -> Value {
    app.get("/api/v1/openapi.json").await.json().await.unwrap()
}

/// Creates a key in `tenant` as an admin holding [`ADMIN`]; returns the 201 body.
async fn create_key(app: &TestApp, tenant: &str, scopes: &[&str], expires_at: Option<&str>) -> Value {
    let admin = app.token(Some(tenant), "admin", ADMIN);
    let mut body = json!({"name": "ci", "scopes": scopes});
    if let Some(at) = expires_at {
        body["expires_at"] = json!(at);
    }
    let response = send(app, Method::POST, "/api/v1/api-keys", &admin, Some(body)).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

/// A request with `key` as the bearer token; returns the status and the body.
async fn with_key(app: &TestApp, method: Method, path: &str, key: &str, body: Option<Value>) -> (StatusCode, Value) {
    let response = send(app, method, path, key, body).await;
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn a_key_goes_through_create_use_rotate_and_revoke_and_its_secret_is_shown_once(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    app.create_tenant("keys").await;
    let admin = app.token(Some("keys"), "admin", ADMIN);
    let mut contract = Contract::new(document(&app).await);

    let response = app
        .client
        .post(app.url("/api/v1/api-keys"))
        .bearer_auth(&admin)
        .json(&json!({"name": " deploy ", "scopes": ["todos:read", "todos:write"]}))
        .send()
        .await
        .unwrap();
    let created = contract.check(&Method::POST, "/api/v1/api-keys", response).await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.headers["cache-control"], "no-store");
    let key = created.body["key"].as_str().unwrap().to_owned();
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert!(key_pattern().is_match(&key), "{key}");
    assert_eq!(created.body["name"], "deploy");
    assert_eq!(created.body["scopes"], json!(["todos:read", "todos:write"]));
    assert!(key.starts_with(created.body["prefix"].as_str().unwrap()));
    assert_eq!(created.headers["location"], format!("/api/v1/api-keys/{id}").as_str());

    // The key works for what its scopes allow, as its own subject.
    let todo = create_todo(&app, &key, "by a machine").await;
    assert!(todo["id"].is_string());
    let (status, me) = with_key(&app, Method::GET, "/api/v1/auth/me", &key, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["subject"], format!("apikey:{id}"));

    let path = format!("/api/v1/api-keys/{id}");
    let read = contract.check(&Method::GET, &path, send(&app, Method::GET, &path, &admin, None).await).await;
    assert_eq!(read.status, StatusCode::OK);
    assert!(read.body.get("key").is_none());
    assert!(read.body["last_used_at"].is_string(), "the use was recorded: {}", read.body);
    let listed = contract
        .check(&Method::GET, "/api/v1/api-keys", send(&app, Method::GET, "/api/v1/api-keys?limit=10", &admin, None).await)
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);

    let rotate_path = format!("{path}/rotate");
    let rotated =
        contract.check(&Method::POST, &rotate_path, send(&app, Method::POST, &rotate_path, &admin, None).await).await;
    assert_eq!(rotated.status, StatusCode::OK);
    let new_key = rotated.body["key"].as_str().unwrap().to_owned();
    assert!(key_pattern().is_match(&new_key));
    assert_ne!(new_key, key);
    assert_eq!(rotated.body["id"], id.as_str());
    let (status, problem) = with_key(&app, Method::GET, "/api/v1/todos", &key, None).await;
    assert_eq!((status, problem["type"].as_str()), (StatusCode::UNAUTHORIZED, Some("/problems/api-key-unknown")));
    assert_eq!(with_key(&app, Method::GET, "/api/v1/todos", &new_key, None).await.0, StatusCode::OK);

    let revoked = contract.check(&Method::DELETE, &path, send(&app, Method::DELETE, &path, &admin, None).await).await;
    assert_eq!(revoked.status, StatusCode::OK);
    let revoked_at = revoked.body["revoked_at"].as_str().unwrap().to_owned();
    // Refused at its very next request: no cache stands between a revocation and the lookup.
    let (status, problem) = with_key(&app, Method::GET, "/api/v1/todos", &new_key, None).await;
    assert_eq!((status, problem["type"].as_str()), (StatusCode::UNAUTHORIZED, Some("/problems/api-key-revoked")));
    let revoke_path = format!("{path}/revoke");
    let again =
        contract.check(&Method::POST, &revoke_path, send(&app, Method::POST, &revoke_path, &admin, None).await).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["revoked_at"], revoked_at.as_str(), "revoking twice keeps the first revocation");
    assert_eq!(send(&app, Method::POST, &rotate_path, &admin, None).await.status(), StatusCode::CONFLICT);
    let listed: Value = send(&app, Method::GET, "/api/v1/api-keys", &admin, None).await.json().await.unwrap();
    assert_eq!(listed["items"][0]["revoked_at"], revoked_at.as_str(), "revoked keys stay listed");
    let missing = format!("/api/v1/api-keys/{}", uuid::Uuid::now_v7());
    assert_eq!(send(&app, Method::GET, &missing, &admin, None).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(send(&app, Method::DELETE, &missing, &admin, None).await.status(), StatusCode::NOT_FOUND);

    let audit: Value = send(&app, Method::GET, "/api/v1/audit-events?limit=100", &admin, None).await.json().await.unwrap();
    let actions: Vec<&str> =
        audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for action in ["api_key.created", "api_key.rotated", "api_key.revoked", "api_key.used_from_new_ip"] {
        assert!(actions.contains(&action), "{action} missing from {actions:?}");
    }
    assert_eq!(actions.iter().filter(|a| **a == "api_key.revoked").count(), 1, "a repeated revoke is not audited");
    let key_actor = audit["items"].as_array().unwrap().iter().find(|e| e["action"] == "todo.created").unwrap();
    assert_eq!(key_actor["actor"], format!("apikey:{id}"));

    // The secrets appear nowhere but in the two answers that carried them.
    let outbox = outbox_payloads(&app).await;
    for text in [audit.to_string(), listed.to_string(), read.body.to_string(), outbox] {
        for secret in [&key, &new_key] {
            assert!(!text.contains(&secret[20..]), "a secret leaked into {text}");
        }
    }
    app.stop().await;
}

/// Every outbox payload of the database, as one string.
async fn outbox_payloads(app: &TestApp) -> String {
    let rows: Vec<String> = match app.backend {
        Backend::Sqlite => {
            let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&app.database.url).await.unwrap();
            sqlx::query_scalar("SELECT payload FROM outbox_events").fetch_all(&mut conn).await.unwrap()
        }
        Backend::Postgres => {
            // The owner: row-level security would hide every tenant's events from the server role.
            let owner = app.database.admin_url.clone().unwrap();
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&owner).await.unwrap();
            sqlx::query_scalar("SELECT payload FROM outbox_events").fetch_all(&mut conn).await.unwrap()
        }
    };
    assert!(!rows.is_empty());
    rows.join("\n")
}

async fn each_refused_key_gets_its_own_problem_type_and_metric(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    app.create_tenant("refusals").await;
    let good = create_key(&app, "refusals", &["todos:read"], None).await["key"].as_str().unwrap().to_owned();
    let soon = (time::OffsetDateTime::now_utc() + time::Duration::seconds(2))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let expiring = create_key(&app, "refusals", &["todos:read"], Some(&soon)).await["key"].as_str().unwrap().to_owned();
    assert_eq!(with_key(&app, Method::GET, "/api/v1/todos", &expiring, None).await.0, StatusCode::OK);

    let mut typo = good.clone().into_bytes();
    typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let unknown = palisade_auth::api_key::generate().unwrap().key;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for (key, kind, reason) in [
        (typo.as_str(), "api-key-malformed", "api_key_malformed"),
        ("psk_short", "api-key-malformed", "api_key_malformed"),
        (unknown.as_str(), "api-key-unknown", "api_key_unknown"),
        (expiring.as_str(), "api-key-expired", "api_key_expired"),
    ] {
        let response = send(&app, Method::GET, "/api/v1/todos", key, None).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{kind}");
        let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["type"], format!("/problems/{kind}"));
        assert_eq!(problem["reason"], reason);
        assert!(!problem.to_string().contains(&good[20..]), "a problem repeated the key");
    }
    let metrics = app.state.metrics.render();
    for (outcome, at_least) in [("success", 1), ("malformed", 2), ("unknown", 1), ("expired", 1), ("revoked", 0)] {
        let series = format!("api_key_authentications_total{{outcome=\"{outcome}\"}} ");
        let value: u64 = metrics
            .lines()
            .find_map(|line| line.strip_prefix(&series))
            .unwrap_or_else(|| panic!("no {series}"))
            .parse()
            .unwrap();
        assert!(value >= at_least, "{outcome}: {value}");
    }
    assert!(metrics.contains("auth_failures_total{reason=\"api_key_expired\"} 1"), "{metrics}");
    app.stop().await;
}

async fn a_key_never_crosses_tenants(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    app.create_tenant("home").await;
    let away = app.create_tenant("away").await;
    let created = create_key(&app, "home", &["todos:read"], None).await;
    let key = created["key"].as_str().unwrap();
    for name in ["away", away["id"].as_str().unwrap()] {
        let response = app.client.get(app.url("/api/v1/todos")).bearer_auth(key).header("x-tenant-id", name).send().await;
        let response = response.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{name}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "/problems/api-key-wrong-tenant");
    }
    let own = app.client.get(app.url("/api/v1/todos")).bearer_auth(key).header("x-tenant-id", "home").send().await;
    assert_eq!(own.unwrap().status(), StatusCode::OK);
    // Another tenant's admin neither sees nor revokes it.
    let other_admin = app.token(Some("away"), "admin", ADMIN);
    let path = format!("/api/v1/api-keys/{}", created["id"].as_str().unwrap());
    assert_eq!(send(&app, Method::DELETE, &path, &other_admin, None).await.status(), StatusCode::NOT_FOUND);
    let listed: Value = send(&app, Method::GET, "/api/v1/api-keys", &other_admin, None).await.json().await.unwrap();
    assert_eq!(listed["items"], json!([]));
    assert!(app.state.metrics.render().contains("api_key_authentications_total{outcome=\"wrong_tenant\"} 2"));

    if app.backend == Backend::Postgres {
        server_role_sees_no_other_tenants_keys_but_the_lookup_finds_one(&app, &created, &away).await;
    }
    app.stop().await;
}

async fn a_key_of_a_suspended_tenant_stops_working(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    let tenant = app.create_tenant("paused").await;
    let key = create_key(&app, "paused", &["todos:read"], None).await["key"].as_str().unwrap().to_owned();
    assert_eq!(with_key(&app, Method::GET, "/api/v1/todos", &key, None).await.0, StatusCode::OK);
    let platform = app.token(None, "operator", &["platform:admin"]);
    let suspend = format!("/api/v1/tenants/{}/suspend", tenant["id"].as_str().unwrap());
    assert_eq!(send(&app, Method::POST, &suspend, &platform, None).await.status(), StatusCode::OK);
    let (status, problem) = with_key(&app, Method::GET, "/api/v1/todos", &key, None).await;
    assert_eq!((status, problem["type"].as_str()), (StatusCode::FORBIDDEN, Some("/problems/tenant-suspended")));
    app.stop().await;
}

/// The server's role reads keys only of the tenant bound to its transaction; the lookup function
/// finds one key by its lookup id, and nothing else opens the table.
async fn server_role_sees_no_other_tenants_keys_but_the_lookup_finds_one(app: &TestApp, key: &Value, other: &Value) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&app.database.url).await.unwrap();
    let lookup_id = key["prefix"].as_str().unwrap().trim_start_matches("psk_").to_owned();
    let mut tx = conn.begin().await.unwrap();
    let unbound: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(unbound, 0, "no tenant bound: no key visible");
    sqlx::query("SELECT set_config('app.tenant_id', $1, true), set_config('app.api_key_lookup_id', $2, true)")
        .bind(other["id"].as_str().unwrap())
        .bind(&lookup_id)
        .execute(&mut *tx)
        .await
        .unwrap();
    let other_tenant: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(other_tenant, 0, "another tenant's keys stay invisible, lookup variable or not");
    let found: Vec<(uuid::Uuid, String)> =
        sqlx::query_as("SELECT id, scopes FROM palisade_api_key_lookup($1)").bind(&lookup_id).fetch_all(&mut *tx).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0.to_string(), key["id"].as_str().unwrap());
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(after, 0, "the lookup opened nothing for the rest of the transaction");
    let none: Vec<(uuid::Uuid,)> =
        sqlx::query_as("SELECT id FROM palisade_api_key_lookup('AAAAAAAAAAAA')").fetch_all(&mut *tx).await.unwrap();
    assert!(none.is_empty());
    tx.rollback().await.unwrap();
}

async fn a_key_carries_only_scopes_its_creator_holds_and_only_what_it_was_given(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    app.create_tenant("scoped").await;
    let limited = app.token(Some("scoped"), "lead", &["tenant:admin", "api_keys:write", "todos:read"]);
    let body = json!({"name": "too much", "scopes": ["todos:read", "todos:write", "platform:admin"]});
    let response = send(&app, Method::POST, "/api/v1/api-keys", &limited, Some(body)).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/api-key-scope-not-held");
    assert_eq!(problem["scopes"], json!(["platform:admin", "todos:write"]));

    for (body, field) in [
        (json!({"name": "past", "scopes": ["todos:read"], "expires_at": "2020-01-01T00:00:00Z"}), "expires_at"),
        (json!({"name": "spaces", "scopes": ["todos:read todos:write"]}), "scopes[0]"),
        (json!({"name": "", "scopes": ["todos:read"]}), "name"),
        (json!({"name": "none", "scopes": []}), "scopes"),
    ] {
        let response = send(&app, Method::POST, "/api/v1/api-keys", &limited, Some(body)).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{field}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["errors"][0]["field"], field);
    }

    let reader = create_key(&app, "scoped", &["todos:read"], None).await["key"].as_str().unwrap().to_owned();
    assert_eq!(with_key(&app, Method::GET, "/api/v1/todos", &reader, None).await.0, StatusCode::OK);
    let (status, problem) =
        with_key(&app, Method::POST, "/api/v1/todos", &reader, Some(json!({"title": "not allowed"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(problem["required_scope"], "todos:write");
    // A key is no tenant admin unless it was given the scope: it cannot mint more keys.
    let (status, _) =
        with_key(&app, Method::POST, "/api/v1/api-keys", &reader, Some(json!({"name": "x", "scopes": ["todos:read"]})))
            .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    app.stop().await;
}

async fn only_tenant_admins_with_the_api_key_scopes_manage_keys(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    app.create_tenant("admins").await;
    let member = app.token(Some("admins"), "member", &["api_keys:read", "api_keys:write", "todos:read"]);
    let admin_without_scope = app.token(Some("admins"), "boss", &["tenant:admin", "todos:read"]);
    for token in [&member, &admin_without_scope] {
        let response = send(&app, Method::GET, "/api/v1/api-keys", token, None).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let body = json!({"name": "x", "scopes": ["todos:read"]});
        assert_eq!(send(&app, Method::POST, "/api/v1/api-keys", token, Some(body)).await.status(), StatusCode::FORBIDDEN);
    }
    app.stop().await;
}

async fn every_key_has_its_own_rate_limit_bucket(backend: Backend) {
    let Some(app) = spawn_app(backend, |s| {
        s.rate_limit.policies.insert(AUTHENTICATED.to_owned(), Policy { rate: 1, period: Duration::from_secs(60), burst: 3 });
    })
    .await
    else {
        return;
    };
    app.create_tenant("limits").await;
    let first = create_key(&app, "limits", &["todos:read"], None).await["key"].as_str().unwrap().to_owned();
    let second = create_key(&app, "limits", &["todos:read"], None).await["key"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        assert_eq!(with_key(&app, Method::GET, "/api/v1/todos", &first, None).await.0, StatusCode::OK);
    }
    let response = send(&app, Method::GET, "/api/v1/todos", &first, None).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/rate-limited");
    assert_eq!(problem["policy"], AUTHENTICATED);
    assert_eq!(with_key(&app, Method::GET, "/api/v1/todos", &second, None).await.0, StatusCode::OK, "its own bucket");
    app.stop().await;
}

async fn uses_are_recorded_once_a_minute_and_a_new_address_is_audited(backend: Backend) {
    let Some(app) = spawn_app(backend, |s| s.client_ip.trusted_proxies = vec!["127.0.0.1/32".into()]).await else {
        return;
    };
    app.create_tenant("uses").await;
    let admin = app.token(Some("uses"), "admin", ADMIN);
    let created = create_key(&app, "uses", &["todos:read"], None).await;
    let key = created["key"].as_str().unwrap();
    let path = format!("/api/v1/api-keys/{}", created["id"].as_str().unwrap());
    let from = |ip: &'static str| app.client.get(app.url("/api/v1/todos")).bearer_auth(key).header("x-forwarded-for", ip);

    assert_eq!(from("198.51.100.1").send().await.unwrap().status(), StatusCode::OK);
    let first: Value = send(&app, Method::GET, &path, &admin, None).await.json().await.unwrap();
    assert_eq!(first["last_used_ip"], "198.51.100.1");
    assert_eq!(from("198.51.100.1").send().await.unwrap().status(), StatusCode::OK);
    let second: Value = send(&app, Method::GET, &path, &admin, None).await.json().await.unwrap();
    assert_eq!(second["last_used_at"], first["last_used_at"], "not rewritten within a minute");
    assert_eq!(from("203.0.113.9").send().await.unwrap().status(), StatusCode::OK);
    let third: Value = send(&app, Method::GET, &path, &admin, None).await.json().await.unwrap();
    assert_eq!(third["last_used_ip"], "203.0.113.9");

    let audit: Value = send(&app, Method::GET, "/api/v1/audit-events?limit=100", &admin, None).await.json().await.unwrap();
    let new_ip: Vec<&Value> =
        audit["items"].as_array().unwrap().iter().filter(|e| e["action"] == "api_key.used_from_new_ip").collect();
    let addresses: Vec<&str> = new_ip.iter().map(|e| e["client_ip"].as_str().unwrap()).collect();
    assert_eq!(addresses, ["203.0.113.9", "198.51.100.1"], "newest first, one per new address");
    assert_eq!(new_ip[0]["actor"], format!("apikey:{}", created["id"].as_str().unwrap()));
    app.stop().await;
}
