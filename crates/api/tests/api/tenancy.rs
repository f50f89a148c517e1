//! Tenant isolation and the example resource, through the API, on both backends.

use crate::support::{Backend, TestApp, create_todo, send, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const RW: &[&str] = &["todos:read", "todos:write"];

on_both_backends!(
    the_demo_tenant_exists_from_the_first_start_in_development,
    tenant_resolution_refuses_disagreement_unknown_malformed_and_unbound,
    a_suspended_tenant_is_refused_until_reactivated,
    every_write_appends_an_audit_event_visible_to_tenant_admins_newest_first,
    a_write_whose_commit_fails_after_its_audit_insert_leaves_neither_row,
    scopes_guard_reads_writes_and_administration,
    users_are_provisioned_on_first_request_and_managed_by_tenant_admins,
    platform_admins_create_list_and_get_tenants,
    a_revoked_token_is_refused,
    control_characters_in_any_text_field_get_422_naming_the_field,
    an_unknown_tenant_and_someone_elses_tenant_get_the_same_answer,
);

async fn the_demo_tenant_exists_from_the_first_start_in_development(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    let token = app.token(Some("demo"), "me", RW);
    let todo = create_todo(&app, &token, "try palisade").await;
    assert_eq!(todo["title"], "try palisade");
    app.stop().await;
}

async fn tenant_resolution_refuses_disagreement_unknown_malformed_and_unbound(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    app.create_tenant("tenant-a").await;
    app.create_tenant("tenant-b").await;
    let a = app.token(Some("tenant-a"), "alice", RW);
    let cases = [
        (a.clone(), Some("tenant-b"), StatusCode::FORBIDDEN),
        (a.clone(), Some("tenant-a"), StatusCode::OK),
        (a.clone(), Some("no-such-tenant"), StatusCode::FORBIDDEN),
        (a.clone(), Some("Not A Slug!"), StatusCode::BAD_REQUEST),
        (app.token(Some("ghost"), "alice", RW), None, StatusCode::NOT_FOUND),
        (app.token(None, "drifter", RW), Some("tenant-a"), StatusCode::FORBIDDEN),
        (app.token(None, "drifter", RW), None, StatusCode::BAD_REQUEST),
        (app.token(None, "operator", &["todos:read", "platform:admin"]), Some("tenant-a"), StatusCode::OK),
    ];
    for (token, header, status) in cases {
        let mut request = app.client.get(app.url("/api/v1/todos")).bearer_auth(&token);
        if let Some(header) = header {
            request = request.header("x-tenant-id", header);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "header {header:?}");
        if status != StatusCode::OK {
            assert_eq!(response.headers()["content-type"], "application/problem+json");
        }
    }
    app.stop().await;
}

async fn a_suspended_tenant_is_refused_until_reactivated(backend: Backend) {
    let Some(app) = spawn_app(backend, |s| s.tenancy.cache_ttl = std::time::Duration::from_secs(60)).await else {
        return;
    };
    let tenant = app.create_tenant("sleepy").await;
    let token = app.token(Some("sleepy"), "alice", RW);
    assert_eq!(send(&app, Method::GET, "/api/v1/todos", &token, None).await.status(), StatusCode::OK);
    let admin = app.token(None, "operator", &["platform:admin"]);
    let id = tenant["id"].as_str().unwrap();
    let suspended = send(&app, Method::POST, &format!("/api/v1/tenants/{id}/suspend"), &admin, None).await;
    assert_eq!(suspended.json::<Value>().await.unwrap()["status"], "suspended");
    let refused = send(&app, Method::GET, "/api/v1/todos", &token, None).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(refused.json::<Value>().await.unwrap()["type"], "/problems/tenant-suspended");
    send(&app, Method::POST, &format!("/api/v1/tenants/{id}/reactivate"), &admin, None).await;
    assert_eq!(send(&app, Method::GET, "/api/v1/todos", &token, None).await.status(), StatusCode::OK);
    app.stop().await;
}

async fn audit_actions(app: &TestApp, admin: &str) -> Vec<Value> {
    let response = send(app, Method::GET, "/api/v1/audit-events", admin, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json::<Value>().await.unwrap()["items"].as_array().unwrap().clone()
}

async fn every_write_appends_an_audit_event_visible_to_tenant_admins_newest_first(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    app.create_tenant("audited").await;
    let token = app.token(Some("audited"), "alice", RW);
    let admin = app.token(Some("audited"), "boss", &["tenant:admin"]);
    audit_actions(&app, &admin).await;
    let created = send(&app, Method::POST, "/api/v1/todos", &token, Some(json!({"title": "x"}))).await;
    let request_id = created.headers()["x-request-id"].to_str().unwrap().to_owned();
    let id = created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    send(&app, Method::PATCH, &format!("/api/v1/todos/{id}"), &token, Some(json!({"done": true}))).await;
    send(&app, Method::DELETE, &format!("/api/v1/todos/{id}"), &token, None).await;
    let events = audit_actions(&app, &admin).await;
    let actions: Vec<&str> = events.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(&actions[..3], ["todo.deleted", "todo.updated", "todo.created"], "{actions:?}");
    assert!(actions.contains(&"user.provisioned") && actions.contains(&"tenant.created"), "{actions:?}");
    let created_event = &events[2];
    assert_eq!(created_event["actor"], "alice");
    assert_eq!(created_event["resource_id"], id.as_str());
    assert_eq!(created_event["request_id"], request_id.as_str());
    assert_eq!(created_event["client_ip"], "127.0.0.1");
    let denied = send(&app, Method::GET, "/api/v1/audit-events", &token, None).await;
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    app.stop().await;
}

async fn a_write_whose_commit_fails_after_its_audit_insert_leaves_neither_row(backend: Backend) {
    use palisade_store::Tx;
    use palisade_tenancy::{TenantSession, audit::Change};
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    let tenant = app.create_tenant("rollback").await;
    let tenant_id: uuid::Uuid = tenant["id"].as_str().unwrap().parse().unwrap();
    let admin = app.token(Some("rollback"), "boss", &["tenant:admin", "todos:read"]);
    let me: Value = send(&app, Method::GET, "/api/v1/users/me", &admin, None).await.json().await.unwrap();
    let user_id: uuid::Uuid = me["id"].as_str().unwrap().parse().unwrap();
    let before = audit_actions(&app, &admin).await.len();

    let mut session = TenantSession::begin(&app.state.db, tenant_id).await.unwrap();
    // Something that fails only at COMMIT, after the write and its audit row are both in:
    // on PostgreSQL a deferred constraint trigger on audit_events (so it fails only if the audit
    // row was inserted); on SQLite a foreign key the write breaks, checked at COMMIT.
    let created_by = match session.tx().await.unwrap() {
        Tx::Sqlite(tx) => {
            sqlx::query("PRAGMA defer_foreign_keys = ON").execute(&mut **tx).await.unwrap();
            uuid::Uuid::now_v7()
        }
        Tx::Postgres(_) => {
            let owner = app.database.admin_url.clone().unwrap();
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&owner).await.unwrap();
            sqlx::raw_sql(
                "CREATE FUNCTION fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'the commit fails after the audit insert'; END $$; \
                 CREATE CONSTRAINT TRIGGER fail_at_commit AFTER INSERT ON audit_events \
                 DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.actor = 'doomed') \
                 EXECUTE FUNCTION fail_at_commit()",
            )
            .execute(&mut conn)
            .await
            .unwrap();
            user_id
        }
    };
    let todo =
        palisade_api::resources::todos::store::create(session.tx().await.unwrap(), tenant_id, "doomed", created_by)
            .await
            .unwrap();
    let id = todo.id.to_string();
    let change = Change { action: "todo.created", resource_type: "todo", resource_id: &id };
    let failed = session.commit("doomed", change, &Default::default()).await;
    assert!(failed.is_err(), "the commit was meant to fail");

    let read = send(&app, Method::GET, &format!("/api/v1/todos/{id}"), &admin, None).await;
    assert_eq!(read.status(), StatusCode::NOT_FOUND, "the write must not survive its failed commit");
    let events = audit_actions(&app, &admin).await;
    assert_eq!(events.len(), before, "nor its audit event: {events:?}");
    assert!(events.iter().all(|e| e["resource_id"] != id.as_str()));

    let stale = app
        .client
        .delete(app.url(&format!("/api/v1/todos/{}", uuid::Uuid::now_v7())))
        .bearer_auth(app.token(Some("rollback"), "boss", RW))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::NOT_FOUND);
    let actions: Vec<String> =
        audit_actions(&app, &admin).await.iter().map(|e| e["action"].as_str().unwrap().to_owned()).collect();
    assert!(!actions.iter().any(|a| a == "todo.deleted"), "a refused write leaves no event: {actions:?}");
    app.stop().await;
}

