//! The example resource over HTTP on both backends: create, read, update and delete with ETags,
//! tenant isolation, pagination and filters, validation, concurrent writes and idempotent
//! retries. A new resource's test file follows this one.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Backend, create_todo, send, spawn_app};

const RW: &[&str] = &["todos:read", "todos:write"];

on_both_backends!(
    a_todo_goes_through_create_read_update_delete_with_etags,
    another_tenant_gets_404_for_a_todo_on_read_update_and_delete,
    another_tenants_rows_never_appear_in_a_list,
    lists_paginate_in_a_stable_order_and_filter_by_done,
    todo_bodies_are_validated_with_field_errors,
    of_two_patches_with_the_same_etag_exactly_one_succeeds,
    an_idempotent_post_is_replayed_and_a_reused_key_with_another_body_refused,
);

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
