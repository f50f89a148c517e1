# shellcheck shell=bash
# shellcheck disable=SC2034 # variables set here are read by the scripts that source this file
# Shared by bench/run.sh and bench/smoke.sh: start servers, mint tokens, seed data, drive wrk,
# record results. Sourced, not run. Every process and database created here is remembered and
# removed by `bench_cleanup` (PIDs we started, never by name).

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"

: "${PALISADE_BIN:=$ROOT/target/release/palisade}"
# shellcheck source-path=SCRIPTDIR source=../.ci/lib/server.sh
source "$ROOT/.ci/lib/server.sh"
: "${BARE_AXUM_BIN:=$ROOT/target/release/bare-axum}"
: "${BENCH_CACHE:=${XDG_CACHE_HOME:-$HOME/.cache}/palisade-bench}"
: "${PG_URL:=postgres://postgres@127.0.0.1:5432}"
: "${REDIS_URL_BENCH:=redis://127.0.0.1:6379}"
: "${DURATION:=10}"
: "${WARMUP:=2}"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/palisade-bench.XXXXXX")"
RESULTS="$WORK/results.tsv"
MEMORY="$WORK/memory.tsv"
PAIRS="$WORK/pairs.tsv"
: >"$RESULTS"
: >"$MEMORY"
: >"$PAIRS"
STARTED_PIDS=()
CREATED_DBS=()
REDIS_PREFIXES=()
SEQ=0

# Server on CPU 0, load generator on CPU 1, when there are two CPUs to give them.
if [[ "$(nproc)" -ge 2 ]] && command -v taskset >/dev/null; then
    SERVER_PIN=(taskset -c 0)
    LOAD_PIN=(taskset -c 1)
else
    SERVER_PIN=()
    LOAD_PIN=()
fi

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

require() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "$tool is not installed (see bench/README.md)"
    done
}

bench_cleanup() {
    local pid db prefix
    for pid in "${STARTED_PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    for db in "${CREATED_DBS[@]}"; do
        psql "$PG_URL/postgres" -qAtc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
    done
    for prefix in "${REDIS_PREFIXES[@]}"; do
        redis-cli -u "$REDIS_URL_BENCH" --scan --pattern "$prefix*" | xargs -r redis-cli -u "$REDIS_URL_BENCH" del >/dev/null 2>&1 || true
    done
    rm -rf "$WORK"
}

# Sets NEXT_ID to a name unique to this run (not printed: a $(...) subshell would lose the count).
next_id() {
    SEQ=$((SEQ + 1))
    NEXT_ID="pb$$_$SEQ"
}

# wait_http URL PID LOG: until URL answers 2xx, or fail with the end of LOG if PID died.
wait_http() {
    local url="$1" pid="$2" logfile="$3" i
    for i in $(seq 1 600); do
        if curl -fsS -o /dev/null "$url" 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$logfile" >&2
            die "server $pid exited before answering $url"
        fi
        sleep 0.1
    done
    tail -n 30 "$logfile" >&2
    die "no answer from $url after 60 s"
}

# A fresh PostgreSQL database, named in NEW_DB and dropped by bench_cleanup.
new_pg_db() {
    next_id
    NEW_DB="$NEXT_ID"
    psql "$PG_URL/postgres" -qAtc "CREATE DATABASE \"$NEW_DB\"" >/dev/null
    CREATED_DBS+=("$NEW_DB")
}

# start_palisade NAME [VAR=VALUE ...]: a release palisade on a free port, pinned to the server
# CPU, in its own directory (.ci/lib/server.sh's server_start; PALISADE_BIN may be changed per
# call). Sets SERVER_PID, SERVER_URL, SERVER_DIR and SERVER_ENV. Logs are JSON, as production
# writes them (BENCH_LOG_FORMAT=pretty measures the development format instead).
start_palisade() {
    local name="$1"
    shift
    SERVER_PREFIX=("${SERVER_PIN[@]}")
    SERVER_STARTUP_TIMEOUT="${SERVER_STARTUP_TIMEOUT:-60}" server_start "$WORK/$name" PALISADE_DATABASE__AUTO_MIGRATE=true \
        "PALISADE_LOG__FORMAT=${BENCH_LOG_FORMAT:-json}" "$@" ||
        die "palisade ($name) did not start"
    STARTED_PIDS+=("$SERVER_PID")
}

# Environment for palisade on SQLite in SERVER_DIR-to-be (call before start_palisade).
sqlite_env() { printf 'PALISADE_DATABASE__URL=sqlite://%s/%s/palisade.db' "$WORK" "$1"; }

# Environment lines for palisade on a fresh PostgreSQL database plus Redis with its own prefix.
pg_redis_env() {
    new_pg_db
    next_id
    REDIS_PREFIXES+=("$NEXT_ID")
    LAST_DB="$NEW_DB"
    PG_REDIS_ENV=("PALISADE_DATABASE__URL=$PG_URL/$NEW_DB" "PALISADE_REDIS__URL=$REDIS_URL_BENCH"
        "PALISADE_REDIS__KEY_PREFIX=$NEXT_ID")
}