async fn scopes_guard_reads_writes_and_administration(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    let reader = app.token(Some("demo"), "reader", &["todos:read"]);
    let write = send(&app, Method::POST, "/api/v1/todos", &reader, Some(json!({"title": "x"}))).await;
    assert_eq!(write.status(), StatusCode::FORBIDDEN);
    assert!(write.headers()["www-authenticate"].to_str().unwrap().contains("insufficient_scope"));
    assert_eq!(send(&app, Method::GET, "/api/v1/todos", &reader, None).await.status(), StatusCode::OK);
    let anonymous = app.client.get(app.url("/api/v1/todos")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(anonymous.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    let garbage = app.client.get(app.url("/api/v1/todos")).bearer_auth("not.a.token").send().await.unwrap();
    assert_eq!(garbage.status(), StatusCode::UNAUTHORIZED);
    assert!(!garbage.text().await.unwrap().contains("not.a.token"), "the token is never echoed");
    assert_eq!(send(&app, Method::GET, "/api/v1/tenants", &reader, None).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(send(&app, Method::GET, "/api/v1/users", &reader, None).await.status(), StatusCode::FORBIDDEN);
    app.stop().await;
}

async fn users_are_provisioned_on_first_request_and_managed_by_tenant_admins(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    app.create_tenant("team").await;
    let alice = app.token(Some("team"), "alice", RW);
    let admin = app.token(Some("team"), "boss", &["tenant:admin"]);
    let me: Value = send(&app, Method::GET, "/api/v1/users/me", &alice, None).await.json().await.unwrap();
    assert_eq!(me["subject"], "alice");
    assert_eq!(me["role"], "member");
    let again: Value = send(&app, Method::GET, "/api/v1/users/me", &alice, None).await.json().await.unwrap();
    assert_eq!(again["id"], me["id"], "provisioned once");
    let users: Value = send(&app, Method::GET, "/api/v1/users", &admin, None).await.json().await.unwrap();
    let subjects: Vec<&str> =
        users["items"].as_array().unwrap().iter().map(|u| u["subject"].as_str().unwrap()).collect();
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    let path = format!("/api/v1/users/{}", me["id"].as_str().unwrap());
    let promoted = send(&app, Method::PATCH, &path, &admin, Some(json!({"role": "admin"}))).await;
    assert_eq!(promoted.json::<Value>().await.unwrap()["role"], "admin");
    assert_eq!(
        send(&app, Method::GET, "/api/v1/users", &alice, None).await.status(),
        StatusCode::OK,
        "role admin acts as tenant admin"
    );
    let bad = send(&app, Method::PATCH, &path, &admin, Some(json!({"role": "emperor"}))).await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}

async fn platform_admins_create_list_and_get_tenants(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    let admin = app.token(None, "operator", &["platform:admin"]);
    let created = app.create_tenant("new-co").await;
    assert_eq!(created["slug"], "new-co");
    assert_eq!(created["status"], "active");
    let dup = send(&app, Method::POST, "/api/v1/tenants", &admin, Some(json!({"slug": "new-co", "name": "x"}))).await;
    assert_eq!(dup.status(), StatusCode::CONFLICT);
    let invalid =
        send(&app, Method::POST, "/api/v1/tenants", &admin, Some(json!({"slug": "Bad Slug", "name": ""}))).await;
    assert_eq!(invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<String> = invalid.json::<Value>().await.unwrap()["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fields, ["name", "slug"]);
    let id = created["id"].as_str().unwrap();
    let got: Value =
        send(&app, Method::GET, &format!("/api/v1/tenants/{id}"), &admin, None).await.json().await.unwrap();
    assert_eq!(got["slug"], "new-co");
    let list: Value = send(&app, Method::GET, "/api/v1/tenants?limit=1", &admin, None).await.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(list["next_cursor"].is_string(), "demo and new-co make two pages of one");
    let missing = send(&app, Method::GET, &format!("/api/v1/tenants/{}", uuid::Uuid::now_v7()), &admin, None).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

async fn a_revoked_token_is_refused(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    let token = app.token(Some("demo"), "alice", RW);
    let me: Value = send(&app, Method::GET, "/api/v1/auth/me", &token, None).await.json().await.unwrap();
    assert_eq!(me["subject"], "alice");
    assert_eq!(me["tenant"], "demo");
    assert_eq!(send(&app, Method::POST, "/api/v1/auth/revoke", &token, None).await.status(), StatusCode::NO_CONTENT);
    let refused = send(&app, Method::GET, "/api/v1/auth/me", &token, None).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));
    app.stop().await;
}

/// Row-level security holds even for SQL that forgets the tenant: connected as the app role, an
/// unscoped SELECT sees nothing and an insert for another tenant is refused by the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_row_level_security_hides_and_protects_other_tenants_rows_from_raw_sql() {
    use sqlx::{Connection, PgConnection};
    let Some(app) = spawn_app(Backend::Postgres, |_| {}).await else { return };
    let a = app.create_tenant("tenant-a").await;
    let b = app.create_tenant("tenant-b").await;
    create_todo(&app, &app.token(Some("tenant-a"), "alice", RW), "a's row").await;
    let mut conn = PgConnection::connect(&app.database.url).await.unwrap();
    let user: (String,) = sqlx::query_as("SELECT current_user::text").fetch_one(&mut conn).await.unwrap();
    assert_eq!(user.0, "palisade_test_app", "the server's role, not the owner");

    let unscoped: (i64,) = sqlx::query_as("SELECT count(*) FROM todos").fetch_one(&mut conn).await.unwrap();
    assert_eq!(unscoped.0, 0, "no tenant set: no rows");
    let users: (i64,) = sqlx::query_as("SELECT count(*) FROM users").fetch_one(&mut conn).await.unwrap();
    assert_eq!(users.0, 0);

    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(b["id"].as_str().unwrap())
        .execute(&mut *tx)
        .await
        .unwrap();
    let as_b: (i64,) = sqlx::query_as("SELECT count(*) FROM todos").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(as_b.0, 0, "tenant B sees none of A's rows");
    let a_user: (uuid::Uuid,) = {
        let mut owner = PgConnection::connect(app.database.admin_url.as_deref().unwrap()).await.unwrap();
        sqlx::query_as("SELECT id FROM users LIMIT 1").fetch_one(&mut owner).await.unwrap()
    };
    let smuggled =
        sqlx::query("INSERT INTO todos (id, tenant_id, title, created_by) VALUES ($1, $2::uuid, 'smuggled', $3)")
            .bind(uuid::Uuid::now_v7())
            .bind(a["id"].as_str().unwrap())
            .bind(a_user.0)
            .execute(&mut *tx)
            .await;
    let error = smuggled.expect_err("an insert for another tenant must be refused").to_string();
    assert!(error.contains("row-level security"), "{error}");
    tx.rollback().await.unwrap();

    let unset = sqlx::query("INSERT INTO todos (id, tenant_id, title, created_by) VALUES ($1, $2::uuid, 'x', $3)")
        .bind(uuid::Uuid::now_v7())
        .bind(a["id"].as_str().unwrap())
        .bind(a_user.0)
        .execute(&mut conn)
        .await;
    assert!(unset.is_err(), "with no tenant set an insert is refused");
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(a["id"].as_str().unwrap())
        .execute(&mut *tx)
        .await
        .unwrap();
    let as_a: (i64,) = sqlx::query_as("SELECT count(*) FROM todos").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(as_a.0, 1, "the owner tenant still sees its row");
    tx.rollback().await.unwrap();
    conn.close().await.unwrap();
    app.stop().await;
}

/// A token revoked through one replica is refused by another sharing the same Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_on_one_replica_is_refused_by_another_sharing_redis() {
    let Some(first) = spawn_app(Backend::Postgres, |_| {}).await else { return };
    let settings = (*first.state.settings).clone();
    let second = crate::support::start(settings, axum::Router::new(), Backend::Postgres, first.database.shared()).await;
    let token = first.token(Some("demo"), "alice", RW);
    assert_eq!(send(&second, Method::GET, "/api/v1/auth/me", &token, None).await.status(), StatusCode::OK);
    assert_eq!(send(&first, Method::POST, "/api/v1/auth/revoke", &token, None).await.status(), StatusCode::NO_CONTENT);
    for replica in [&first, &second] {
        let refused = send(replica, Method::GET, "/api/v1/auth/me", &token, None).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(refused.json::<Value>().await.unwrap()["reason"], "revoked");
    }
    second.stop().await;
    first.stop().await;
}

/// A user's role and its tenant's status are reused from memory while nothing changed in the
/// tenant, but a change made through one replica (a role, a suspension, an erasure) is seen by
/// the next request on another: it bumped the tenant's membership epoch in the Redis both share
/// (docs/adr/0005-tenant-isolation.md). The cache's TTL is long here, so only the epoch can tell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_membership_change_through_one_replica_is_seen_by_the_next_request_on_another() {
    let ttl = std::time::Duration::from_secs(3600);
    let Some(first) = spawn_app(Backend::Postgres, |s| s.tenancy.membership_cache_ttl = ttl).await else { return };
    let settings = (*first.state.settings).clone();
    let second = crate::support::start(settings, axum::Router::new(), Backend::Postgres, first.database.shared()).await;
    let id = first.create_tenant("epochs").await["id"].as_str().unwrap().to_owned();
    let bob = first.token(Some("epochs"), "bob", RW);
    let boss = first.token(Some("epochs"), "boss", &["tenant:admin"]);
    let platform = first.token(None, "operator", &["platform:admin"]);
    let me = async |app: &TestApp| {
        let response = send(app, Method::GET, "/api/v1/users/me", &bob, None).await;
        let status = response.status();
        (status, response.json::<Value>().await.unwrap())
    };
    // Provisioned, then served from the second replica's memory.
    let (_, before) = me(&second).await;
    for _ in 0..2 {
        assert_eq!(me(&second).await.1, before);
    }
    assert_eq!(before["role"], "member");
    let bob_id = before["id"].as_str().unwrap();

    let role = Some(json!({"role": "admin"}));
    let promoted = send(&first, Method::PATCH, &format!("/api/v1/users/{bob_id}"), &boss, role).await;
    assert_eq!(promoted.status(), StatusCode::OK);
    assert_eq!(me(&second).await.1["role"], "admin", "the role changed through the first replica");

    let suspend = send(&first, Method::POST, &format!("/api/v1/tenants/{id}/suspend"), &platform, None).await;
    assert_eq!(suspend.status(), StatusCode::OK);
    let (status, refused) = me(&second).await;
    assert_eq!((status, refused["type"].as_str()), (StatusCode::FORBIDDEN, Some("/problems/tenant-suspended")));
    let reactivate = send(&first, Method::POST, &format!("/api/v1/tenants/{id}/reactivate"), &platform, None).await;
    assert_eq!(reactivate.status(), StatusCode::OK);
    assert_eq!(me(&second).await.0, StatusCode::OK);

    // After an erasure the subject names no user: its next request provisions a new one.
    assert_eq!(send(&first, Method::DELETE, "/api/v1/users/me/data", &bob, None).await.status(), StatusCode::OK);
    let (status, after) = me(&second).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(after["id"], before["id"], "the erased user is not served any more");
    assert_eq!(after["role"], "member");
    second.stop().await;
    first.stop().await;
}

/// Revocation keys are canonical: whether the revoking admin's token and the victim's token name
/// the tenant by slug or by uuid (all four combinations), the victim's token is refused on both
/// replicas sharing Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_the_token_whether_either_side_named_the_tenant_by_slug_or_uuid() {
    let Some(first) = spawn_app(Backend::Postgres, |_| {}).await else { return };
    let settings = (*first.state.settings).clone();
    let second = crate::support::start(settings, axum::Router::new(), Backend::Postgres, first.database.shared()).await;
    let tenant = first.create_tenant("revokers").await;
    let uuid = tenant["id"].as_str().unwrap().to_owned();
    let upper = uuid.to_uppercase();
    let forms = [("slug", "revokers"), ("uuid", uuid.as_str()), ("UUID", upper.as_str())];
    for (admin_form, admin_tenant) in forms {
        for (victim_form, victim_tenant) in forms {
            let case = format!("admin by {admin_form}, victim by {victim_form}");
            let admin = first.token(Some(admin_tenant), "admin", &["tenant:admin"]);
            let victim = first.token(Some(victim_tenant), "victim", RW);
            let me = send(&second, Method::GET, "/api/v1/auth/me", &victim, None).await;
            assert_eq!(me.status(), StatusCode::OK, "{case}");
            let jti = me.json::<Value>().await.unwrap()["jti"].as_str().unwrap().to_owned();
            let revoked = send(&first, Method::POST, "/api/v1/auth/revoke", &admin, Some(json!({"jti": jti}))).await;
            assert_eq!(revoked.status(), StatusCode::NO_CONTENT, "{case}");
            for (replica, path) in [(&first, "/api/v1/todos"), (&second, "/api/v1/todos"), (&second, "/api/v1/auth/me")]
            {
                let refused = send(replica, Method::GET, path, &victim, None).await;
                assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{case} on {path}");
                assert_eq!(refused.json::<Value>().await.unwrap()["reason"], "revoked", "{case}");
            }
        }
    }
    second.stop().await;
    first.stop().await;
}

