#!/usr/bin/env python3
"""Structural checks on the observability artifacts that promtool and amtool do not make.

Run by observability/check.sh (which runs promtool and amtool itself). Needs PyYAML.

    python3 observability/check_artifacts.py                       # all checks below
    python3 observability/check_artifacts.py --dashboard-rules F   # write the dashboards' queries to F as a
                                                                   # rules file, for `promtool check rules`

Checks:
- alerts.yml: every alert has `severity` (critical|warning|info) and `service` labels and `summary`,
  `description` and `runbook_url` annotations; runbook_url is docs/runbooks/<alert>.md on GitHub and that file
  exists with the sections of docs/runbooks/TEMPLATE.md, in order, and working relative links; recording rules
  are named level:metric:operations and defined once.
- Grafana: dashboards are JSON with a uid, title and schemaVersion; every Prometheus datasource reference uses
  uid `prometheus`; panel ids are unique; the provisioning files point at that datasource and dashboard path.
- Alertmanager (project policy; `amtool check-config` checks syntax and that routes name defined receivers):
  every severity has a route, receivers take secrets from files under /etc/alertmanager/secrets/ rather than
  inline, and every template the config uses is defined.

Metric names (every metric and recording rule a query uses exists) are checked in Rust, with a real PromQL
parser: crates/ops/tests/metric_contract.rs.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

ALERTS = HERE / "prometheus" / "alerts.yml"
RUNBOOKS = REPO / "docs" / "runbooks"
DASHBOARDS = HERE / "grafana" / "dashboards"
DATASOURCES = HERE / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = HERE / "grafana" / "provisioning" / "dashboards" / "dashboards.yml"
ALERTMANAGER = HERE / "alertmanager" / "alertmanager.yml"

RUNBOOK_BASE = "https://github.com/palisade-rs/palisade/blob/main/docs/runbooks/"
SEVERITIES = {"critical", "warning", "info"}
RUNBOOK_SECTIONS = [
    "Severity", "Symptoms", "Immediate actions", "Investigation", "Remedy", "Escalation", "Prevention",
]
DATASOURCE_UID = "prometheus"
SECRETS_DIR = "/etc/alertmanager/secrets/"
RECORD_NAME_RE = re.compile(r"^[a-z_]+:[a-z0-9_]+:[a-z0-9_]+$")
ALERT_NAME_RE = re.compile(r"^[A-Z][A-Za-z0-9]+$")
GRAFANA_VARS = {"$job": "palisade", "$instance": ".*", "$__rate_interval": "1m", "$__interval": "1m",
                "$__range": "1h"}

problems: list[str] = []


def problem(message: str) -> None:
    problems.append(message)


def rules() -> list[dict]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_exprs(doc: dict) -> list[str]:
    """Every PromQL `expr` string in a dashboard's panels (rows and nested panels included), in order."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                found.append(node["expr"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc.get("panels", []))
    return found


def dashboards() -> dict[Path, dict]:
    out = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        try:
            out[path] = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            problem(f"{path.relative_to(REPO)}: not valid JSON: {err}")
    if not out:
        problem(f"{DASHBOARDS.relative_to(REPO)}: no dashboards")
    return out


# ----------------------------------------------------------------------------------------------- rules


def check_runbook(alert: str, path: Path) -> None:
    rel = path.relative_to(REPO)
    if not path.is_file():
        problem(f"alert {alert}: runbook {rel} does not exist")
        return
    text = path.read_text(encoding="utf-8")
    if not text.startswith(f"# {alert}\n"):
        problem(f"{rel}: must start with the heading '# {alert}'")
    headings = re.findall(r"^## (.+?)\s*$", text, flags=re.M)
    missing = [s for s in RUNBOOK_SECTIONS if s not in headings]
    if missing:
        problem(f"{rel}: missing sections {missing}")
    elif [h for h in headings if h in RUNBOOK_SECTIONS] != RUNBOOK_SECTIONS:
        problem(f"{rel}: sections must come in the order {RUNBOOK_SECTIONS}")
    check_links(path, text)


def check_links(path: Path, text: str) -> None:
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if re.match(r"^[a-z]+://", target) or target.startswith("mailto:"):
            continue
        if not (path.parent / target).exists():
            problem(f"{path.relative_to(REPO)}: broken link {target}")


