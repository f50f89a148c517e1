//! docs/configuration.md must list every setting the code has, under its environment variable,
//! with the code's default — and nothing the code does not have.

use std::collections::BTreeMap;

use palisade_api::Settings;
use serde_json::Value;

const DOC: &str = include_str!("../../../../docs/configuration.md");

/// Every leaf setting as `section.key` → its default, rendered as the doc writes it.
fn settings_from_code() -> BTreeMap<String, String> {
    let value = serde_json::to_value(Settings::default()).expect("settings serialize");
    let mut out = BTreeMap::new();
    flatten("", &value, &mut out);
    out
}

fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(map) if !map.is_empty() && !is_free_form(prefix) => {
            for (key, child) in map {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                flatten(&path, child, out);
            }
        }
        leaf => {
            out.insert(prefix.to_owned(), render(leaf));
        }
    }
}

/// Maps whose keys are user data (e.g. per-tenant overrides) are one setting, not many.
fn is_free_form(path: &str) -> bool {
    path.ends_with("overrides")
}

fn render(value: &Value) -> String {
    match value {
        Value::Null => "(unset)".to_owned(),
        Value::String(s) if s.is_empty() => "(empty)".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "(empty)".to_owned(),
        Value::Array(items) => items.iter().map(render).collect::<Vec<_>>().join(","),
        Value::Object(map) if map.is_empty() => "(empty)".to_owned(),
        other => other.to_string(),
    }
}

fn env_name(key: &str) -> String {
    if key == "environment" {
        return "PALISADE_ENVIRONMENT".to_owned();
    }
    format!("PALISADE_{}", key.replace('.', "__").to_uppercase())
}

/// Rows of the reference tables: `| `PALISADE_…` | `default` | production | description |`.
fn settings_from_doc() -> BTreeMap<String, String> {
    DOC.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            name.starts_with("PALISADE_").then(|| {
                let default = cells.get(2).copied().unwrap_or_default().trim_matches('`').to_owned();
                (name.to_owned(), default)
            })
        })
        .collect()
}

#[test]
fn every_setting_in_the_code_is_documented_with_its_default() {
    let documented = settings_from_doc();
    let mut problems = Vec::new();
    for (key, default) in settings_from_code() {
        let name = env_name(&key);
        match documented.get(&name) {
            None => problems.push(format!("{name} ({key}, default {default}) is missing from docs/configuration.md")),
            Some(doc_default) if *doc_default != default => {
                problems.push(format!("{name}: docs say default `{doc_default}`, the code says `{default}`"))
            }
            Some(_) => {}
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn every_documented_setting_exists_in_the_code() {
    let code: Vec<String> = settings_from_code().keys().map(|k| env_name(k)).collect();
    let stale: Vec<String> = settings_from_doc().into_keys().filter(|name| !code.contains(name)).collect();
    assert!(stale.is_empty(), "documented but not in the code: {stale:?}");
}

#[test]
fn every_documented_variable_is_accepted_by_the_loader() {
    // Each documented variable, set to its documented default, must load without an unknown-key error.
    for (name, default) in settings_from_doc() {
        if default == "(unset)" || default == "(empty)" || name == "PALISADE_ENVIRONMENT" {
            continue;
        }
        let value = if default == "(empty)" { String::new() } else { default.clone() };
        let env = [(name.clone(), value)].into_iter().collect();
        let loaded = Settings::load_from(&env, std::path::Path::new("/nonexistent"));
        assert!(loaded.is_ok(), "{name}={default}: {:?}", loaded.err());
    }
}
