//! config/default.toml is the code's defaults written out, and the layers are applied in the
//! order docs/configuration.md documents: defaults < config/default.toml <
//! config/{environment}.toml < environment variables.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::Path,
};

use palisade_api::Settings;
use secrecy::ExposeSecret;
use serde_json::Value;

const DEFAULT_TOML: &str = include_str!("../../../../config/default.toml");
const PRODUCTION_EXAMPLE: &str = include_str!("../../../../config/production.example.toml");

/// Leaf settings of a serialized `Settings` as `section.key` → value; maps whose keys are user
/// data (`…overrides`) are one leaf.
fn leaves(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) if !prefix.ends_with("overrides") && (!map.is_empty() || prefix.is_empty()) => {
            for (key, child) in map {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                leaves(&path, child, out);
            }
        }
        leaf => {
            out.insert(prefix.to_owned(), leaf.clone());
        }
    }
}

fn code_defaults() -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    leaves("", &serde_json::to_value(Settings::default()).unwrap(), &mut out);
    out
}

/// Keys set in a TOML text, and keys shown commented out (`# key = …`) under their section.
fn toml_keys(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let table: toml::Table = text.parse().expect("valid TOML");
    let mut set = BTreeMap::new();
    leaves("", &serde_json::to_value(table).unwrap(), &mut set);
    let mut section = String::new();
    let mut commented = BTreeSet::new();
    for line in text.lines().map(str::trim) {
        // A section header, also a commented-out one (`# [cors]`) above commented-out keys.
        let header = line.strip_prefix("# ").unwrap_or(line);
        if let Some(header) = header.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = header.to_owned();
        } else if let Some((key, _)) = line.strip_prefix("# ").and_then(|l| l.split_once(" = "))
            && !key.contains(' ')
        {
            commented.insert(if section.is_empty() { key.to_owned() } else { format!("{section}.{key}") });
        }
    }
    (set.into_keys().collect(), commented)
}

#[test]
fn config_default_toml_sets_every_setting_to_the_codes_default_and_shows_every_unset_one() {
    let defaults = code_defaults();
    let (set, commented) = toml_keys(DEFAULT_TOML);
    let unset: BTreeSet<String> = defaults.iter().filter(|(_, v)| v.is_null()).map(|(k, _)| k.clone()).collect();
    let with_value: BTreeSet<String> = defaults.keys().filter(|k| !unset.contains(*k)).cloned().collect();
    let missing: Vec<_> = with_value.difference(&set).collect();
    let extra: Vec<_> = set.difference(&with_value).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "config/default.toml lacks {missing:?} and has unknown or unset {extra:?}"
    );
    let not_shown: Vec<_> = unset.difference(&commented).collect();
    assert!(not_shown.is_empty(), "unset settings must appear commented out (`# key = …`): {not_shown:?}");

    // Loading the file changes nothing: every value in it is the default.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("default.toml"), DEFAULT_TOML).unwrap();
    let loaded = Settings::load_from(&HashMap::new(), dir.path()).expect("config/default.toml loads");
    let mut differs = Vec::new();
    let mut from_file = BTreeMap::new();
    leaves("", &serde_json::to_value(&loaded).unwrap(), &mut from_file);
    for (key, default) in &defaults {
        if from_file.get(key) != Some(default) {
            differs.push(format!("{key}: file {:?}, code {default}", from_file.get(key)));
        }
    }
    assert!(differs.is_empty(), "config/default.toml differs from the code's defaults:\n{}", differs.join("\n"));
}

#[test]
fn config_production_example_names_only_real_settings() {
    let (set, commented) = toml_keys(PRODUCTION_EXAMPLE);
    let known = code_defaults();
    let unknown: Vec<_> = set.iter().chain(&commented).filter(|k| !known.contains_key(*k)).collect();
    assert!(unknown.is_empty(), "config/production.example.toml names no setting: {unknown:?}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("production.toml"), PRODUCTION_EXAMPLE).unwrap();
    let env = HashMap::from([("PALISADE_ENVIRONMENT".to_owned(), "production".to_owned())]);
    Settings::load_from(&env, dir.path()).expect("config/production.example.toml loads as production.toml");
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn each_layer_overrides_the_one_below_defaults_then_default_toml_then_the_environment_file_then_variables() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "default.toml",
        "[server]\nbody_limit_bytes = 111\n[log]\nfilter = \"default-file\"\n\
         [database]\nmax_connections = 7\nurl = \"sqlite://default-file.db\"\n[redis]\nurl = \"redis://default-file\"\n",
    );
    write(dir.path(), "staging.toml", "[log]\nfilter = \"staging-file\"\n[database]\nmax_connections = 8\n");
    write(dir.path(), "development.toml", "[log]\nfilter = \"not-this-environment\"\n");
    let env: HashMap<String, String> = [
        ("PALISADE_ENVIRONMENT", "staging"),
        ("PALISADE_DATABASE__MAX_CONNECTIONS", "9"),
        ("DATABASE_URL", "sqlite://well-known.db"),
        ("REDIS_URL", "redis://well-known"),
        ("PALISADE_REDIS__URL", "redis://specific"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let settings = Settings::load_from(&env, dir.path()).expect("settings load");
    let defaults = Settings::default();

    assert_eq!(settings.database.min_connections, defaults.database.min_connections, "no layer sets it: the default");
    assert_eq!(settings.server.body_limit_bytes, 111, "config/default.toml beats the built-in default");
    assert_eq!(settings.log.filter, "staging-file", "config/{{environment}}.toml beats config/default.toml");
    assert_eq!(settings.database.max_connections, Some(9), "a PALISADE_ variable beats both files");
    assert_eq!(settings.database.url.expose_secret(), "sqlite://well-known.db", "DATABASE_URL beats the files");
    assert_eq!(
        settings.redis.url.as_ref().map(|url| url.expose_secret().to_owned()).as_deref(),
        Some("redis://specific"),
        "PALISADE_REDIS__URL beats REDIS_URL"
    );
}
