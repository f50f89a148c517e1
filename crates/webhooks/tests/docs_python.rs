//! The Python verifier printed in docs/webhooks.md really verifies our deliveries: the block is
//! taken from the document and run with python3 against messages signed by `sign`.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use palisade_webhooks::{SigningSecret, sign, signature_header};

/// Calls the documented `verify` with the delivery passed in environment variables.
const DRIVER: &str = r#"
import os
headers = {
    "webhook-id": os.environ["WH_ID"],
    "webhook-timestamp": os.environ["WH_TIMESTAMP"],
    "webhook-signature": os.environ["WH_SIGNATURE"],
}
print(verify(os.environ["WH_SECRET"], headers, os.environ["WH_BODY"].encode()))
"#;

fn documented_verifier() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/webhooks.md");
    let doc = std::fs::read_to_string(path).expect("docs/webhooks.md is readable");
    let section =
        doc.split("## Verifying a delivery").nth(1).expect("docs/webhooks.md has a \"Verifying a delivery\" section");
    let start = section.find("```python\n").expect("the section has a python block") + "```python\n".len();
    let length = section[start..].find("\n```").expect("the python block is closed");
    section[start..start + length].to_owned()
}

struct Case<'a> {
    secret: &'a SigningSecret,
    id: &'a str,
    timestamp: i64,
    signature: &'a str,
    body: &'a str,
}

fn python_accepts(case: &Case<'_>) -> bool {
    let program = format!("{}\n{DRIVER}", documented_verifier());
    let output = Command::new("python3")
        .arg("-c")
        .arg(program)
        .env("WH_SECRET", case.secret.expose())
        .env("WH_ID", case.id)
        .env("WH_TIMESTAMP", case.timestamp.to_string())
        .env("WH_SIGNATURE", case.signature)
        .env("WH_BODY", case.body)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "python3 failed: {}\n{stdout}", String::from_utf8_lossy(&output.stderr));
    match stdout.trim() {
        "True" => true,
        "False" => false,
        other => panic!("unexpected output from the documented verifier: {other}"),
    }
}

fn now() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970");
    i64::try_from(since.as_secs()).expect("fits")
}

const BODY: &str = r#"{"type":"todo.created","data":{"id":"0191c1a0","title":"Ünïcode ✓"}}"#;

#[test]
fn the_documented_python_verifier_accepts_a_valid_delivery() {
    let secret = SigningSecret::generate();
    let timestamp = now();
    let signature = sign(&secret, "msg_doc", timestamp, BODY.as_bytes());
    assert!(python_accepts(&Case { secret: &secret, id: "msg_doc", timestamp, signature: &signature, body: BODY }));
}

#[test]
fn the_documented_python_verifier_rejects_a_tampered_body() {
    let secret = SigningSecret::generate();
    let timestamp = now();
    let signature = sign(&secret, "msg_doc", timestamp, BODY.as_bytes());
    assert!(!python_accepts(&Case {
        secret: &secret,
        id: "msg_doc",
        timestamp,
        signature: &signature,
        body: &BODY.replace("created", "deleted"),
    }));
}

#[test]
fn the_documented_python_verifier_rejects_a_wrong_secret_and_an_old_timestamp() {
    let secret = SigningSecret::generate();
    let other = SigningSecret::generate();
    let timestamp = now();
    let signature = sign(&secret, "msg_doc", timestamp, BODY.as_bytes());
    assert!(!python_accepts(&Case { secret: &other, id: "msg_doc", timestamp, signature: &signature, body: BODY }));
    let old = timestamp - 600;
    let old_signature = sign(&secret, "msg_doc", old, BODY.as_bytes());
    assert!(!python_accepts(&Case {
        secret: &secret,
        id: "msg_doc",
        timestamp: old,
        signature: &old_signature,
        body: BODY,
    }));
}

#[test]
fn the_documented_python_verifier_accepts_either_secret_during_rotation() {
    let old = SigningSecret::generate();
    let new = SigningSecret::generate();
    let timestamp = now();
    let header = signature_header(&[&new, &old], "msg_doc", timestamp, BODY.as_bytes());
    for secret in [&old, &new] {
        assert!(python_accepts(&Case { secret, id: "msg_doc", timestamp, signature: &header, body: BODY }));
    }
}