async fn each_caller_has_its_own_budget_per_tenant_and_writes_a_tighter_one(backend: Backend) {
    use palisade_edge::rate_limit::{AUTHENTICATED, Policy, WRITE};
    let Some(app) = spawn_app(backend, |s| {
        let per_minute = |burst| Policy { rate: 1, period: std::time::Duration::from_secs(60), burst };
        s.rate_limit.policies.insert(AUTHENTICATED.to_owned(), per_minute(4));
        s.rate_limit.policies.insert(WRITE.to_owned(), per_minute(2));
        s.rate_limit.redis_timeout = std::time::Duration::from_secs(2);
    })
    .await
    else {
        return;
    };
    let alice = app.token(Some("demo"), "alice", RW);
    let bob = app.token(Some("demo"), "bob", RW);
    let mut writes = Vec::new();
    for n in 0..3 {
        writes.push(send(&app, Method::POST, "/api/v1/todos", &alice, Some(json!({"title": format!("t{n}")}))).await);
    }
    let statuses: Vec<StatusCode> = writes.iter().map(reqwest::Response::status).collect();
    assert_eq!(statuses, [StatusCode::CREATED, StatusCode::CREATED, StatusCode::TOO_MANY_REQUESTS]);
    let refused = &writes[2];
    assert!(refused.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    let all = |response: &reqwest::Response, name: &str| {
        response.headers().get_all(name).iter().map(|v| v.to_str().unwrap().to_owned()).collect::<Vec<_>>().join(", ")
    };
    assert!(all(refused, "ratelimit").contains("\"write\";r=0"), "{:?}", refused.headers());
    let read = send(&app, Method::GET, "/api/v1/todos", &alice, None).await;
    assert_eq!(read.status(), StatusCode::OK, "reads have their own, larger budget");
    assert!(all(&read, "ratelimit-policy").contains("\"authenticated\";q=4"), "{:?}", read.headers());
    assert_eq!(send(&app, Method::GET, "/api/v1/todos", &alice, None).await.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(send(&app, Method::GET, "/api/v1/todos", &bob, None).await.status(), StatusCode::OK, "bob's own budget");
    app.stop().await;
}

on_both_backends!(each_caller_has_its_own_budget_per_tenant_and_writes_a_tighter_one);

/// Outside development the server checks the role it connects as: a superuser (which bypasses
/// row-level security) is refused at startup, with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_production_refuses_to_run_as_a_superuser() {
    let Some(database) = crate::support::TestDatabase::create(Backend::Postgres).await else { return };
    let mut settings = crate::support::settings_for(Backend::Postgres, &database).expect("settings");
    settings.environment = palisade_api::Environment::Production;
    settings.auth.issuer = Some("https://issuer.example.com".to_owned());
    settings.auth.audience = Some("palisade".to_owned());
    settings.database.url = database.admin_url.clone().expect("owner url").into();
    let error = palisade_api::Application::build(settings).await.expect_err("a superuser must be refused");
    let message = error.to_string();
    assert!(matches!(error, palisade_api::StartupError::Config(_)), "{message}");
    assert!(message.contains("superuser"), "{message}");
    assert!(message.contains("owns"), "the table owner is refused too: {message}");
}

on_both_backends!(
    a_slug_that_spells_a_uuid_is_refused,
    a_tenant_admin_revokes_by_jti_only_within_its_own_tenant,
    a_token_bound_to_a_tenant_is_refused_in_another_whatever_the_resolution_order,
    every_spelling_of_a_suspended_tenants_id_is_refused,
    a_slowly_uploaded_body_holds_no_transaction_open,
);

async fn a_slug_that_spells_a_uuid_is_refused(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    let admin = app.token(None, "operator", &["platform:admin"]);
    let demo: Value = send(&app, Method::GET, "/api/v1/tenants?limit=1", &admin, None).await.json().await.unwrap();
    let demo_id: uuid::Uuid = demo["items"][0]["id"].as_str().unwrap().parse().unwrap();
    for slug in [demo_id.simple().to_string(), demo_id.to_string()] {
        let response =
            send(&app, Method::POST, "/api/v1/tenants", &admin, Some(json!({"slug": slug, "name": "x"}))).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{slug}");
    }
    app.stop().await;
}

async fn a_tenant_admin_revokes_by_jti_only_within_its_own_tenant(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    app.create_tenant("tenant-a").await;
    app.create_tenant("tenant-b").await;
    let admin_a = app.token(Some("tenant-a"), "boss-a", &["tenant:admin"]);
    let user_a = app.token(Some("tenant-a"), "alice", RW);
    let user_b = app.token(Some("tenant-b"), "bob", RW);
    let (jti_a, jti_b) = (jti_of(&app, &user_a).await, jti_of(&app, &user_b).await);
    for target in [&jti_b, &jti_a] {
        let revoked = send(&app, Method::POST, "/api/v1/auth/revoke", &admin_a, Some(json!({"jti": target}))).await;
        assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    }
    assert_eq!(
        send(&app, Method::GET, "/api/v1/auth/me", &user_b, None).await.status(),
        StatusCode::OK,
        "other tenant"
    );
    assert_eq!(send(&app, Method::GET, "/api/v1/auth/me", &user_a, None).await.status(), StatusCode::UNAUTHORIZED);

    let huge = send(&app, Method::POST, "/api/v1/auth/revoke", &admin_a, Some(json!({"jti": "x".repeat(1000)}))).await;
    assert_eq!(huge.status(), StatusCode::BAD_REQUEST);
    let far = json!({"jti": "some-jti", "expires_at": "9999-12-31T23:59:59Z"});
    assert_eq!(
        send(&app, Method::POST, "/api/v1/auth/revoke", &admin_a, Some(far)).await.status(),
        StatusCode::NO_CONTENT
    );
    app.stop().await;
}

async fn a_token_bound_to_a_tenant_is_refused_in_another_whatever_the_resolution_order(backend: Backend) {
    use palisade_tenancy::TenantSource;
    let Some(app) = spawn_app(backend, |s| s.tenancy.resolution_order = vec![TenantSource::Header]).await else {
        return;
    };
    app.create_tenant("tenant-a").await;
    app.create_tenant("tenant-b").await;
    let bob = app.token(Some("tenant-a"), "bob", RW);
    let elsewhere = app.client.get(app.url("/api/v1/todos")).bearer_auth(&bob).header("x-tenant-id", "tenant-b");
    assert_eq!(elsewhere.send().await.unwrap().status(), StatusCode::FORBIDDEN);
    let home = app.client.get(app.url("/api/v1/todos")).bearer_auth(&bob).header("x-tenant-id", "tenant-a");
    assert_eq!(home.send().await.unwrap().status(), StatusCode::OK);
    app.stop().await;
}

async fn every_spelling_of_a_suspended_tenants_id_is_refused(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    let tenant = app.create_tenant("spelled").await;
    let id: uuid::Uuid = tenant["id"].as_str().unwrap().parse().unwrap();
    let operator = app.token(None, "operator", &["todos:read", "platform:admin"]);
    let spellings = [id.to_string(), id.to_string().to_uppercase(), id.simple().to_string()];
    for spelling in &spellings {
        let ok = app.client.get(app.url("/api/v1/todos")).bearer_auth(&operator).header("x-tenant-id", spelling);
        assert_eq!(ok.send().await.unwrap().status(), StatusCode::OK, "{spelling}");
    }
    send(&app, Method::POST, &format!("/api/v1/tenants/{id}/suspend"), &operator, None).await;
    for spelling in &spellings {
        let refused = app.client.get(app.url("/api/v1/todos")).bearer_auth(&operator).header("x-tenant-id", spelling);
        assert_eq!(refused.send().await.unwrap().status(), StatusCode::FORBIDDEN, "{spelling}");
    }
    app.stop().await;
}

/// A client uploading its body slowly must not hold a transaction (on SQLite: the write lock)
/// while it does: other callers are served meanwhile, and the slow request still completes.
async fn a_slowly_uploaded_body_holds_no_transaction_open(backend: Backend) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    let slow_token = app.token(Some("demo"), "slow", RW);
    let other = app.token(Some("demo"), "other", RW);
    send(&app, Method::GET, "/api/v1/todos", &other, None).await;
    let body = br#"{"title":"uploaded slowly"}"#;
    let mut slow = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/todos HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {slow_token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        app.addr,
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&body[..5]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let created = send(&app, Method::POST, "/api/v1/todos", &other, Some(json!({"title": "meanwhile"}))).await;
        assert_eq!(created.status(), StatusCode::CREATED);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "waited {:?} behind a slow upload",
            started.elapsed()
        );
    }
    slow.write_all(&body[5..]).await.unwrap();
    let mut answer = vec![0u8; 32];
    let read = slow.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..read]).starts_with("HTTP/1.1 201"));
    app.stop().await;
}

