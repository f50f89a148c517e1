#!/usr/bin/env python3
"""Generate deploy/k8s/base/prometheusrule.yaml from observability/prometheus/alerts.yml.

alerts.yml is the single source of truth for recording and alerting rules: Prometheus loads it
directly (Compose, plain Kubernetes) and the Prometheus Operator gets the same groups wrapped in a
PrometheusRule. Never edit the generated file; change alerts.yml and run

    python3 deploy/k8s/generate-prometheusrule.py          # rewrite the committed file
    python3 deploy/k8s/generate-prometheusrule.py --check  # exit 1 if it is stale (CI)

Requires PyYAML.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SOURCE = REPO / "observability" / "prometheus" / "alerts.yml"
DEFAULT_OUTPUT = REPO / "deploy" / "k8s" / "base" / "prometheusrule.yaml"

HEADER = """\
# GENERATED FILE - DO NOT EDIT.
# Source: observability/prometheus/alerts.yml
# Regenerate: python3 deploy/k8s/generate-prometheusrule.py
# deploy/check.sh fails when this file differs from a fresh generation.
"""

RULE_KEYS = {"record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
GROUP_KEYS = {"name", "interval", "rules", "limit", "query_offset", "labels"}


class _Dumper(yaml.SafeDumper):
    """Block style, indented sequences (yamllint's default), multi-line strings as `|` blocks."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str_representer)


def _fail(message: str) -> None:
    print(f"generate-prometheusrule: {message}", file=sys.stderr)
    sys.exit(1)


def load_groups(source: Path) -> list[dict]:
    if not source.is_file():
        _fail(f"{source} does not exist; it is the source of the PrometheusRule")
    documents = [d for d in yaml.safe_load_all(source.read_text(encoding="utf-8")) if d is not None]
    if len(documents) != 1 or not isinstance(documents[0], dict):
        _fail(f"{source}: expected exactly one YAML mapping with a `groups` list")
    groups = documents[0].get("groups")
    if not isinstance(groups, list) or not groups:
        _fail(f"{source}: `groups` must be a non-empty list")
    problems = []
    for gi, group in enumerate(groups):
        where = f"groups[{gi}]"
        if not isinstance(group, dict) or not isinstance(group.get("name"), str):
            problems.append(f"{where}: needs a string `name`")
            continue
        where = f"group {group['name']!r}"
        problems += [f"{where}: unknown key {k!r}" for k in group if k not in GROUP_KEYS]
        rules = group.get("rules")
        if not isinstance(rules, list) or not rules:
            problems.append(f"{where}: `rules` must be a non-empty list")
            continue
        for ri, rule in enumerate(rules):
            rwhere = f"{where} rules[{ri}]"
            if not isinstance(rule, dict):
                problems.append(f"{rwhere}: not a mapping")
                continue
            problems += [f"{rwhere}: unknown key {k!r}" for k in rule if k not in RULE_KEYS]
            if ("record" in rule) == ("alert" in rule):
                problems.append(f"{rwhere}: needs exactly one of `record` or `alert`")
            if not isinstance(rule.get("expr"), (str, int, float)):
                problems.append(f"{rwhere}: needs an `expr`")
    if problems:
        _fail(f"{source} is not a valid rules file:\n  " + "\n  ".join(problems))
    return groups


def render(groups: list[dict]) -> str:
    document = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "palisade",
            "labels": {"app.kubernetes.io/component": "api"},
        },
        "spec": {"groups": groups},
    }
    body = yaml.dump(
        document,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=4096,
    )
    return HEADER + body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="rules file (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="PrometheusRule file (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if --output is not up to date")
    args = parser.parse_args()

    fresh = render(load_groups(args.source))
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.is_file() else ""
        if current != fresh:
            diff = difflib.unified_diff(
                current.splitlines(keepends=True),
                fresh.splitlines(keepends=True),
                fromfile=f"{args.output} (committed)",
                tofile=f"{args.output} (generated from {args.source})",
            )
            sys.stderr.writelines(diff)
            print(
                f"\n{args.output} is stale: run python3 deploy/k8s/generate-prometheusrule.py and commit the result",
                file=sys.stderr,
            )
            return 1
        print(f"{args.output.relative_to(REPO) if args.output.is_relative_to(REPO) else args.output} is up to date")
        return 0
    args.output.write_text(fresh, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
