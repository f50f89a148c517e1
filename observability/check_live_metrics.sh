#!/usr/bin/env bash
# observability/check_live_metrics.sh - `promtool check metrics` on a running server's /metrics.
#
#   cargo build -p palisade-api && bash observability/check_live_metrics.sh
#
# Starts the built server (PALISADE_BIN, default target/debug/palisade) with .ci/lib/server.sh in
# development mode on a free 127.0.0.1 port, in a temporary directory (so the embedded SQLite
# default), sends a few requests so the labelled families have series, scrapes /metrics, runs
# promtool's exposition lint over it and checks every contract and process metric is there, then
# stops the server by its PID. Builds nothing.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=../.ci/lib/server.sh
source "$repo/.ci/lib/server.sh"

die() {
	printf 'check_live_metrics: FAILED: %s\n' "$*" >&2
	exit 1
}

command -v promtool >/dev/null 2>&1 || die "promtool is not installed (apt-get install prometheus)"
command -v curl >/dev/null 2>&1 || die "curl is not installed"

workdir="$(mktemp -d "${TMPDIR:-/tmp}/palisade-metrics.XXXXXX")"
cleanup() {
	server_stop_all
	rm -rf "$workdir"
}
trap cleanup EXIT

server_start "$workdir/server" || die "the server did not start"
base="$SERVER_URL"

# Traffic so the labelled families (requests, durations, auth failures) are exported.
for path in /health /ready /no/such/path /api/v1/todos; do curl -s -o /dev/null "$base$path" || true; done
curl -s -o /dev/null -H 'Authorization: Bearer not-a-jwt' "$base/api/v1/auth/me" || true

curl -fsS "$base/metrics" >"$workdir/metrics.txt" || die "GET /metrics failed"
promtool check metrics <"$workdir/metrics.txt" || die "promtool check metrics found problems in /metrics"

for name in http_requests_total http_request_duration_seconds http_requests_in_flight db_pool_connections \
	db_pool_max_connections db_pool_acquire_timeouts_total redis_up redis_errors_total auth_failures_total api_key_authentications_total \
	build_info process_cpu_seconds_total process_resident_memory_bytes process_open_fds process_threads; do
	grep -q "^# TYPE $name " "$workdir/metrics.txt" || die "/metrics does not export $name"
done

server_stop || die "the server did not exit cleanly on SIGTERM"
printf 'OK: promtool check metrics passed on the live /metrics (%s lines)\n' "$(wc -l <"$workdir/metrics.txt" | tr -d ' ')"
