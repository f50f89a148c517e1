#!/usr/bin/env bash
# CPU instructions per request, counted by callgrind: a before/after measure that does not depend
# on how busy the machine is (the same binary, inputs and environment give the same count, even
# with the other core loaded), unlike the throughput of bench/run.sh.
#
#   bench/instructions.sh [--requests N] [--baseline BIN] [--keep DIR]
#
# Runs, each server under `valgrind --tool=callgrind` with instrumentation switched on only around the
# measured requests (after a warm-up of N/4), N keep-alive requests on one connection:
#   health  GET /health through palisade's default stack (SQLite), and through bench/bare-axum
#   read    the authenticated tenant read GET /api/v1/todos/{id} (SQLite, rate limits off)
# (--keep DIR keeps each scenario's callgrind output there, for callgrind_annotate --inclusive=yes)
# and prints instructions per request and the ratios (palisade / bare axum; this build / the
# baseline, when given). What it counts is user-space instructions of the whole server process:
# the kernel's share of a request (the socket writes) is not in it, so the /health ratio here is
# far larger than the throughput ratio; use it to compare builds, and bench/run.sh for throughput.
# Needs valgrind, curl, jq, python3 and release builds (cargo build --release -p palisade-api
# -p bare-axum; PALISADE_BIN and BARE_AXUM_BIN choose others, as bench/smoke.sh does in CI).
set -euo pipefail

REQUESTS=2000
BASELINE_BIN=""
KEEP=""
while [[ $# -gt 0 ]]; do
    case "$1" in
    --requests) REQUESTS="$2"; shift 2 ;;
    --baseline) BASELINE_BIN="$2"; shift 2 ;;
    --keep) KEEP="$2"; shift 2 ;;
    *) echo "usage: bench/instructions.sh [--requests N] [--baseline BIN] [--keep DIR]" >&2; exit 2 ;;
    esac
done

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap bench_cleanup EXIT
require valgrind callgrind_control curl jq python3
[[ -x "$PALISADE_BIN" && -x "$BARE_AXUM_BIN" ]] ||
    die "build first: cargo build --release -p palisade-api -p bare-axum (or set PALISADE_BIN, BARE_AXUM_BIN)"
# The servers run in directories of their own: every path must be absolute.
absolute() { printf '%s/%s' "$(cd "$(dirname "$1")" && pwd)" "$(basename "$1")"; }
PALISADE_BIN="$(absolute "$PALISADE_BIN")"
BARE_AXUM_BIN="$(absolute "$BARE_AXUM_BIN")"
[[ -z "$BASELINE_BIN" ]] || BASELINE_BIN="$(absolute "$BASELINE_BIN")"
# Under valgrind a server starts several times slower (a debug build, as in CI, slower still).
: "${SERVER_STARTUP_TIMEOUT:=300}"
export SERVER_STARTUP_TIMEOUT
SERVER_PIN=(valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=callgrind.out)

# keep_alive URL COUNT [TOKEN]: COUNT sequential GETs on one connection; fails on any non-200.
keep_alive() {
    python3 - "$@" <<-'EOF'
	import http.client, sys, urllib.parse
	url, count, *token = sys.argv[1:]
	parts = urllib.parse.urlsplit(url)
	headers = {"authorization": f"Bearer {token[0]}"} if token else {}
	connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
	for _ in range(int(count)):
	    connection.request("GET", parts.path, headers=headers)
	    response = connection.getresponse()
	    response.read()
	    if response.status != 200:
	        sys.exit(f"{url} answered {response.status}")
	EOF
}

# count DIR PID URL [TOKEN]: warms up, counts REQUESTS requests, stops the server; prints the
# instructions per request.
count() {
    local dir="$1" pid="$2" url="$3" token="${4:-}" total
    keep_alive "$url" $((REQUESTS / 4)) ${token:+"$token"}
    callgrind_control --instr=on "$pid" >/dev/null 2>&1
    keep_alive "$url" "$REQUESTS" ${token:+"$token"}
    callgrind_control --instr=off "$pid" >/dev/null 2>&1
    # A subshell cannot `wait` for the server: poll until valgrind has written its counts and exited.
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    total="$(sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$dir"/callgrind.out* | awk '{ s += $1 } END { print s }')"
    [[ -n "$total" && "$total" -gt 0 ]] || die "no instructions counted in $dir"
    if [[ -n "$KEEP" ]]; then
        mkdir -p "$KEEP"
        cat "$dir"/callgrind.out* >"$KEEP/$(basename "$dir").callgrind"
    fi
    echo $((total / REQUESTS))
}

# palisade_health NAME BIN, palisade_read NAME BIN: one count each, for the build at BIN. The job
# workers are off: they poll the database every second whatever the traffic, and under callgrind
# (requests about 50 times slower) that idle work would be counted as if each request did it.
palisade_health() {
    PALISADE_BIN="$2" start_palisade "$1" "$(sqlite_env "$1")" PALISADE_JOBS__ENABLED=false
    count "$SERVER_DIR" "$SERVER_PID" "$SERVER_URL/health"
}
palisade_read() {
    local token id
    PALISADE_BIN="$2" start_palisade "$1" "$(sqlite_env "$1")" PALISADE_RATE_LIMIT__ENABLED=false \
        PALISADE_JOBS__ENABLED=false
    token="$(PALISADE_BIN="$2" palisade_token)"
    id="$(seed_todos "$SERVER_URL" "$token" 1)"
    count "$SERVER_DIR" "$SERVER_PID" "$SERVER_URL/api/v1/todos/$id" "$token"
}

log "counting $REQUESTS requests per scenario under callgrind (each server starts slowly under valgrind)"
mkdir -p "$WORK/bare-axum"
port="$(free_port)"
(cd "$WORK/bare-axum" && exec env "BARE_AXUM_ADDR=127.0.0.1:$port" "${SERVER_PIN[@]}" "$BARE_AXUM_BIN") \
    >"$WORK/bare-axum/server.log" 2>&1 &
bare_pid=$!
STARTED_PIDS+=("$bare_pid")
wait_http "http://127.0.0.1:$port/health" "$bare_pid" "$WORK/bare-axum/server.log"
bare="$(count "$WORK/bare-axum" "$bare_pid" "http://127.0.0.1:$port/health")"
health="$(palisade_health health "$PALISADE_BIN")"
read_now="$(palisade_read read "$PALISADE_BIN")"

ratio() { python3 -c 'import sys; print(f"{int(sys.argv[1]) / int(sys.argv[2]):.2f}")' "$1" "$2"; }
printf '\n| Scenario | instructions per request | ratio |\n|---|---|---|\n'
printf '| /health, bare axum | %s | 1.00 |\n' "$bare"
printf '| /health, palisade | %s | %s × bare axum |\n' "$health" "$(ratio "$health" "$bare")"
printf '| authenticated read (SQLite), palisade | %s | |\n' "$read_now"
if [[ -n "$BASELINE_BIN" ]]; then
    base_health="$(palisade_health health-baseline "$BASELINE_BIN")"
    base_read="$(palisade_read read-baseline "$BASELINE_BIN")"
    printf '| /health, baseline | %s | this build: %s × baseline |\n' "$base_health" "$(ratio "$health" "$base_health")"
    printf '| authenticated read, baseline | %s | this build: %s × baseline |\n' "$base_read" \
        "$(ratio "$read_now" "$base_read")"
fi