def check_rules(all_rules: list[dict]) -> list[str]:
    alerts: list[str] = []
    recorded: set[str] = set()
    for rule in all_rules:
        if "record" in rule:
            name = rule["record"]
            if not RECORD_NAME_RE.match(name):
                problem(f"recording rule {name}: name must have the form level:metric:operations")
            if name in recorded:
                problem(f"recording rule {name}: defined twice")
            recorded.add(name)
            continue
        name = rule["alert"]
        alerts.append(name)
        if not ALERT_NAME_RE.match(name):
            problem(f"alert {name}: name must be CamelCase (it is also the runbook's file name)")
        labels = rule.get("labels") or {}
        annotations = rule.get("annotations") or {}
        if labels.get("severity") not in SEVERITIES:
            problem(f"alert {name}: label severity must be one of {sorted(SEVERITIES)}, got {labels.get('severity')!r}")
        if not labels.get("service"):
            problem(f"alert {name}: label service is missing (Alertmanager groups by it)")
        for key in ("summary", "description", "runbook_url"):
            if not str(annotations.get(key, "")).strip():
                problem(f"alert {name}: annotation {key} is missing")
        url = annotations.get("runbook_url", "")
        if url != f"{RUNBOOK_BASE}{name}.md":
            problem(f"alert {name}: runbook_url must be {RUNBOOK_BASE}{name}.md, got {url!r}")
        check_runbook(name, RUNBOOKS / f"{name}.md")
    template = RUNBOOKS / "TEMPLATE.md"
    if template.is_file():
        text = template.read_text(encoding="utf-8")
        headings = re.findall(r"^## (.+?)\s*$", text, flags=re.M)
        if headings != RUNBOOK_SECTIONS:
            problem(f"{template.relative_to(REPO)}: sections must be exactly {RUNBOOK_SECTIONS}, got {headings}")
    else:
        problem("docs/runbooks/TEMPLATE.md does not exist")
    return alerts


# ----------------------------------------------------------------------------------------------- Grafana


def check_datasource_refs(where: str, node: object) -> None:
    if isinstance(node, dict):
        ds = node.get("datasource")
        if isinstance(ds, dict) and ds.get("type") == "prometheus" and ds.get("uid") != DATASOURCE_UID:
            problem(f"{where}: Prometheus datasource uid must be {DATASOURCE_UID!r}, got {ds.get('uid')!r}")
        if isinstance(ds, str) and ds not in ("-- Grafana --", "-- Mixed --", "-- Dashboard --"):
            problem(f"{where}: datasource must be an object with uid {DATASOURCE_UID!r}, got the string {ds!r}")
        for value in node.values():
            check_datasource_refs(where, value)
    elif isinstance(node, list):
        for value in node:
            check_datasource_refs(where, value)


def check_dashboards(docs: dict[Path, dict]) -> None:
    uids: dict[str, Path] = {}
    for path, doc in docs.items():
        rel = path.relative_to(REPO)
        for key in ("uid", "title", "schemaVersion", "panels"):
            if key not in doc:
                problem(f"{rel}: missing {key}")
        if doc.get("id") is not None:
            problem(f"{rel}: id must be null in a provisioned dashboard")
        if not isinstance(doc.get("schemaVersion"), int) or doc["schemaVersion"] < 36:
            problem(f"{rel}: schemaVersion should be a recent integer (36 or later)")
        uid = doc.get("uid", "")
        if uid in uids:
            problem(f"{rel}: uid {uid!r} already used by {uids[uid].name}")
        uids[uid] = path
        panels = doc.get("panels", [])
        ids = [p.get("id") for p in panels]
        if len(ids) != len(set(ids)) or None in ids:
            problem(f"{rel}: panel ids must be present and unique")
        for panel in panels:
            if "gridPos" not in panel:
                problem(f"{rel}: panel {panel.get('title')!r} has no gridPos")
            targets = panel.get("targets") or []
            if targets:
                ds = panel.get("datasource") or {}
                if ds.get("uid") != DATASOURCE_UID:
                    problem(f"{rel}: panel {panel.get('title')!r} must use datasource uid {DATASOURCE_UID!r}")
                for target in targets:
                    if not str(target.get("expr", "")).strip():
                        problem(f"{rel}: panel {panel.get('title')!r} has a target without expr")
        check_datasource_refs(str(rel), doc.get("panels", []))
        check_datasource_refs(str(rel), doc.get("templating", {}))
        if not dashboard_exprs(doc):
            problem(f"{rel}: no Prometheus queries")