async fn jti_of(app: &TestApp, token: &str) -> String {
    let me: Value = send(app, Method::GET, "/api/v1/auth/me", token, None).await.json().await.unwrap();
    me["jti"].as_str().unwrap().to_owned()
}

async fn control_characters_in_any_text_field_get_422_naming_the_field(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    app.create_tenant("acme").await;
    let token = app.token(Some("acme"), "alice", RW);
    let platform = app.token(None, "platform-operator", &["platform:admin"]);
    let todo = create_todo(&app, &token, "fine").await;
    let todo_path = format!("/api/v1/todos/{}", todo["id"].as_str().unwrap());
    let cases = [
        (Method::POST, "/api/v1/todos", &token, json!({"title": "a\u{0}b"}), "title"),
        (Method::POST, "/api/v1/todos", &token, json!({"title": "bell\u{7}"}), "title"),
        (Method::PATCH, todo_path.as_str(), &token, json!({"title": "x\u{1b}[31m"}), "title"),
        (Method::POST, "/api/v1/tenants", &platform, json!({"slug": "nul", "name": "N\u{0}L"}), "name"),
    ];
    for (method, path, token, body, field) in cases {
        let response = send(&app, method.clone(), path, token, Some(body.clone())).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{method} {path} {body}");
        assert_eq!(response.headers()["content-type"], "application/problem+json");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    // Nothing was stored, and tab and newline are still text.
    let listed: Value = send(&app, Method::GET, "/api/v1/todos", &token, None).await.json().await.unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
    let created = create_todo(&app, &token, "line one\nline\ttwo").await;
    assert_eq!(created["title"], "line one\nline\ttwo");
    app.stop().await;
}

async fn an_unknown_tenant_and_someone_elses_tenant_get_the_same_answer(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    app.create_tenant("tenant-a").await;
    let other = app.create_tenant("tenant-b").await;
    let a = app.token(Some("tenant-a"), "alice", RW);
    let drifter = app.token(None, "drifter", RW);
    let probe = |token: String, header: String| {
        let request = app.client.get(app.url("/api/v1/todos")).bearer_auth(token).header("x-tenant-id", header);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let mut body: Value = response.json().await.unwrap();
            body.as_object_mut().unwrap().remove("request_id");
            (status, body)
        }
    };
    for token in [a, drifter] {
        let existing = probe(token.clone(), "tenant-b".to_owned()).await;
        let by_uuid = probe(token.clone(), other["id"].as_str().unwrap().to_owned()).await;
        let unknown = probe(token.clone(), "no-such-tenant".to_owned()).await;
        let unknown_uuid = probe(token, "00000000-0000-4000-8000-000000000000".to_owned()).await;
        assert_eq!(existing.0, StatusCode::FORBIDDEN, "{}", existing.1);
        assert_eq!(existing, unknown);
        assert_eq!(by_uuid, unknown_uuid);
        assert_eq!(existing, by_uuid);
    }
    app.stop().await;
}

