#!/usr/bin/env bash
# observability/check.sh - validate everything under observability/ and the alert runbooks in docs/runbooks/.
# CI runs it (.ci/run); so can you, from anywhere in the repository.
#
# Needs: promtool (Debian/Ubuntu: apt-get install prometheus), amtool (apt-get install
# prometheus-alertmanager), python3 with PyYAML (pip install -r deploy/requirements.txt, or apt-get
# install python3-yaml). Fails when one is missing: nothing is skipped.
#
# Steps: promtool check config (Compose and Kubernetes variants); promtool check rules and test rules; the
# dashboards' PromQL through promtool; check_artifacts.py (labels, annotations and runbooks of every alert,
# dashboards and provisioning, Alertmanager routes and secrets); amtool check-config and a template render.
# Stops at the first failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() {
	printf '\nobservability/check.sh: FAILED: %s\n' "$*" >&2
	exit 1
}
step() { printf '\n==> %s\n' "$*"; }
note() { printf 'NOTE: %s\n' "$*"; }

command -v promtool >/dev/null 2>&1 ||
	die "promtool is not installed. Install it with: apt-get install prometheus (Debian/Ubuntu), or put the promtool binary from a Prometheus release on PATH"
command -v amtool >/dev/null 2>&1 ||
	die "amtool is not installed. Install it with: apt-get install prometheus-alertmanager (Debian/Ubuntu)"
command -v python3 >/dev/null 2>&1 || die "python3 is not installed"
python3 -c 'import yaml' 2>/dev/null ||
	die "PyYAML is not installed. Install it with: python3 -m pip install -r deploy/requirements.txt (or apt-get install python3-yaml)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/palisade-observability.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

PROM_DIR=observability/prometheus
AM_DIR=observability/alertmanager

step "promtool $(promtool --version 2>&1 | head -n1 | sed 's/^promtool, //')"

step "promtool check config $PROM_DIR/prometheus.yml"
promtool check config "$PROM_DIR/prometheus.yml"

step "promtool check config $PROM_DIR/prometheus-kubernetes.yml"
if ! out=$(promtool check config "$PROM_DIR/prometheus-kubernetes.yml" 2>&1); then
	if grep -q 'field kubernetes_sd_configs not found' <<<"$out"; then
		# Debian builds Prometheus without Kubernetes service discovery. Check everything else: the same
		# file with the kubernetes_sd_configs block swapped for a static target (relabelling stays).
		note "this promtool has no Kubernetes service discovery; checking the file with kubernetes_sd_configs replaced"
		python3 - "$PROM_DIR/prometheus-kubernetes.yml" "$WORK/prometheus-kubernetes.yml" <<-'EOF'
			import sys, yaml
			doc = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))
			replaced = 0
			for job in doc["scrape_configs"]:
			    if job.pop("kubernetes_sd_configs", None) is not None:
			        job["static_configs"] = [{"targets": ["placeholder:8080"]}]
			        replaced += 1
			assert replaced, "no kubernetes_sd_configs found"
			yaml.safe_dump(doc, open(sys.argv[2], "w", encoding="utf-8"), sort_keys=False)
		EOF
		cp "$PROM_DIR/alerts.yml" "$WORK/alerts.yml"
		promtool check config "$WORK/prometheus-kubernetes.yml"
	else
		printf '%s\n' "$out" >&2
		die "promtool check config $PROM_DIR/prometheus-kubernetes.yml"
	fi
else
	printf '%s\n' "$out"
fi

step "promtool check rules $PROM_DIR/alerts.yml"
promtool check rules "$PROM_DIR/alerts.yml"

step "promtool test rules $PROM_DIR/tests/*.yml"
promtool test rules "$PROM_DIR"/tests/*.yml

step "dashboard queries parse (promtool check rules)"
python3 observability/check_artifacts.py --dashboard-rules "$WORK/dashboard-queries.yml"
promtool check rules "$WORK/dashboard-queries.yml"

step "alerts, runbooks, dashboards, provisioning and Alertmanager structure (check_artifacts.py)"
python3 observability/check_artifacts.py

step "Alertmanager configuration"
{
	am_version=$(amtool --version 2>&1 | sed -n 's/^amtool, version \([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p' | head -n1)
	printf 'amtool %s\n' "${am_version:-unknown}"
	am_config="$AM_DIR/alertmanager.yml"
	if [[ $am_version =~ ^0\.([0-9]+)$ ]] && ((BASH_REMATCH[1] < 26)); then
		# webhook_configs.url_file arrived in Alertmanager 0.26 (the Compose stack runs a newer one).
		note "amtool $am_version predates webhook url_file (0.26); checking a copy that uses url instead"
		mkdir -p "$WORK/alertmanager"
		cp -R "$AM_DIR/templates" "$WORK/alertmanager/"
		sed 's|^\( *\)- url_file: .*$|\1- url: http://webhook.invalid/|' "$AM_DIR/alertmanager.yml" >"$WORK/alertmanager/alertmanager.yml"
		grep -q '^ *- url_file:' "$WORK/alertmanager/alertmanager.yml" && die "could not rewrite webhook url_file for amtool $am_version"
		am_config="$WORK/alertmanager/alertmanager.yml"
	fi
	amtool check-config "$am_config"

	if amtool template render --help >/dev/null 2>&1; then
		cat >"$WORK/alert-data.json" <<-'EOF'
			{
			  "receiver": "pagerduty-and-slack",
			  "status": "firing",
			  "alerts": [{
			    "status": "firing",
			    "labels": {"alertname": "InstanceDown", "severity": "critical", "service": "palisade",
			               "job": "palisade", "instance": "palisade-0:8080"},
			    "annotations": {"summary": "palisade instance palisade-0:8080 is down", "description": "test",
			                    "runbook_url": "https://github.com/palisade-rs/palisade/blob/main/docs/runbooks/InstanceDown.md"},
			    "startsAt": "2025-01-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
			    "generatorURL": "http://prometheus:9090/graph", "fingerprint": "0"
			  }],
			  "groupLabels": {"alertname": "InstanceDown", "service": "palisade"},
			  "commonLabels": {"alertname": "InstanceDown", "severity": "critical", "service": "palisade",
			                   "job": "palisade", "instance": "palisade-0:8080"},
			  "commonAnnotations": {"summary": "palisade instance palisade-0:8080 is down", "description": "test",
			                        "runbook_url": "https://github.com/palisade-rs/palisade/blob/main/docs/runbooks/InstanceDown.md"},
			  "externalURL": "http://alertmanager:9093"
			}
		EOF
		rendered=$(amtool template render --template.glob="$AM_DIR/templates/*.tmpl" \
			--template.data="$WORK/alert-data.json" \
			--template.text='{{ template "palisade.slack.title" . }}|{{ template "palisade.slack.color" . }}|{{ template "palisade.slack.text" . }}|{{ template "palisade.pagerduty.description" . }}')
		grep -q 'docs/runbooks/InstanceDown.md' <<<"$rendered" || die "Slack template does not render the runbook link"
		printf '%s\n' "$rendered" | head -n 3
		printf 'templates render\n'
	fi
}

# The metric names the rules and dashboards use are checked against the server's in Rust:
# crates/ops/tests/metric_contract.rs (cargo test).
printf '\nOK: observability checks passed\n'
