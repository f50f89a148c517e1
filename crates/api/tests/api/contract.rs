//! The OpenAPI document is the API's contract: it lists exactly the operations the router serves,
//! every real response (success and problem) validates against the schemas it documents, and it
//! changes only together with its committed snapshot (`docs/openapi.json`).

use std::path::PathBuf;

use crate::support::{Backend, TestApp, contract::Contract, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

on_both_backends!(
    the_document_lists_exactly_the_operations_the_router_serves,
    every_operation_answers_as_the_document_says_on_success_and_on_problems,
);

async fn document(app: &TestApp) -> Value {
    let response = app.get("/api/v1/openapi.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("openapi json")
}

/// A concrete path for a template: every parameter becomes a fresh uuid.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|part| if part.starts_with('{') { uuid::Uuid::now_v7().to_string() } else { part.to_owned() })
        .collect::<Vec<_>>()
        .join("/")
}

/// Derived from the document, never from a list in this file: each documented operation is
/// served (an anonymous request gets the documented 401, not the fallback's 404 or a 405), and
/// on each documented path every other method gets 405, so the router serves nothing there that
/// the document does not list. The probes and metrics (`/health`, `/ready`, `/metrics`) and the
/// document itself are the only routes outside it.
async fn the_document_lists_exactly_the_operations_the_router_serves(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    let doc = document(&app).await;
    let operations = Contract::operations(&doc);
    assert!(operations.len() >= 17, "the document lists {} operations", operations.len());
    let mut ids: Vec<&str> = operations
        .iter()
        .map(|(method, path)| doc["paths"][path][method.to_lowercase()]["operationId"].as_str().expect("operationId"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), operations.len(), "operationIds must be unique (generated clients name methods by them)");
    let mut contract = Contract::new(doc.clone());
    for (method, template) in &operations {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let path = concrete(template);
        let response = app.client.request(method.clone(), app.url(&path)).send().await.unwrap();
        let checked = contract.check(&method, &path, response).await;
        assert_eq!(checked.status, StatusCode::UNAUTHORIZED, "{method} {template} is not served as documented");
        let operation = &doc["paths"][template][method.as_str().to_lowercase()];
        for status in ["400", "401", "403", "404", "422", "429", "500", "503"] {
            let content = &operation["responses"][status]["content"]["application/problem+json"];
            assert!(content.is_object(), "{method} {template} lacks a {status} problem response");
        }
        assert!(operation["responses"]["429"]["headers"]["Retry-After"].is_object(), "{method} {template}: 429");
        assert!(operation["security"][0]["bearer"].is_array(), "{method} {template} documents no bearer security");
    }
    for (template, item) in doc["paths"].as_object().unwrap() {
        for method in [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            if item.get(method.as_str().to_lowercase()).is_some() {
                continue;
            }
            let response = app.client.request(method.clone(), app.url(&concrete(template))).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {template} is served undocumented");
        }
    }
    app.stop().await;
}

/// Walks every operation through success and through the problems a client meets (401, 403,
/// 404, 400, 412, 422, 409), checking each real response against the document. Fails if an
/// operation of the document was not exercised with a success.
async fn every_operation_answers_as_the_document_says_on_success_and_on_problems(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    let mut contract = Contract::new(document(&app).await);
    let platform = app.token(None, "operator", &["platform:admin"]);
    let admin = app.token(Some("contract"), "admin", &["todos:read", "todos:write", "tenant:admin"]);
    let reader = app.token(Some("contract"), "reader", &["todos:read"]);

    let mut walk = Walk { app: &app, contract: &mut contract };

    let tenant = walk
        .call(Method::POST, "/api/v1/tenants", Some(&platform), Some(json!({"slug": "contract", "name": "C"})), 201)
        .await;
    walk.call(Method::POST, "/api/v1/tenants", Some(&platform), Some(json!({"slug": "contract", "name": "C"})), 409)
        .await;
    walk.call(Method::POST, "/api/v1/tenants", Some(&platform), Some(json!({"slug": "Not A Slug", "name": ""})), 422)
        .await;
    let tenant_path = format!("/api/v1/tenants/{}", tenant["id"].as_str().unwrap());
    walk.call(Method::GET, "/api/v1/tenants?limit=1", Some(&platform), None, 200).await;
    walk.call(Method::GET, "/api/v1/tenants?limit=0", Some(&platform), None, 400).await;
    walk.call(Method::GET, &tenant_path, Some(&platform), None, 200).await;
    walk.call(Method::GET, &concrete("/api/v1/tenants/{id}"), Some(&platform), None, 404).await;
    walk.call(Method::GET, &tenant_path, Some(&admin), None, 403).await;
    walk.call(Method::POST, &format!("{tenant_path}/suspend"), Some(&platform), None, 200).await;
    walk.call(Method::GET, "/api/v1/todos", Some(&admin), None, 403).await;
    walk.call(Method::POST, &format!("{tenant_path}/reactivate"), Some(&platform), None, 200).await;
    walk.call(Method::DELETE, &tenant_path, Some(&platform), None, 200).await;
    walk.call(Method::GET, "/api/v1/users/me", Some(&admin), None, 410).await;
    walk.call(Method::DELETE, &tenant_path, Some(&platform), None, 410).await;
    walk.call(Method::DELETE, &tenant_path, Some(&admin), None, 403).await;
    walk.call(Method::POST, &format!("{tenant_path}/restore"), Some(&platform), None, 200).await;
    walk.call(Method::POST, &format!("{tenant_path}/restore"), Some(&platform), None, 409).await;

    let me = walk.call(Method::GET, "/api/v1/auth/me", Some(&admin), None, 200).await;
    assert_eq!(me["subject"], "admin");
    walk.call(Method::GET, "/api/v1/auth/me", None, None, 401).await;
    let user = walk.call(Method::GET, "/api/v1/users/me", Some(&admin), None, 200).await;
    walk.call(Method::GET, "/api/v1/users/me", Some(&reader), None, 200).await;
    walk.call(Method::GET, "/api/v1/users", Some(&admin), None, 200).await;
    walk.call(Method::GET, "/api/v1/users", Some(&reader), None, 403).await;
    let user_path = format!("/api/v1/users/{}", user["id"].as_str().unwrap());
    walk.call(Method::GET, &user_path, Some(&admin), None, 200).await;
    walk.call(Method::PATCH, &user_path, Some(&admin), Some(json!({"role": "admin"})), 200).await;
    walk.call(Method::PATCH, &user_path, Some(&admin), Some(json!({"role": "owner"})), 422).await;

    let todo = walk.call(Method::POST, "/api/v1/todos", Some(&admin), Some(json!({"title": "contract"})), 201).await;
    walk.call(Method::POST, "/api/v1/todos", Some(&admin), Some(json!({"title": " "})), 422).await;
    walk.call(Method::POST, "/api/v1/todos", Some(&reader), Some(json!({"title": "no"})), 403).await;
    let todo_path = format!("/api/v1/todos/{}", todo["id"].as_str().unwrap());
    walk.call(Method::GET, "/api/v1/todos?done=false&limit=10", Some(&reader), None, 200).await;
    walk.call(Method::GET, "/api/v1/todos?cursor=not-a-cursor", Some(&reader), None, 400).await;
    walk.call(Method::GET, &todo_path, Some(&reader), None, 200).await;
    walk.call(Method::PATCH, &todo_path, Some(&admin), Some(json!({"done": true})), 200).await;
    walk.call(Method::PATCH, &todo_path, Some(&admin), Some(json!({})), 422).await;
    let stale = format!("\"{}-1\"", uuid::Uuid::parse_str(todo["id"].as_str().unwrap()).unwrap().simple());
    walk.call(Method::PATCH, &todo_path, Some(&admin), Some(json!({"done": true})), 200).await;
    let body = Some(json!({"done": false}));
    walk.send(Method::PATCH, &todo_path, Some(&admin), body, Some(stale), 412).await;
    walk.call(Method::DELETE, &todo_path, Some(&admin), None, 204).await;
    walk.call(Method::DELETE, &todo_path, Some(&admin), None, 404).await;
    walk.call(Method::GET, "/api/v1/audit-events", Some(&admin), None, 200).await;

    let export = walk.call(Method::POST, "/api/v1/exports", Some(&admin), None, 202).await;
    walk.call(Method::POST, "/api/v1/exports", Some(&reader), None, 403).await;
    let export_path = format!("/api/v1/exports/{}", export["id"].as_str().unwrap());
    walk.call(Method::GET, "/api/v1/exports", Some(&admin), None, 200).await;
    walk.call(Method::GET, &export_path, Some(&admin), None, 200).await;
    walk.call(Method::GET, &concrete("/api/v1/exports/{id}"), Some(&admin), None, 404).await;
    walk.call(Method::GET, &concrete("/api/v1/exports/{id}/archive"), Some(&admin), None, 404).await;

    let mine = walk.call(Method::GET, "/api/v1/users/me/data", Some(&reader), None, 200).await;
    assert_eq!(mine["memberships"].as_array().unwrap().len(), 1);
    walk.call(Method::DELETE, "/api/v1/users/me/data", Some(&reader), None, 200).await;

    walk.call(Method::POST, "/api/v1/auth/revoke", Some(&admin), Some(json!({"jti": "someone-elses"})), 204).await;
    walk.call(Method::POST, "/api/v1/auth/revoke", Some(&reader), Some(json!({"jti": "someone-elses"})), 403).await;
    walk.call(Method::POST, "/api/v1/auth/revoke", Some(&reader), None, 204).await;
    walk.call(Method::GET, "/api/v1/auth/me", Some(&reader), None, 401).await;

    // The walk covers the platform and the example resource; a resource added later checks its
    // own responses against the document in its own test file (the scaffold's template does).
    let walked = ["auth", "tenants", "users", "todos", "audit-events"];
    let unchecked: Vec<String> = contract
        .unchecked_successes()
        .into_iter()
        .filter(|operation| walked.iter().any(|prefix| operation.contains(&format!(" /api/v1/{prefix}"))))
        .collect();
    assert_eq!(unchecked, Vec::<String>::new(), "operations never exercised with a success");
    let problems = contract.problem_statuses();
    for status in [400, 401, 403, 404, 409, 412, 422] {
        assert!(problems.contains(&status), "no {status} problem was checked: {problems:?}");
    }
    app.stop().await;
}

/// Sends requests and checks every response against the document.
struct Walk<'a> {
    app: &'a TestApp,
    contract: &'a mut Contract,
}

