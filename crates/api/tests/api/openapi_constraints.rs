//! The OpenAPI document states the constraints the server enforces, and the server honours them
//! at the boundary: a request the document calls valid is accepted, one just outside is refused.
//! (schemathesis checks the same thing by property-based testing: `.ci/schemathesis.sh`.)

use crate::support::{Backend, TestApp, spawn_app};
use reqwest::{Method, StatusCode, header::HeaderValue};
use serde_json::{Value, json};

on_both_backends!(
    list_limits_are_documented_as_1_to_100_and_enforced_at_both_ends,
    text_fields_document_their_lengths_and_non_blank_pattern_and_the_server_agrees,
    a_todo_patch_documents_at_least_one_non_null_field_and_refuses_nulls,
    a_role_is_documented_as_member_or_admin,
    idempotency_keys_and_jtis_are_documented_as_1_to_255_visible_ascii,
);

async fn document(app: &TestApp) -> Value {
    let response = app.get("/api/v1/openapi.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("openapi json")
}

/// Follows a `$ref` (or a single-entry `allOf` around one) to the component it names.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    let reference = schema.get("$ref").or_else(|| schema.pointer("/allOf/0/$ref"));
    match reference.and_then(Value::as_str) {
        Some(reference) => doc.pointer(reference.trim_start_matches('#')).expect("referenced schema"),
        None => schema,
    }
}

fn property<'a>(doc: &'a Value, schema: &str, field: &str) -> &'a Value {
    let property =
        doc.pointer(&format!("/components/schemas/{schema}/properties/{field}")).expect("documented property");
    resolve(doc, property)
}

fn parameter<'a>(doc: &'a Value, path: &str, method: &str, name: &str) -> &'a Value {
    let parameters = doc["paths"][path][method]["parameters"].as_array().expect("parameters");
    let parameter = parameters.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("{method} {path}: {name}"));
    &parameter["schema"]
}

fn pattern(schema: &Value) -> regex::Regex {
    regex::Regex::new(schema["pattern"].as_str().expect("a pattern")).expect("a valid pattern")
}

async fn send(app: &TestApp, method: Method, path: &str, token: &str, body: Option<Value>) -> StatusCode {
    let mut request = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("request").status()
}

/// A tenant and a token of its admin with every tenant scope.
async fn tenant_admin(app: &TestApp, slug: &str) -> String {
    app.create_tenant(slug).await;
    app.token(Some(slug), "admin", &["todos:read", "todos:write", "tenant:admin"])
}

async fn list_limits_are_documented_as_1_to_100_and_enforced_at_both_ends(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    let doc = document(&app).await;
    for path in ["/api/v1/todos", "/api/v1/users", "/api/v1/audit-events", "/api/v1/tenants"] {
        let limit = parameter(&doc, path, "get", "limit");
        assert_eq!((limit["minimum"].as_u64(), limit["maximum"].as_u64()), (Some(1), Some(100)), "{path}: {limit}");
    }
    for path in ["/api/v1/todos", "/api/v1/users"] {
        let cursor = parameter(&doc, path, "get", "cursor");
        let pattern = pattern(cursor);
        assert!(pattern.is_match("AZ09az_-AAAAAAAAAAAAAQ"), "{path}: {cursor}");
        assert!(!pattern.is_match("") && !pattern.is_match("AAAAAAAAAAAAAAAAAAAAAB"), "{path}: {cursor}");
    }
    let token = tenant_admin(&app, "limits").await;
    for (cursor, expected) in [("", StatusCode::BAD_REQUEST), ("AZ09az_-AAAAAAAAAAAAAQ", StatusCode::OK)] {
        let status = send(&app, Method::GET, &format!("/api/v1/todos?cursor={cursor}"), &token, None).await;
        assert_eq!(status, expected, "cursor {cursor:?}");
    }
    for (limit, expected) in
        [(0, StatusCode::BAD_REQUEST), (1, StatusCode::OK), (100, StatusCode::OK), (101, StatusCode::BAD_REQUEST)]
    {
        for path in ["/api/v1/todos", "/api/v1/users", "/api/v1/audit-events"] {
            assert_eq!(
                send(&app, Method::GET, &format!("{path}?limit={limit}"), &token, None).await,
                expected,
                "{path} {limit}"
            );
        }
    }
    app.stop().await;
}

