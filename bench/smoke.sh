#!/usr/bin/env bash
# The benchmark's smoke test for CI: proves bench/run.sh's machinery still works (servers start,
# tokens are accepted, seeding works, wrk runs and reports) with two-second runs of /health
# (palisade vs bare axum) and the authenticated SQLite read, then bench/instructions.sh with a few
# requests under callgrind. It asserts no timing, only that every request succeeded (no non-2xx
# response, no socket error) and that instructions were counted.
#
# usage: bench/smoke.sh
# Uses PALISADE_BIN and BARE_AXUM_BIN, by default the release builds when present, else the
# debug builds (cargo build -p palisade-api -p bare-axum).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
for build in release debug; do
    if [[ -z "${PALISADE_BIN:-}" && -x "$root/target/$build/palisade" && -x "$root/target/$build/bare-axum" ]]; then
        PALISADE_BIN="$root/target/$build/palisade"
        BARE_AXUM_BIN="$root/target/$build/bare-axum"
    fi
done
DURATION=2
WARMUP=0

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
trap bench_cleanup EXIT

require wrk curl jq python3
[[ -x "$PALISADE_BIN" && -x "$BARE_AXUM_BIN" ]] ||
    die "build first: cargo build -p palisade-api -p bare-axum"
log "smoke with $PALISADE_BIN"

start_palisade health "$(sqlite_env health)"
measure health palisade 16 "$SERVER_URL/health"
stop_pid "$SERVER_PID"

port="$(free_port)"
BARE_AXUM_ADDR="127.0.0.1:$port" "${SERVER_PIN[@]}" "$BARE_AXUM_BIN" >"$WORK/bare-axum.log" 2>&1 &
bare_pid=$!
STARTED_PIDS+=("$bare_pid")
wait_http "http://127.0.0.1:$port/health" "$bare_pid" "$WORK/bare-axum.log"
measure health bare-axum 16 "http://127.0.0.1:$port/health"
stop_pid "$bare_pid"

start_palisade read-sqlite "$(sqlite_env read-sqlite)" PALISADE_RATE_LIMIT__ENABLED=false
token="$(palisade_token)"
todo="$(seed_todos "$SERVER_URL" "$token" 3)"
[[ "$todo" =~ ^[0-9a-f-]{36}$ ]] || die "seeding returned no todo id (got '$todo')"
measure read-sqlite palisade 16 "$SERVER_URL/api/v1/todos/$todo" "$token"
# A request the server refuses must show up as a failure, or the assertion below proves nothing.
measure refused palisade 1 "$SERVER_URL/api/v1/todos/$todo" "not-a-token"
stop_pid "$SERVER_PID"

refused="$(awk -F'\t' '$1 == "refused" {print $7}' "$RESULTS")"
[[ "$refused" -gt 0 ]] || die "a run with a bad token reported no failed requests: wrk's report is broken"
sed -i '/^refused\t/d' "$RESULTS"
pair health palisade bare-axum 16
python3 "$BENCH_DIR/report.py" "$RESULTS" "$PAIRS" "$MEMORY"
assert_all_succeeded
log "instruction counts (bench/instructions.sh), a few requests each"
PALISADE_BIN="$PALISADE_BIN" BARE_AXUM_BIN="$BARE_AXUM_BIN" bash "$BENCH_DIR/instructions.sh" --requests 40
log "smoke passed: every request succeeded"