/// On SQLite a read (user lookup and handler in one deferred transaction) takes no write lock:
/// while another connection holds it, reads are still answered, and a write waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_reads_are_answered_while_another_connection_holds_the_write_lock() {
    use sqlx::{Connection, SqliteConnection};
    let Some(app) = spawn_app(Backend::Sqlite, |_| {}).await else { return };
    let token = app.token(Some("demo"), "reader", RW);
    let todo = create_todo(&app, &token, "read me").await;
    let path = format!("/api/v1/todos/{}", todo["id"].as_str().unwrap());
    let mut writer = SqliteConnection::connect(&app.database.url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut writer).await.unwrap();
    for read in [path.as_str(), "/api/v1/todos?done=false", "/api/v1/users/me"] {
        let response = send(&app, Method::GET, read, &token, None).await;
        assert_eq!(response.status(), StatusCode::OK, "{read} while the write lock is held");
    }
    let write = tokio::spawn({
        let (client, url, token) = (app.client.clone(), app.url("/api/v1/todos"), token.clone());
        async move { client.post(url).bearer_auth(token).json(&json!({"title": "after"})).send().await.unwrap() }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!write.is_finished(), "a write did not wait for the lock");
    sqlx::query("ROLLBACK").execute(&mut writer).await.unwrap();
    assert_eq!(write.await.unwrap().status(), StatusCode::CREATED);
    writer.close().await.unwrap();
    app.stop().await;
}
