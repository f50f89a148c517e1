//! {{Plural}} over HTTP on both backends: create, read, list, rename and delete; another tenant
//! never sees them; scopes and validation are enforced; every write is audited.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Backend, send, spawn_app};

const RW: &[&str] = &["{{plural}}:read", "{{plural}}:write"];

on_both_backends!(
    a_{{singular}}_goes_through_create_read_list_rename_and_delete,
    another_tenant_never_sees_a_{{singular}},
    {{plural}}_need_their_scopes_and_valid_bodies,
);

async fn a_{{singular}}_goes_through_create_read_list_rename_and_delete(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    let token = app.token(Some("demo"), "alice", RW);
    let created = send(&app, Method::POST, "/api/v1/{{path}}", &token, Some(json!({"name": " first "}))).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = created.json().await.unwrap();
    assert_eq!(body["name"], "first");
    assert_eq!(location, format!("/api/v1/{{path}}/{}", body["id"].as_str().unwrap()));

    let read: Value = send(&app, Method::GET, &location, &token, None).await.json().await.unwrap();
    assert_eq!(read, body);
    let page: Value = send(&app, Method::GET, "/api/v1/{{path}}?limit=10", &token, None).await.json().await.unwrap();
    assert_eq!(page["items"], json!([body]));

    let renamed = send(&app, Method::PATCH, &location, &token, Some(json!({"name": "second"}))).await;
    assert_eq!(renamed.status(), StatusCode::OK);
    assert_eq!(renamed.json::<Value>().await.unwrap()["name"], "second");

    assert_eq!(send(&app, Method::DELETE, &location, &token, None).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(send(&app, Method::GET, &location, &token, None).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(send(&app, Method::DELETE, &location, &token, None).await.status(), StatusCode::NOT_FOUND);

    let admin = app.token(Some("demo"), "boss", &["tenant:admin"]);
    let audit: Value = send(&app, Method::GET, "/api/v1/audit-events", &admin, None).await.json().await.unwrap();
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .filter(|action| action.starts_with("{{singular}}."))
        .collect();
    assert_eq!(actions, ["{{singular}}.deleted", "{{singular}}.updated", "{{singular}}.created"]);
    app.stop().await;
}

async fn another_tenant_never_sees_a_{{singular}}(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    app.create_tenant("other").await;
    let mine = app.token(Some("demo"), "alice", RW);
    let theirs = app.token(Some("other"), "mallory", RW);
    let body: Value = send(&app, Method::POST, "/api/v1/{{path}}", &mine, Some(json!({"name": "private"})))
        .await
        .json()
        .await
        .unwrap();
    let path = format!("/api/v1/{{path}}/{}", body["id"].as_str().unwrap());
    for (method, body) in [(Method::GET, None), (Method::PATCH, Some(json!({"name": "x"}))), (Method::DELETE, None)] {
        let answer = send(&app, method.clone(), &path, &theirs, body).await;
        assert_eq!(answer.status(), StatusCode::NOT_FOUND, "{method} from another tenant");
    }
    let page: Value = send(&app, Method::GET, "/api/v1/{{path}}", &theirs, None).await.json().await.unwrap();
    assert_eq!(page["items"], json!([]));
    app.stop().await;
}

async fn {{plural}}_need_their_scopes_and_valid_bodies(backend: Backend) {
    let Some(app) = spawn_app(backend, |_| {}).await else { return };
    let reader = app.token(Some("demo"), "reader", &["{{plural}}:read"]);
    let refused = send(&app, Method::POST, "/api/v1/{{path}}", &reader, Some(json!({"name": "x"}))).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let nobody = app.token(Some("demo"), "nobody", &[]);
    assert_eq!(send(&app, Method::GET, "/api/v1/{{path}}", &nobody, None).await.status(), StatusCode::FORBIDDEN);
    let writer = app.token(Some("demo"), "writer", RW);
    for body in [json!({"name": ""}), json!({"name": "x".repeat(201)}), json!({"name": 1}), json!({"other": "x"})] {
        let answer = send(&app, Method::POST, "/api/v1/{{path}}", &writer, Some(body.clone())).await;
        assert!(answer.status().is_client_error(), "{body} answered {}", answer.status());
        assert_eq!(answer.headers()["content-type"], "application/problem+json");
    }
    app.stop().await;
}
