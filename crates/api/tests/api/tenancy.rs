//! Tenant isolation and the example resource, through the API, on both backends.

use crate::support::{Backend, TestApp, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const RW: &[&str] = &["todos:read", "todos:write"];

on_both_backends!(
    the_demo_tenant_exists_from_the_first_start_in_development,
    a_todo_goes_through_create_read_update_delete_with_etags,
    another_tenant_gets_404_for_a_todo_on_read_update_and_delete,
    another_tenants_rows_never_appear_in_a_list,
    tenant_resolution_refuses_disagreement_unknown_malformed_and_unbound,
    a_suspended_tenant_is_refused_until_reactivated,
    lists_paginate_in_a_stable_order_and_filter_by_done,
    todo_bodies_are_validated_with_field_errors,
    of_two_patches_with_the_same_etag_exactly_one_succeeds,
    an_idempotent_post_is_replayed_and_a_reused_key_with_another_body_refused,
    every_write_appends_an_audit_event_visible_to_tenant_admins_newest_first,
    an_audit_event_is_rolled_back_with_its_transaction,
    scopes_guard_reads_writes_and_administration,
    users_are_provisioned_on_first_request_and_managed_by_tenant_admins,
    platform_admins_create_list_and_get_tenants,
    a_revoked_token_is_refused,
    the_openapi_document_covers_every_api_route,
    control_characters_in_any_text_field_get_422_naming_the_field,
    an_unknown_tenant_and_someone_elses_tenant_get_the_same_answer,
);

async fn send(app: &TestApp, method: Method, path: &str, token: &str, body: Option<Value>) -> reqwest::Response {
    let mut request = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("request")
}

async fn create_todo(app: &TestApp, token: &str, title: &str) -> Value {
    let response = send(app, Method::POST, "/api/v1/todos", token, Some(json!({"title": title}))).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

async fn the_demo_tenant_exists_from_the_first_start_in_development(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    let token = app.token(Some("demo"), "me", RW);
    let todo = create_todo(&app, &token, "try palisade").await;
    assert_eq!(todo["title"], "try palisade");
    app.stop().await;
}

async fn a_todo_goes_through_create_read_update_delete_with_etags(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    app.create_tenant("acme").await;
    let token = app.token(Some("acme"), "alice", RW);
    let created = send(&app, Method::POST, "/api/v1/todos", &token, Some(json!({"title": "  write tests "}))).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let etag = created.headers()["etag"].to_str().unwrap().to_owned();
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let todo: Value = created.json().await.unwrap();
    assert_eq!(todo["title"], "write tests");
    assert_eq!(todo["done"], false);
    assert!(todo["id"].is_string() && todo["created_by"].is_string());
    assert_eq!(location, format!("/api/v1/todos/{}", todo["id"].as_str().unwrap()));

    let read = send(&app, Method::GET, &location, &token, None).await;
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(read.headers()["etag"], etag.as_str());

    let patched = app
        .client
        .patch(app.url(&location))
        .bearer_auth(&token)
        .header("if-match", &etag)
        .json(&json!({"done": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::OK);
    let new_etag = patched.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(new_etag, etag);
    assert_eq!(patched.json::<Value>().await.unwrap()["done"], true);

    for method in [Method::PATCH, Method::DELETE] {
        let stale = app
            .client
            .request(method, app.url(&location))
            .bearer_auth(&token)
            .header("if-match", &etag)
            .json(&json!({"title": "stale"}))
            .send()
            .await
            .unwrap();
        assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
        assert_eq!(stale.headers()["content-type"], "application/problem+json");
    }
    let deleted =
        app.client.delete(app.url(&location)).bearer_auth(&token).header("if-match", &new_etag).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(send(&app, Method::GET, &location, &token, None).await.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

async fn another_tenant_gets_404_for_a_todo_on_read_update_and_delete(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    app.create_tenant("tenant-a").await;
    app.create_tenant("tenant-b").await;
    let a = app.token(Some("tenant-a"), "alice", RW);
    let b = app.token(Some("tenant-b"), "bob", RW);
    let todo = create_todo(&app, &a, "secret plans").await;
    let path = format!("/api/v1/todos/{}", todo["id"].as_str().unwrap());
    for (method, body) in [(Method::GET, None), (Method::PATCH, Some(json!({"done": true}))), (Method::DELETE, None)] {
        let response = send(&app, method.clone(), &path, &b, body).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method} by another tenant");
        let problem: Value = response.json().await.unwrap();
        assert!(!problem.to_string().contains("secret plans"));
    }
    let still_there: Value = send(&app, Method::GET, &path, &a, None).await.json().await.unwrap();
    assert_eq!(still_there["done"], false, "tenant B must not have changed it");
    app.stop().await;
}

async fn another_tenants_rows_never_appear_in_a_list(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    app.create_tenant("tenant-a").await;
    app.create_tenant("tenant-b").await;
    let a = app.token(Some("tenant-a"), "alice", RW);
    let b = app.token(Some("tenant-b"), "bob", RW);
    for n in 0..3 {
        create_todo(&app, &a, &format!("a{n}")).await;
    }
    create_todo(&app, &b, "b0").await;
    let list: Value = send(&app, Method::GET, "/api/v1/todos", &b, None).await.json().await.unwrap();
    let titles: Vec<&str> = list["items"].as_array().unwrap().iter().map(|t| t["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["b0"]);
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

async fn lists_paginate_in_a_stable_order_and_filter_by_done(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    app.create_tenant("pages").await;
    let token = app.token(Some("pages"), "alice", RW);
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(create_todo(&app, &token, &format!("t{n}")).await["id"].as_str().unwrap().to_owned());
    }
    let done_id = &ids[1];
    send(&app, Method::PATCH, &format!("/api/v1/todos/{done_id}"), &token, Some(json!({"done": true}))).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/todos?limit=2&cursor={c}"),
            None => "/api/v1/todos?limit=2".to_owned(),
        };
        let page: Value = send(&app, Method::GET, &path, &token, None).await.json().await.unwrap();
        assert!(page["items"].as_array().unwrap().len() <= 2);
        seen.extend(page["items"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every todo exactly once, in creation order");
    let done: Value = send(&app, Method::GET, "/api/v1/todos?done=true", &token, None).await.json().await.unwrap();
    assert_eq!(done["items"].as_array().unwrap().len(), 1);
    assert_eq!(done["items"][0]["id"], done_id.as_str());
    for bad in ["/api/v1/todos?limit=1000", "/api/v1/todos?cursor=forged", "/api/v1/todos?done=maybe"] {
        assert_eq!(send(&app, Method::GET, bad, &token, None).await.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    app.stop().await;
}

async fn todo_bodies_are_validated_with_field_errors(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    let token = app.token(Some("demo"), "alice", RW);
    let long = "x".repeat(501);
    let cases = [
        (json!({"title": ""}), "title"),
        (json!({"title": "   \t "}), "title"),
        (json!({"title": long}), "title"),
        (json!({}), "title"),
    ];
    for (body, field) in cases {
        let response = send(&app, Method::POST, "/api/v1/todos", &token, Some(body)).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    let wrong_type = app
        .client
        .post(app.url("/api/v1/todos"))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body(r#"{"title":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let malformed = app
        .client
        .post(app.url("/api/v1/todos"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    let list: Value = send(&app, Method::GET, "/api/v1/todos", &token, None).await.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "bad input changes nothing");
    app.stop().await;
}

async fn of_two_patches_with_the_same_etag_exactly_one_succeeds(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    let token = app.token(Some("demo"), "alice", RW);
    let created = send(&app, Method::POST, "/api/v1/todos", &token, Some(json!({"title": "race"}))).await;
    let etag = created.headers()["etag"].to_str().unwrap().to_owned();
    let id = created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let attempts = (0..6).map(|n| {
        app.client
            .patch(app.url(&format!("/api/v1/todos/{id}")))
            .bearer_auth(&token)
            .header("if-match", &etag)
            .json(&json!({"title": format!("writer {n}")}))
            .send()
    });
    let statuses: Vec<StatusCode> =
        futures::future::join_all(attempts).await.into_iter().map(|r| r.unwrap().status()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == StatusCode::OK || *s == StatusCode::PRECONDITION_FAILED), "{statuses:?}");
    app.stop().await;
}

async fn an_idempotent_post_is_replayed_and_a_reused_key_with_another_body_refused(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    let token = app.token(Some("demo"), "alice", RW);
    let post = |key: &'static str, body: Value| {
        app.client.post(app.url("/api/v1/todos")).bearer_auth(&token).header("idempotency-key", key).json(&body).send()
    };
    let first = post("order-42", json!({"title": "pay"})).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first_etag = first.headers()["etag"].clone();
    let first: Value = first.json().await.unwrap();
    let again = post("order-42", json!({"title": "pay"})).await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["etag"], first_etag);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap()["id"], first["id"]);
    let reused = post("order-42", json!({"title": "pay twice"})).await.unwrap();
    assert_eq!(reused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let list: Value = send(&app, Method::GET, "/api/v1/todos", &token, None).await.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "exactly one todo created");
    let someone_else = app
        .client
        .post(app.url("/api/v1/todos"))
        .bearer_auth(app.token(Some("demo"), "bob", RW))
        .header("idempotency-key", "order-42")
        .json(&json!({"title": "pay"}))
        .send()
        .await
        .unwrap();
    assert_eq!(someone_else.status(), StatusCode::CREATED);
    assert!(someone_else.headers().get("idempotent-replayed").is_none(), "keys are per caller");
    assert_ne!(someone_else.json::<Value>().await.unwrap()["id"], first["id"]);
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

/// Makes every `UPDATE` of `idempotency_keys` fail: the last step of an idempotent POST, after the
/// todo and its audit event were inserted in the request's transaction.
async fn fail_idempotency_finish(app: &TestApp, fail: bool) {
    use sqlx::{Connection, Executor};
    let (sqlite, postgres) = if fail {
        (
            "CREATE TRIGGER fail_finish BEFORE UPDATE ON idempotency_keys \
             BEGIN SELECT RAISE(ABORT, 'injected failure after the audit insert'); END",
            "CREATE FUNCTION fail_finish() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'injected failure after the audit insert'; END $$; \
             CREATE TRIGGER fail_finish BEFORE UPDATE ON idempotency_keys \
             FOR EACH ROW EXECUTE FUNCTION fail_finish()",
        )
    } else {
        ("DROP TRIGGER fail_finish", "DROP TRIGGER fail_finish ON idempotency_keys; DROP FUNCTION fail_finish()")
    };
    match app.backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&app.database.url).await.unwrap();
            conn.execute(sqlite).await.unwrap();
        }
        Backend::Postgres => {
            let owner = app.database.admin_url.as_deref().expect("the owner's url");
            let mut conn = sqlx::PgConnection::connect(owner).await.unwrap();
            conn.execute(postgres).await.unwrap();
        }
    }
}

/// The claim: a write and its audit event commit together or not at all. The write here fails
/// after the audit insert (the idempotency record is the last statement of a POST with a key), so
/// neither the todo, nor its event, nor the key may survive; the retry then succeeds once.
async fn an_audit_event_is_rolled_back_with_its_transaction(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    app.create_tenant("rollback").await;
    let token = app.token(Some("rollback"), "alice", RW);
    let admin = app.token(Some("rollback"), "boss", &["tenant:admin"]);
    let created_events = |events: Vec<Value>| events.iter().filter(|e| e["action"] == "todo.created").count();
    let todos = || async {
        let list: Value = send(&app, Method::GET, "/api/v1/todos", &token, None).await.json().await.unwrap();
        list["items"].as_array().unwrap().len()
    };
    let post = || {
        app.client
            .post(app.url("/api/v1/todos"))
            .bearer_auth(&token)
            .header("idempotency-key", "once")
            .json(&json!({"title": "ghost"}))
            .send()
    };

    fail_idempotency_finish(&app, true).await;
    let failed = post().await.unwrap();
    assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR, "the injected failure reached the client");
    assert_eq!(todos().await, 0, "the todo of a failed write survived");
    assert_eq!(created_events(audit_actions(&app, &admin).await), 0, "the audit event of a failed write survived");

    fail_idempotency_finish(&app, false).await;
    let retried = post().await.unwrap();
    assert_eq!(retried.status(), StatusCode::CREATED);
    assert!(retried.headers().get("idempotent-replayed").is_none(), "the failed attempt's key survived");
    assert_eq!(todos().await, 1);
    assert_eq!(created_events(audit_actions(&app, &admin).await), 1);
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

async fn the_openapi_document_covers_every_api_route(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    let doc: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/api/v1/auth/me", &["get"][..]),
        ("/api/v1/auth/revoke", &["post"]),
        ("/api/v1/tenants", &["get", "post"]),
        ("/api/v1/tenants/{id}", &["get"]),
        ("/api/v1/tenants/{id}/suspend", &["post"]),
        ("/api/v1/tenants/{id}/reactivate", &["post"]),
        ("/api/v1/users", &["get"]),
        ("/api/v1/users/me", &["get"]),
        ("/api/v1/users/{id}", &["get", "patch"]),
        ("/api/v1/todos", &["get", "post"]),
        ("/api/v1/todos/{id}", &["get", "patch", "delete"]),
        ("/api/v1/audit-events", &["get"]),
    ] {
        for method in methods {
            let operation = &paths[path][method];
            assert!(operation.is_object(), "{method} {path} missing");
            let responses = operation["responses"].as_object().unwrap();
            for status in ["401", "403", "422", "500"] {
                let content = &responses[status]["content"]["application/problem+json"];
                assert!(content.is_object(), "{method} {path} lacks a {status} problem response");
            }
        }
    }
    let limited = &paths["/api/v1/todos"]["post"]["responses"]["429"]["headers"];
    assert!(limited["Retry-After"].is_object() && limited["RateLimit"].is_object(), "429 headers undocumented");
    for schema in ["Todo", "NewTodo", "TodoPatch", "Tenant", "NewTenant", "User", "ProblemDoc", "AuditEvent"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "schema {schema} missing");
    }
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
