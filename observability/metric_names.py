#!/usr/bin/env python3
"""Print the metrics the palisade server must export for the alert rules and dashboards to work.

Reads every PromQL expression in observability/prometheus/alerts.yml (alerts and recording rules) and in the
Grafana dashboards under observability/grafana/dashboards/, and prints, sorted and one per line, the base names
of the metrics they select:

- histogram series are reduced to their family name (`_bucket`, `_sum` and `_count` are stripped; no metric
  in the palisade contract ends in those suffixes otherwise);
- recording-rule names (they contain ':'), PromQL functions, keywords and label names are left out;
- series Prometheus makes up itself (`up`, `scrape_*`, `ALERTS`) and the `palisade_backup_*` metrics, which
  deploy/backup/backup.sh publishes, are left out too.

A server test runs this script and checks that every name appears in the server's /metrics output.

Standard library only: alerts.yml is read with a small line-based reader that understands the subset of YAML
that file uses for `expr:` (plain, quoted, and `|`/`>` block scalars). `--verify-parser` compares it with
PyYAML when PyYAML is installed (observability/check.sh runs that).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ALERTS_FILE = HERE / "prometheus" / "alerts.yml"
DASHBOARD_DIR = HERE / "grafana" / "dashboards"

AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
    "quantile", "limitk", "limit_ratio",
}
# Keywords followed by a parenthesised list of label names.
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2", "start", "end"}
# Series that Prometheus itself creates, or that are not the server's to export.
NOT_FROM_SERVER = {
    "up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds", "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling", "scrape_series_added", "scrape_timeout_seconds",
    "scrape_sample_limit", "scrape_body_size_bytes",
}
NOT_FROM_SERVER_PREFIXES = ("palisade_backup_",)
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

IDENT_RE = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
NUMBER_RE = re.compile(
    r"(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"(?:(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)?"
)
GRAFANA_VAR_RE = re.compile(r"\$\{[^}]*\}|\$[A-Za-z0-9_]+|\[\[[^\]]*\]\]")
NAME_MATCHER_RE = re.compile(r"__name__\s*=\s*\"([A-Za-z_:][A-Za-z0-9_:]*)\"")


# ----------------------------------------------------------------------------------------------- PromQL


def _skip_string(s: str, i: int) -> int:
    """Return the index just past the string literal starting at s[i]."""
    quote = s[i]
    i += 1
    while i < len(s):
        if s[i] == "\\" and quote != "`":
            i += 2
            continue
        if s[i] == quote:
            return i + 1
        i += 1
    raise ValueError(f"unterminated string in: {s!r}")


def _matching(s: str, i: int, open_: str, close: str) -> int:
    """Return the index of the bracket closing the one at s[i], skipping string literals."""
    depth = 0
    while i < len(s):
        c = s[i]
        if c in "\"'`":
            i = _skip_string(s, i)
            continue
        if c == open_:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unbalanced {open_!r} in: {s!r}")


def _split_args(s: str) -> list[str]:
    """Split a function's argument text at top-level commas."""
    args, depth, start, i = [], 0, 0, 0
    while i < len(s):
        c = s[i]
        if c in "\"'`":
            i = _skip_string(s, i)
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            args.append(s[start:i])
            start = i + 1
        i += 1
    args.append(s[start:])
    return [a.strip() for a in args if a.strip()]


def promql_metric_names(expr: str) -> set[str]:
    """Metric names selected by a PromQL expression (recording-rule names included)."""
    s = GRAFANA_VAR_RE.sub("0", expr)
    names: set[str] = set()
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == "#":  # comment to end of line
            nl = s.find("\n", i)
            i = n if nl < 0 else nl + 1
        elif c in "\"'`":
            i = _skip_string(s, i)
        elif c == "{":  # label matchers; only a __name__ matcher names a metric
            end = _matching(s, i, "{", "}")
            names.update(NAME_MATCHER_RE.findall(s[i:end]))
            i = end + 1
        elif c == "[":  # range or subquery duration
            i = _matching(s, i, "[", "]") + 1
        elif c.isdigit() or (c == "." and i + 1 < n and s[i + 1].isdigit()):
            m = NUMBER_RE.match(s, i)
            i = m.end() if m and m.end() > i else i + 1
        elif IDENT_RE.match(s, i):
            m = IDENT_RE.match(s, i)
            word = m.group(0)
            i = m.end()
            j = i
            while j < n and s[j].isspace():
                j += 1
            followed_by_paren = j < n and s[j] == "("
            lower = word.lower()
            if lower in LABEL_LIST_KEYWORDS:
                if followed_by_paren:
                    i = _matching(s, j, "(", ")") + 1
            elif lower in KEYWORDS or lower in AGGREGATIONS:
                pass
            elif followed_by_paren:
                pass  # a function call; its arguments are scanned as we go
            else:
                names.add(word)
        else:
            i += 1
    return names


