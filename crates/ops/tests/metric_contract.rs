//! Every metric the alert rules, recording rules, rule tests and Grafana dashboards query is one the
//! server exports. The PromQL is parsed with `promql-parser` (the grammar Prometheus uses), so a
//! renamed metric, a typo in a dashboard or an unparsable expression fails here, not in production.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

use palisade_ops::metrics::{CONTRACT, PROCESS};
use promql_parser::{
    parser::{self, Expr, VectorSelector},
    util::{ExprVisitor, walk_expr},
};
use serde_json::Value as Json;
use serde_norway::Value as Yaml;

/// Contract metrics that are histograms: Prometheus exposes them as `_bucket`, `_sum` and `_count`.
const HISTOGRAMS: [&str; 4] = [
    "http_request_duration_seconds",
    "tenant_export_bytes",
    "tenant_export_duration_seconds",
    "webhook_delivery_duration_seconds",
];
/// Series Prometheus makes itself (not the server's to export).
const FROM_PROMETHEUS: [&str; 4] = ["up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds"];
/// Published by deploy/backup/backup.sh through the Pushgateway/textfile collector, not the server.
const FROM_BACKUP_JOB: &str = "palisade_backup_";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn files(dir: &str, extension: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![root().join(dir)];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == extension) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Collects the metric names of every selector in an expression.
struct Names<'a>(&'a mut BTreeSet<String>);

impl Names<'_> {
    fn selector(&mut self, selector: &VectorSelector) {
        let by_matcher = selector.matchers.matchers.iter().find(|m| m.name == "__name__").map(|m| m.value.clone());
        if let Some(name) = selector.name.clone().or(by_matcher) {
            self.0.insert(name);
        }
    }
}

impl ExprVisitor for Names<'_> {
    type Error = String;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
        match expr {
            Expr::VectorSelector(selector) => self.selector(selector),
            Expr::MatrixSelector(matrix) => self.selector(&matrix.vs),
            Expr::Aggregate(aggregate) => {
                if let Some(param) = &aggregate.param {
                    walk_expr(self, param)?;
                }
            }
            _ => {}
        }
        Ok(true)
    }
}

/// The metric names an expression selects; panics with the source on a parse error.
fn names_in(query: &str, source: &Path, into: &mut BTreeSet<String>) {
    let expr = parser::parse(query).unwrap_or_else(|e| panic!("{}: cannot parse {query:?}: {e}", source.display()));
    walk_expr(&mut Names(into), &expr).expect("the visitor never fails");
}

/// Grafana's variables replaced by values PromQL accepts, so a dashboard query parses as Prometheus
/// will see it.
fn without_grafana_variables(query: &str) -> String {
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, tail) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}').expect("closed ${…}");
            (&braced[..end], &braced[end + 1..])
        } else {
            let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        out.push_str(if name.starts_with("__") { "5m" } else { "x" });
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// Every `expr` (rules, rule tests) and `series` (rule-test input) string in a YAML document.
fn yaml_queries(value: &Yaml, out: &mut Vec<String>) {
    match value {
        Yaml::Mapping(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    (Some("expr" | "series"), Yaml::String(query)) => out.push(query.clone()),
                    _ => yaml_queries(value, out),
                }
            }
        }
        Yaml::Sequence(items) => items.iter().for_each(|item| yaml_queries(item, out)),
        _ => {}
    }
}

/// Every `record:` name in a YAML document.
fn recorded(value: &Yaml, out: &mut BTreeSet<String>) {
    match value {
        Yaml::Mapping(map) => {
            if let Some(Yaml::String(name)) = map.get("record") {
                out.insert(name.clone());
            }
            map.values().for_each(|value| recorded(value, out));
        }
        Yaml::Sequence(items) => items.iter().for_each(|item| recorded(item, out)),
        _ => {}
    }
}

/// Every `expr` string of a dashboard, plus the selectors of `label_values(selector, label)`.
fn dashboard_queries(value: &Json, out: &mut Vec<String>) {
    match value {
        Json::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Json::String(query)) => out.push(query.clone()),
                    ("query" | "definition", Json::String(query)) if query.starts_with("label_values(") => {
                        let args = &query["label_values(".len()..query.len() - 1];
                        if let Some((selector, _label)) = args.rsplit_once(',') {
                            out.push(selector.trim().to_owned());
                        }
                    }
                    _ => dashboard_queries(value, out),
                }
            }
        }
        Json::Array(items) => items.iter().for_each(|item| dashboard_queries(item, out)),
        _ => {}
    }
}

fn read_yaml(path: &Path) -> Yaml {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The names a query may select: what the server exports, what the rules record, and what
/// Prometheus and the backup job add.
fn exported(recorded_names: &BTreeSet<String>) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = CONTRACT.iter().chain(PROCESS.iter()).map(|n| (*n).to_owned()).collect();
    for histogram in HISTOGRAMS {
        assert!(CONTRACT.contains(&histogram), "{histogram} is not in the contract");
        names.extend(["_bucket", "_sum", "_count"].map(|suffix| format!("{histogram}{suffix}")));
    }
    names.extend(recorded_names.iter().cloned());
    names.extend(FROM_PROMETHEUS.map(str::to_owned));
    names
}

#[test]
fn every_metric_the_alert_rules_rule_tests_and_dashboards_query_is_exported() {
    let rule_files = files("observability/prometheus", "yml");
    let dashboards = files("observability/grafana/dashboards", "json");
    assert!(rule_files.len() >= 2 && dashboards.len() >= 2, "found {rule_files:?} and {dashboards:?}");

    let mut recorded_names = BTreeSet::new();
    let mut used = BTreeSet::new();
    let mut queries = 0;
    for path in &rule_files {
        let document = read_yaml(path);
        recorded(&document, &mut recorded_names);
        let mut found = Vec::new();
        yaml_queries(&document, &mut found);
        queries += found.len();
        found.iter().for_each(|query| names_in(query, path, &mut used));
    }
    for path in &dashboards {
        let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let document: Json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut found = Vec::new();
        dashboard_queries(&document, &mut found);
        assert!(!found.is_empty(), "{} has no queries", path.display());
        queries += found.len();
        found.iter().for_each(|query| names_in(&without_grafana_variables(query), path, &mut used));
    }
    // A reader that silently found nothing would pass; the repository has well over 100 queries.
    assert!(queries > 100, "only {queries} queries found");
    assert!(recorded_names.len() > 5, "only {} recording rules found", recorded_names.len());

    let exported = exported(&recorded_names);
    let missing: Vec<&String> =
        used.iter().filter(|name| !exported.contains(*name) && !name.starts_with(FROM_BACKUP_JOB)).collect();
    assert!(missing.is_empty(), "queried but not exported by the server: {missing:?}");
    for name in CONTRACT {
        let series = ["", "_bucket", "_sum", "_count"].map(|suffix| format!("{name}{suffix}"));
        assert!(series.iter().any(|s| used.contains(s)), "{name} is in the contract but no rule or dashboard uses it");
    }
}

#[test]
fn grafana_variables_become_valid_promql() {
    let query = r#"sum(rate(http_requests_total{job="$job",instance=~"${instance}"}[$__rate_interval]))"#;
    assert_eq!(without_grafana_variables(query), r#"sum(rate(http_requests_total{job="x",instance=~"x"}[5m]))"#);
}
