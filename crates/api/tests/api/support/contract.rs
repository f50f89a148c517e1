//! Checks real responses against the OpenAPI document the server serves: the status must be
//! documented for the operation, the media type must be the documented one, and the body must
//! validate against the documented JSON Schema (with `$ref`s into `#/components/schemas`).

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::{Value, json};

/// The document, and the operations checked so far with the statuses they answered.
pub struct Contract {
    doc: Value,
    checked: BTreeSet<(String, String, u16)>,
}

/// A checked response.
pub struct Checked {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Contract {
    pub fn new(doc: Value) -> Self {
        Self { doc, checked: BTreeSet::new() }
    }

    /// Every documented operation, as `(METHOD, /path/{template})`.
    pub fn operations(doc: &Value) -> Vec<(String, String)> {
        let mut operations = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                if ["get", "put", "post", "delete", "patch", "head", "options", "trace"].contains(&method.as_str()) {
                    operations.push((method.to_uppercase(), path.clone()));
                }
            }
        }
        operations
    }

    /// The documented path template a concrete path (query string allowed) matches.
    fn template(&self, path: &str) -> String {
        let path = path.split('?').next().unwrap_or_default();
        let segments: Vec<&str> = path.split('/').collect();
        let matches = |template: &str| {
            let parts: Vec<&str> = template.split('/').collect();
            parts.len() == segments.len()
                && parts.iter().zip(&segments).all(|(part, segment)| part.starts_with('{') || part == segment)
        };
        let templates = self.doc["paths"].as_object().expect("paths").keys();
        // A literal segment wins over a parameter (`/users/me` over `/users/{id}`), as in the router.
        templates
            .filter(|template| matches(template))
            .min_by_key(|template| template.matches('{').count())
            .unwrap_or_else(|| panic!("{path} is not in the OpenAPI document"))
            .clone()
    }

    /// Reads `response` to its end and checks it against the operation `method path` documents.
    pub async fn check(&mut self, method: &Method, path: &str, response: reqwest::Response) -> Checked {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("response body");
        let template = self.template(path);
        let operation = &self.doc["paths"][&template][method.as_str().to_lowercase()];
        assert!(operation.is_object(), "{method} {template} is not documented");
        let documented = &operation["responses"][status.as_str()];
        assert!(documented.is_object(), "{method} {path} answered {status}, which is not documented");
        let media_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let media_type = media_type.split(';').next().unwrap_or_default().trim().to_owned();
        let body = match documented["content"].as_object() {
            None => {
                assert!(bytes.is_empty(), "{method} {path} {status}: a body where none is documented");
                Value::Null
            }
            Some(content) => {
                let schema = &content.get(&media_type).unwrap_or_else(|| {
                    panic!("{method} {path} {status}: {media_type:?} is not a documented media type")
                })["schema"];
                let body: Value = serde_json::from_slice(&bytes)
                    .unwrap_or_else(|e| panic!("{method} {path} {status}: body is not JSON ({e})"));
                self.validate(schema, &body).unwrap_or_else(|errors| {
                    panic!("{method} {path} {status}: the body does not match its schema:\n{errors}\nbody: {body}")
                });
                body
            }
        };
        self.checked.insert((method.to_string(), template, status.as_u16()));
        Checked { status, headers, body }
    }

    /// Validates `instance` against `schema`, resolving references against the whole document.
    pub fn validate(&self, schema: &Value, instance: &Value) -> Result<(), String> {
        let mut root = json!({ "allOf": [schema] });
        root["components"] = self.doc["components"].clone();
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("the document's schema {schema} does not compile: {e}"));
        let errors: Vec<String> =
            validator.iter_errors(instance).map(|e| format!("  at {}: {e}", e.instance_path())).collect();
        if errors.is_empty() { Ok(()) } else { Err(errors.join("\n")) }
    }

    /// The documented operations that have not yet answered with a success status.
    pub fn unchecked_successes(&self) -> Vec<String> {
        Self::operations(&self.doc)
            .into_iter()
            .filter(|(method, path)| {
                !self.checked.iter().any(|(m, p, status)| m == method && p == path && (200..300).contains(status))
            })
            .map(|(method, path)| format!("{method} {path}"))
            .collect()
    }

    /// The problem statuses checked so far.
    pub fn problem_statuses(&self) -> BTreeSet<u16> {
        self.checked.iter().map(|(_, _, status)| *status).filter(|status| *status >= 400).collect()
    }
}