def grafana_variable_metric_names(query: str) -> set[str]:
    """Metric names used by a Grafana Prometheus variable query (label_values(...), query_result(...), ...)."""
    q = query.strip()
    m = re.match(r"(label_values|query_result|label_names|metrics)\s*\(", q)
    if not m:
        return promql_metric_names(q) if q else set()
    start = m.end() - 1
    end = _matching(q, start, "(", ")")
    args = _split_args(q[start + 1:end])
    func = m.group(1)
    if func == "label_values":
        # label_values(label) or label_values(series_selector, label): the last argument is a label name.
        return promql_metric_names(args[0]) if len(args) == 2 else set()
    if func == "query_result":
        return promql_metric_names(args[0]) if args else set()
    return set()  # label_names() and metrics(regex) name no metric


# ----------------------------------------------------------------------------------------------- YAML


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def yaml_exprs(text: str) -> list[str]:
    """Values of every `expr:` key in a Prometheus rules file, without a YAML library.

    Handles the forms rule files use: `expr: plain text`, `expr: "double"`, `expr: 'single'` and block scalars
    (`expr: |`, `expr: >-`, ...). Whitespace inside a value is irrelevant to PromQL, so block scalars are joined
    with newlines whether literal or folded. Anything else makes it fail loudly rather than guess.
    """
    lines = text.splitlines()
    out: list[str] = []
    key_re = re.compile(r"^(?P<lead>\s*(?:-\s+)?)expr:(?:\s+(?P<rest>.*))?$")
    i = 0
    while i < len(lines):
        m = key_re.match(lines[i])
        if not m:
            i += 1
            continue
        key_col = len(m.group("lead"))
        rest = (m.group("rest") or "").strip()
        i += 1
        if rest[:1] in ("|", ">"):
            if not re.fullmatch(r"[|>][+-]?[1-9]?(\s+#.*)?", rest):
                raise ValueError(f"unsupported block scalar header: {rest!r}")
            block = []
            while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > key_col):
                block.append(lines[i].strip())
                i += 1
            out.append("\n".join(block).strip())
        elif rest.startswith('"'):
            end = _skip_string(rest, 0)
            out.append(json.loads(rest[:end]))
        elif rest.startswith("'"):
            end = rest.rfind("'")
            if end <= 0:
                raise ValueError(f"unsupported multi-line quoted expr: {rest!r}")
            out.append(rest[1:end].replace("''", "'"))
        elif rest:
            value = re.split(r"\s+#", rest, maxsplit=1)[0].strip()
            # A plain scalar may continue on more-indented lines.
            while i < len(lines) and lines[i].strip() and _indent(lines[i]) > key_col:
                value += " " + lines[i].strip()
                i += 1
            out.append(value)
        else:
            raise ValueError("expr: with the value on the following lines is not supported; use `expr: |`")
    return out


def pyyaml_exprs(path: Path) -> list[str]:
    import yaml  # type: ignore[import-not-found]

    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [str(rule["expr"]) for group in doc["groups"] for rule in group["rules"]]


# ----------------------------------------------------------------------------------------------- main


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


def dashboard_names(path: Path) -> set[str]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for expr in dashboard_exprs(doc):
        names.update(promql_metric_names(expr))
    for var in doc.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        if isinstance(query, str):
            names.update(grafana_variable_metric_names(query))
    return names


def base_name(name: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def server_metric_names() -> list[str]:
    names: set[str] = set()
    for expr in yaml_exprs(ALERTS_FILE.read_text(encoding="utf-8")):
        names.update(promql_metric_names(expr))
    for path in sorted(DASHBOARD_DIR.glob("*.json")):
        names.update(dashboard_names(path))
    return sorted({
        base_name(name)
        for name in names
        if ":" not in name and name not in NOT_FROM_SERVER and not name.startswith(NOT_FROM_SERVER_PREFIXES)
    })


def verify_parser() -> int:
    """Compare the stdlib reader with PyYAML on alerts.yml; exit status 0 when they agree."""
    try:
        expected = pyyaml_exprs(ALERTS_FILE)
    except ImportError:
        print("metric_names.py: PyYAML not installed; parser cross-check skipped", file=sys.stderr)
        return 0

    def norm(values: list[str]) -> list[str]:
        return [" ".join(v.split()) for v in values]

    got = yaml_exprs(ALERTS_FILE.read_text(encoding="utf-8"))
    if norm(got) != norm(expected):
        print("metric_names.py: the stdlib reader disagrees with PyYAML on alerts.yml:", file=sys.stderr)
        for a, b in zip(norm(got) + [""] * len(expected), norm(expected) + [""] * len(got)):
            if a != b:
                print(f"  stdlib: {a!r}\n  pyyaml: {b!r}", file=sys.stderr)
        return 1
    print(f"metric_names.py: stdlib reader matches PyYAML ({len(got)} expressions)", file=sys.stderr)
    return 0


def main(argv: list[str]) -> int:
    if argv[1:] == ["--verify-parser"]:
        return verify_parser()
    if argv[1:]:
        print(f"usage: {argv[0]} [--verify-parser]", file=sys.stderr)
        return 2
    for name in server_metric_names():
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