impl Walk<'_> {
    async fn call(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        expected: u16,
    ) -> Value {
        self.send(method, path, token, body, None, expected).await
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        if_match: Option<String>,
        expected: u16,
    ) -> Value {
        let mut request = self.app.client.request(method.clone(), self.app.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(etag) = if_match {
            request = request.header("if-match", etag);
        }
        let checked = self.contract.check(&method, path, request.send().await.unwrap()).await;
        assert_eq!(checked.status.as_u16(), expected, "{method} {path}: {}", checked.body);
        checked.body
    }
}

/// The committed snapshot, next to the other API contracts.
fn snapshot_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json")
}

/// The document as the snapshot holds it: pretty-printed, with a final newline.
fn rendered(doc: &Value) -> String {
    serde_json::to_string_pretty(doc).unwrap() + "\n"
}

/// Any change to the document shows up in review as a change to `docs/openapi.json`; CI's
/// breaking-change check (`.ci/openapi-breaking.py`) compares that file across the merge base.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_matches_the_committed_snapshot() {
    let Some(app) = spawn_app(Backend::Sqlite, |_| {}).await else { return };
    let served = rendered(&document(&app).await);
    app.stop().await;
    let path = snapshot_path();
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &served).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != served {
        let first = committed.lines().zip(served.lines()).position(|(a, b)| a != b).unwrap_or(0) + 1;
        panic!(
            "the OpenAPI document differs from docs/openapi.json (first at line {first}).\n\
             If the change is intended, update the snapshot and review the diff:\n  \
             UPDATE_SNAPSHOTS=1 cargo test -p palisade-api --test api -- contract::the_served_document\n\
             A breaking change also needs docs/api-versioning.md (see its \"Changing the contract\")."
        );
    }
}