def check_provisioning() -> None:
    doc = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))
    sources = [d for d in doc.get("datasources", []) if d.get("uid") == DATASOURCE_UID]
    if len(sources) != 1:
        problem(f"{DATASOURCES.relative_to(REPO)}: needs exactly one datasource with uid {DATASOURCE_UID!r}")
    elif sources[0].get("type") != "prometheus" or sources[0].get("url") != "http://prometheus:9090":
        problem(f"{DATASOURCES.relative_to(REPO)}: datasource {DATASOURCE_UID!r} must be prometheus at http://prometheus:9090")
    doc = yaml.safe_load(DASHBOARD_PROVIDERS.read_text(encoding="utf-8"))
    paths = [p.get("options", {}).get("path") for p in doc.get("providers", []) if p.get("type") == "file"]
    if paths != ["/var/lib/grafana/dashboards"]:
        problem(f"{DASHBOARD_PROVIDERS.relative_to(REPO)}: needs one file provider for /var/lib/grafana/dashboards")


# ----------------------------------------------------------------------------------------------- Alertmanager


def check_alertmanager() -> None:
    rel = ALERTMANAGER.relative_to(REPO)
    doc = yaml.safe_load(ALERTMANAGER.read_text(encoding="utf-8"))
    receivers = {r["name"]: r for r in doc.get("receivers", [])}
    route = doc.get("route", {})
    for missing in {"alertname", "service"} - set(route.get("group_by", [])):
        problem(f"{rel}: the root route must group by {missing}")
    routed = {}
    for sub in route.get("routes", []):
        for matcher in sub.get("matchers", []):
            m = re.fullmatch(r'severity\s*=\s*"?([a-z]+)"?', matcher)
            if m:
                routed[m.group(1)] = sub.get("receiver")
    for severity in sorted(SEVERITIES):
        if severity not in routed:
            problem(f"{rel}: no route for severity={severity}")
    kinds = {
        "slack_configs": ("api_url", "api_url_file"),
        "pagerduty_configs": ("routing_key", "routing_key_file"),
        "webhook_configs": ("url", "url_file"),
    }
    for name, receiver in receivers.items():
        for kind, (inline, from_file) in kinds.items():
            for config in receiver.get(kind, []) or []:
                if inline in config:
                    problem(f"{rel}: receiver {name}: {kind} sets {inline} inline; use {from_file}")
                path = config.get(from_file, "")
                if not str(path).startswith(SECRETS_DIR):
                    problem(f"{rel}: receiver {name}: {kind}.{from_file} must be a file under {SECRETS_DIR}")
    if "service_key" in json.dumps(doc):
        problem(f"{rel}: use PagerDuty Events v2 routing_key_file, not service_key")
    templates = doc.get("templates", [])
    if not templates or not any((ALERTMANAGER.parent).glob(t) for t in templates):
        problem(f"{rel}: templates must match at least one file next to alertmanager.yml")
    template_text = "".join(p.read_text(encoding="utf-8") for t in templates for p in ALERTMANAGER.parent.glob(t))
    for used in set(re.findall(r'template "([^"]+)"', ALERTMANAGER.read_text(encoding="utf-8"))):
        if f'define "{used}"' not in template_text:
            problem(f"{rel}: template {used!r} is not defined in {templates}")


# ----------------------------------------------------------------------------------------------- main


def write_dashboard_rules(path: Path) -> None:
    """Every dashboard query, with Grafana variables filled in, as recording rules promtool can parse."""
    group_rules = []
    for dpath, doc in dashboards().items():
        for i, expr in enumerate(dashboard_exprs(doc)):
            for var, value in GRAFANA_VARS.items():
                expr = expr.replace("${" + var[1:] + "}", value).replace(var, value)
            if re.search(r"\$(?!\d)", expr):  # $1 etc. are label_replace back-references
                problem(f"{dpath.relative_to(REPO)}: unknown Grafana variable in {expr!r}")
            group_rules.append({"record": f"dashboard:{dpath.stem.replace('-', '_')}:query{i}", "expr": expr})
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": group_rules}]}),
                    encoding="utf-8")
    print(f"wrote {len(group_rules)} dashboard queries to {path}")


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "--dashboard-rules":
        write_dashboard_rules(Path(argv[2]))
    elif len(argv) == 1:
        all_rules = rules()
        docs = dashboards()
        alerts = check_rules(all_rules)
        check_dashboards(docs)
        check_provisioning()
        check_alertmanager()
        if not problems:
            print(f"{len(set(alerts))} alerts ({len(alerts)} rules) with runbooks, "
                  f"{sum(1 for r in all_rules if 'record' in r)} recording rules, {len(docs)} dashboards: all consistent")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for message in problems:
        print(f"check_artifacts: {message}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