stop_pid() {
    local pid="$1"
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# A development token for the demo tenant, minted with the running server's environment.
palisade_token() {
    server_run token --tenant demo --sub bench --scopes todos:read,todos:write
}

# seed_todos URL TOKEN COUNT: creates COUNT todos through the API; prints the first id.
seed_todos() {
    local url="$1" token="$2" count="$3" i id first=""
    for i in $(seq 1 "$count"); do
        id="$(curl -fsS -X POST -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
            -d "{\"title\":\"bench todo $i\"}" "$url/api/v1/todos" | jq -r .id)"
        [[ -n "$first" ]] || first="$id"
    done
    printf '%s' "$first"
}

# bulk_todos_sqlite DB_FILE TOTAL: tops the table up to TOTAL rows by copying an existing row
# (same tenant and creator). Every 100th row is done, so `?done=true` is a selective filter.
bulk_todos_sqlite() {
    local db="$1" total="$2"
    sqlite3 "$db" <<SQL
.timeout 10000
INSERT INTO todos (id, tenant_id, title, done, version, created_by, created_at, updated_at)
SELECT randomblob(16), t.tenant_id, 'bulk ' || s.n, (s.n % 100 = 0), 1, t.created_by, t.created_at, t.updated_at
FROM (SELECT * FROM todos LIMIT 1) AS t,
     (WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < $total) SELECT n FROM s) AS s
WHERE s.n <= $total - (SELECT count(*) FROM todos);
SQL
}

bulk_todos_pg() {
    local db="$1" total="$2"
    psql "$PG_URL/$db" -qAt >/dev/null <<SQL
INSERT INTO todos (id, tenant_id, title, done, version, created_by, created_at, updated_at)
SELECT gen_random_uuid(), t.tenant_id, 'bulk ' || n, (n % 100 = 0), 1, t.created_by, t.created_at, t.updated_at
FROM (SELECT * FROM todos LIMIT 1) AS t,
     generate_series(1, $total - (SELECT count(*) FROM todos)::int) AS n;
ANALYZE todos;
SQL
}

# memory LABEL PID: idle RSS now (call before load).
memory_idle() {
    local kib
    kib="$(awk '/^VmRSS:/ {print $2}' "/proc/$2/status")"
    printf '%s\tidle\t%s\n' "$1" "$kib" >>"$MEMORY"
}

# memory_peak LABEL PID: the process's high-water mark (call after its c=64 run).
memory_peak() {
    local kib
    kib="$(awk '/^VmHWM:/ {print $2}' "/proc/$2/status")"
    printf '%s\tpeak\t%s\n' "$1" "$kib" >>"$MEMORY"
}

# measure SCENARIO LABEL CONNS URL [TOKEN [unpinned]]: a warm-up, then a DURATION-second wrk run
# on the load CPU (on any CPU with `unpinned`). Appends: scenario, label, connections, rps, p50 ms,
# p99 ms, non-2xx/3xx, socket errors.
measure() {
    local scenario="$1" label="$2" conns="$3" url="$4" token="${5:-}" threads=1 out
    local -a pin=("${LOAD_PIN[@]}")
    [[ "${6:-}" != unpinned ]] || pin=()
    if [[ "$WARMUP" != 0 ]]; then
        TOKEN="$token" "${pin[@]}" wrk -t"$threads" -c"$conns" -d"${WARMUP}s" \
            -s "$BENCH_DIR/wrk-report.lua" "$url" >/dev/null
    fi
    out="$(TOKEN="$token" "${pin[@]}" wrk -t"$threads" -c"$conns" -d"${DURATION}s" \
        -s "$BENCH_DIR/wrk-report.lua" "$url" | awk '$1 == "RESULT"')"
    [[ -n "$out" ]] || die "wrk printed no result for $label $url"
    # shellcheck disable=SC2086
    set -- $out
    awk -v s="$scenario" -v l="$label" -v c="$conns" -v n="$2" -v d="$3" -v p50="$4" -v p99="$5" \
        -v bad="$6" -v err="$7" 'BEGIN {
            printf "%s\t%s\t%s\t%.0f\t%.2f\t%.2f\t%d\t%d\n", s, l, c, n / (d / 1e6), p50 / 1e3, p99 / 1e3, bad, err
        }' | tee -a "$RESULTS" | awk -F'\t' '{ printf "[bench] %-14s %-22s c=%-3s %8s rps  p50 %7s ms  p99 %7s ms  non-2xx %s  errors %s\n", $1, $2, $3, $4, $5, $6, $7, $8 }' >&2
}

# pair SCENARIO LABEL_A LABEL_B CONNS [CONNS_B]: a ratio the report computes (A at CONNS over B
# at CONNS_B, default CONNS; run by run).
pair() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${5:-$4}" >>"$PAIRS"; }

# Fails when any measured request was answered with a non-2xx/3xx status or a socket error.
assert_all_succeeded() {
    local bad
    bad="$(awk -F'\t' '$7 > 0 || $8 > 0' "$RESULTS")"
    if [[ -n "$bad" ]]; then
        printf '%s\n' "$bad" >&2
        die "some requests failed (columns 7 and 8: non-2xx/3xx responses, socket errors)"
    fi
}