async fn text_fields_document_their_lengths_and_non_blank_pattern_and_the_server_agrees(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    let doc = document(&app).await;
    for (schema, field, max) in [("NewTodo", "title", 500), ("TodoPatch", "title", 500), ("NewTenant", "name", 200)] {
        let text = property(&doc, schema, field);
        assert_eq!((text["minLength"].as_u64(), text["maxLength"].as_u64()), (Some(1), Some(max)), "{schema}.{field}");
        let pattern = pattern(text);
        for valid in ["a", " padded ", "tab\there", "line\nbreak", "ünïcödé ✓"] {
            assert!(pattern.is_match(valid), "{schema}.{field} should match {valid:?}");
        }
        for invalid in ["", " ", "\t\n", "bell\u{7}", "nul\u{0}", "c1\u{85}", "cr\r"] {
            assert!(!pattern.is_match(invalid), "{schema}.{field} should not match {invalid:?}");
        }
    }
    let slug = property(&doc, "NewTenant", "slug");
    assert_eq!((slug["minLength"].as_u64(), slug["maxLength"].as_u64()), (Some(1), Some(63)));
    let slug_pattern = pattern(slug);
    for (candidate, valid) in
        [("a", true), ("acme-2", true), ("", false), ("-a", false), ("a-", false), ("Acme", false)]
    {
        assert_eq!(slug_pattern.is_match(candidate), valid, "slug {candidate:?}");
    }

    let token = tenant_admin(&app, "texts").await;
    let long = "x".repeat(500);
    for (title, expected) in [
        ("", StatusCode::UNPROCESSABLE_ENTITY),
        ("   ", StatusCode::UNPROCESSABLE_ENTITY),
        ("a\u{1}", StatusCode::UNPROCESSABLE_ENTITY),
        ("a", StatusCode::CREATED),
        (long.as_str(), StatusCode::CREATED),
        (&format!("{long}x"), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let status = send(&app, Method::POST, "/api/v1/todos", &token, Some(json!({"title": title}))).await;
        assert_eq!(status, expected, "title of {} chars", title.chars().count());
    }
    let admin = app.token(None, "platform-operator", &["platform:admin"]);
    for (slug, name, expected) in [
        ("", "Empty slug", StatusCode::UNPROCESSABLE_ENTITY),
        ("blank-name", " ", StatusCode::UNPROCESSABLE_ENTITY),
        ("long-name", &"n".repeat(201), StatusCode::UNPROCESSABLE_ENTITY),
        ("good-name", &"n".repeat(200), StatusCode::CREATED),
    ] {
        let status =
            send(&app, Method::POST, "/api/v1/tenants", &admin, Some(json!({"slug": slug, "name": name}))).await;
        assert_eq!(status, expected, "tenant {slug:?}");
    }
    app.stop().await;
}

async fn a_todo_patch_documents_at_least_one_non_null_field_and_refuses_nulls(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    let doc = document(&app).await;
    let patch = &doc["components"]["schemas"]["TodoPatch"];
    assert_eq!(patch["minProperties"].as_u64(), Some(1), "{patch}");
    assert_eq!(property(&doc, "TodoPatch", "title")["type"], "string", "title is not nullable");
    assert_eq!(property(&doc, "TodoPatch", "done")["type"], "boolean", "done is not nullable");

    let token = tenant_admin(&app, "patches").await;
    let response = app
        .client
        .post(app.url("/api/v1/todos"))
        .bearer_auth(&token)
        .json(&json!({"title": "patch me"}))
        .send()
        .await
        .expect("create");
    assert_eq!(response.status(), StatusCode::CREATED);
    let todo: Value = response.json().await.expect("todo");
    let path = format!("/api/v1/todos/{}", todo["id"].as_str().expect("id"));
    for body in [json!({}), json!({"done": null}), json!({"title": null}), json!({"title": null, "done": true})] {
        assert_eq!(
            send(&app, Method::PATCH, &path, &token, Some(body.clone())).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
    }
    for body in [json!({"done": true}), json!({"title": "renamed"}), json!({"title": "both", "done": false})] {
        assert_eq!(send(&app, Method::PATCH, &path, &token, Some(body.clone())).await, StatusCode::OK, "{body}");
    }
    app.stop().await;
}

async fn a_role_is_documented_as_member_or_admin(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    let doc = document(&app).await;
    for schema in ["RoleChange", "User"] {
        assert_eq!(property(&doc, schema, "role")["enum"], json!(["member", "admin"]), "{schema}.role");
    }
    let token = tenant_admin(&app, "roles").await;
    let response = app.get("/api/v1/users/me").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let me: Value = app
        .client
        .get(app.url("/api/v1/users/me"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("user");
    let path = format!("/api/v1/users/{}", me["id"].as_str().expect("id"));
    assert_eq!(
        send(&app, Method::PATCH, &path, &token, Some(json!({"role": "owner"}))).await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(send(&app, Method::PATCH, &path, &token, Some(json!({"role": "admin"}))).await, StatusCode::OK);
    app.stop().await;
}

async fn idempotency_keys_and_jtis_are_documented_as_1_to_255_visible_ascii(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    let doc = document(&app).await;
    let key = parameter(&doc, "/api/v1/todos", "post", "Idempotency-Key");
    let jti = property(&doc, "RevokeRequest", "jti");
    for schema in [key, jti] {
        assert_eq!((schema["minLength"].as_u64(), schema["maxLength"].as_u64()), (Some(1), Some(255)), "{schema}");
        let pattern = pattern(schema);
        assert!(pattern.is_match("a-Key_1!~"));
        for invalid in ["", "with space", "ünï", "tab\t"] {
            assert!(!pattern.is_match(invalid), "{invalid:?}");
        }
    }

    let token = tenant_admin(&app, "keys").await;
    for (value, expected) in [
        (HeaderValue::from_static("a-Key_1!~"), StatusCode::CREATED),
        (HeaderValue::from_str(&"k".repeat(255)).expect("header"), StatusCode::CREATED),
        (HeaderValue::from_str(&"k".repeat(256)).expect("header"), StatusCode::BAD_REQUEST),
        (HeaderValue::from_bytes("ünï".as_bytes()).expect("header"), StatusCode::BAD_REQUEST),
    ] {
        let response = app
            .client
            .post(app.url("/api/v1/todos"))
            .bearer_auth(&token)
            .header("idempotency-key", value.clone())
            .json(&json!({"title": "keyed"}))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), expected, "{value:?}");
    }
    for (jti, expected) in [("", StatusCode::BAD_REQUEST), ("some-token-id", StatusCode::NO_CONTENT)] {
        assert_eq!(
            send(&app, Method::POST, "/api/v1/auth/revoke", &token, Some(json!({"jti": jti}))).await,
            expected,
            "{jti:?}"
        );
    }
    // The document's optional body, sent as `null`, revokes the presented token like no body.
    let own = app.token(Some("keys"), "member", &["todos:read"]);
    assert_eq!(send(&app, Method::POST, "/api/v1/auth/revoke", &own, Some(Value::Null)).await, StatusCode::NO_CONTENT);
    assert_eq!(send(&app, Method::GET, "/api/v1/todos", &own, None).await, StatusCode::UNAUTHORIZED);
    app.stop().await;
}