/// The validator really refuses: a body that breaks the documented schema is caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_breaks_its_schema_is_refused_by_the_check() {
    let Some(app) = spawn_app(Backend::Sqlite, |_| {}).await else { return };
    let contract = Contract::new(document(&app).await);
    app.stop().await;
    let todo = json!({"$ref": "#/components/schemas/Todo"});
    let valid = json!({
        "id": "0190b3c0-0000-7000-8000-000000000000", "title": "t", "done": false, "version": 1,
        "created_by": "0190b3c0-0000-7000-8000-000000000001",
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
    });
    assert_eq!(contract.validate(&todo, &valid), Ok(()));
    for (field, wrong) in [("done", json!("no")), ("created_at", json!("yesterday")), ("id", json!("x"))] {
        let mut invalid = valid.clone();
        invalid[field] = wrong;
        assert!(contract.validate(&todo, &invalid).is_err(), "{field} = {} passed", invalid[field]);
    }
    let mut missing = valid.clone();
    missing.as_object_mut().unwrap().remove("title");
    assert!(contract.validate(&todo, &missing).is_err(), "a missing required field passed");
    let problem = json!({"$ref": "#/components/schemas/Problem"});
    let errors = json!({"type": "/problems/validation-error", "title": "t", "status": 422, "detail": "d",
        "request_id": "r", "errors": [{"field": "title"}]});
    assert!(contract.validate(&problem, &errors).is_err(), "a field error without a message passed");
}

/// In development `/docs` serves the reference page under its own policy, and its assets come
/// from the binary; the API keeps its strict policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_page_is_served_in_development_under_its_own_policy() {
    let Some(app) = spawn_app(Backend::Sqlite, |_| {}).await else { return };
    let page = app.get("/docs/").await;
    assert_eq!(page.status(), StatusCode::OK);
    let policy = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(policy.contains("script-src 'self'") && !policy.contains("unsafe"), "{policy}");
    assert!(page.text().await.unwrap().contains("swagger-initializer.js"));
    let initializer = app.get("/docs/swagger-initializer.js").await.text().await.unwrap();
    assert!(initializer.contains("/api/v1/openapi.json"), "{initializer}");
    let api = app.get("/api/v1/openapi.json").await;
    assert_eq!(
        api.headers()["content-security-policy"],
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    );
    app.stop().await;
}

/// Off unless enabled outside development (and off in development when disabled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_page_is_off_when_disabled() {
    let Some(app) = spawn_app(Backend::Sqlite, |s| s.api_docs.enabled = Some(false)).await else { return };
    assert_eq!(app.get("/docs/").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.get("/api/v1/openapi.json").await.status(), StatusCode::OK);
    app.stop().await;
}
