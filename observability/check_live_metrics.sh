#!/usr/bin/env bash
# observability/check_live_metrics.sh - `promtool check metrics` on a running server's /metrics.
#
#   cargo build -p palisade-api && bash observability/check_live_metrics.sh
#
# Starts the built server (PALISADE_BIN, default target/debug/palisade) in development mode on a free
# 127.0.0.1 port, in a temporary directory (so the embedded SQLite default), sends a few requests so
# the labelled families have series, scrapes /metrics, runs promtool's exposition lint over it and
# checks every contract and process metric is there, then stops the server by its PID. Builds nothing.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${PALISADE_BIN:-$repo/target/debug/palisade}"
[[ "$bin" == /* ]] || bin="$PWD/$bin"

die() {
	printf 'check_live_metrics: FAILED: %s\n' "$*" >&2
	exit 1
}

command -v promtool >/dev/null 2>&1 || die "promtool is not installed (apt-get install prometheus)"
command -v curl >/dev/null 2>&1 || die "curl is not installed"
[ -x "$bin" ] || die "no executable at $bin: run 'cargo build -p palisade-api' first, or set PALISADE_BIN"

workdir="$(mktemp -d "${TMPDIR:-/tmp}/palisade-metrics.XXXXXX")"
server_pid=""
cleanup() {
	if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
		kill -TERM "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	rm -rf "$workdir"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
base="http://127.0.0.1:$port"
export PALISADE_ENVIRONMENT=development
export PALISADE_SERVER__ADDR="127.0.0.1:$port"
(cd "$workdir" && exec "$bin" serve) >"$workdir/server.log" 2>&1 &
server_pid=$!

for _ in $(seq 150); do
	curl -fsS "$base/health" >/dev/null 2>&1 && break
	kill -0 "$server_pid" 2>/dev/null || { tail -n 40 "$workdir/server.log" >&2; die "the server exited during startup"; }
	sleep 0.2
done
curl -fsS "$base/health" >/dev/null || { tail -n 40 "$workdir/server.log" >&2; die "/health did not answer"; }

# Traffic so the labelled families (requests, durations, auth failures) are exported.
for path in /health /ready /no/such/path /api/v1/todos; do curl -s -o /dev/null "$base$path" || true; done
curl -s -o /dev/null -H 'Authorization: Bearer not-a-jwt' "$base/api/v1/auth/me" || true

curl -fsS "$base/metrics" >"$workdir/metrics.txt" || die "GET /metrics failed"
promtool check metrics <"$workdir/metrics.txt" || die "promtool check metrics found problems in /metrics"

for name in http_requests_total http_request_duration_seconds http_requests_in_flight db_pool_connections \
	db_pool_max_connections db_pool_acquire_timeouts_total redis_up redis_errors_total auth_failures_total \
	build_info process_cpu_seconds_total process_resident_memory_bytes process_open_fds process_threads; do
	grep -q "^# TYPE $name " "$workdir/metrics.txt" || die "/metrics does not export $name"
done

kill -TERM "$server_pid"
wait "$server_pid" || die "the server did not exit cleanly on SIGTERM"
server_pid=""
printf 'OK: promtool check metrics passed on the live /metrics (%s lines)\n' "$(wc -l <"$workdir/metrics.txt" | tr -d ' ')"
