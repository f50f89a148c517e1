#!/usr/bin/env bash
# palisade's benchmark: pairwise runs in one sitting, printed as Markdown tables of throughput
# ratios with p50/p99 latency and memory. See bench/README.md for what each scenario does.
#
# usage: bench/run.sh [--quick] [--baseline PATH] [--no-peers] [--only LIST] [--out FILE]
#   --quick          3 s runs (1 s warm-up) instead of 10 s (2 s warm-up)
#   --only LIST      comma-separated sections: health,sqlite,pg,limiter,list (default: all);
#                    sqlite and pg include the peers on that database
#   --baseline PATH  also run an older palisade binary (e.g. a build of main) against this one
#   --no-peers       skip FastAPI and loco
#   --out FILE       also write the report to FILE
# Needs release builds: cargo build --release -p palisade-api -p bare-axum
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
trap bench_cleanup EXIT

BASELINE_BIN=""
PEERS=1
ONLY="health,sqlite,pg,limiter,list"
OUT=""
while [[ $# -gt 0 ]]; do
    case "$1" in
    --quick)
        DURATION=3
        WARMUP=1
        ;;
    --baseline)
        BASELINE_BIN="$(realpath "$2")"
        shift
        ;;
    --no-peers) PEERS=0 ;;
    --only)
        ONLY="$2"
        shift
        ;;
    --out)
        OUT="$2"
        shift
        ;;
    *) die "unknown argument $1 (see the usage at the top of bench/run.sh)" ;;
    esac
    shift
done

require wrk curl jq psql redis-cli sqlite3 python3
[[ -x "$PALISADE_BIN" && -x "$BARE_AXUM_BIN" ]] ||
    die "build first: cargo build --release -p palisade-api -p bare-axum"

NO_LIMITS=(PALISADE_RATE_LIMIT__ENABLED=false)
# Limits on, but far above what one machine can send, so nothing is refused (the server refuses
# a rate whose interval, period/rate, is under 1 µs).
HIGH_LIMITS=(PALISADE_RATE_LIMIT__ENABLED=true
    PALISADE_RATE_LIMIT__POLICIES__ANONYMOUS__RATE=100000 PALISADE_RATE_LIMIT__POLICIES__ANONYMOUS__BURST=1000000
    PALISADE_RATE_LIMIT__POLICIES__AUTHENTICATED__RATE=100000
    PALISADE_RATE_LIMIT__POLICIES__AUTHENTICATED__BURST=1000000)

log "machine: $(nproc) CPUs ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)); pinning: ${SERVER_PIN[*]:-none} / ${LOAD_PIN[*]:-none}; ${DURATION}s runs"

# --- peers: found in the cache (bench/peers/*/setup.sh builds them), else skipped -----------
FASTAPI_VENV="$BENCH_CACHE/venv"
LOCO_BIN="$BENCH_CACHE/loco/app/target/release/bench_notes-cli"
if [[ "$PEERS" -eq 1 ]]; then
    bash "$BENCH_DIR/peers/fastapi/setup.sh"
    [[ -x "$LOCO_BIN" ]] || log "loco peer not built ($LOCO_BIN): run bench/peers/loco/setup.sh once (about 25 min); skipping it"
fi

want() { [[ ",$ONLY," == *",$1,"* ]]; }

start_bare_axum() {
    local port
    port="$(free_port)"
    BARE_AXUM_ADDR="127.0.0.1:$port" "${SERVER_PIN[@]}" "$BARE_AXUM_BIN" >"$WORK/bare-axum.log" 2>&1 &
    BARE_PID=$!
    STARTED_PIDS+=("$BARE_PID")
    BARE_URL="http://127.0.0.1:$port"
    wait_http "$BARE_URL/health" "$BARE_PID" "$WORK/bare-axum.log"
}

# start_fastapi DB: uvicorn, one worker, on the server CPU. Sets FASTAPI_PID, FASTAPI_URL.
start_fastapi() {
    local port
    port="$(free_port)"
    (cd "$BENCH_DIR/peers/fastapi" && exec env "DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/$1" \
        "${SERVER_PIN[@]}" "$FASTAPI_VENV/bin/uvicorn" app:app --host 127.0.0.1 --port "$port" \
        --workers 1 --loop uvloop --http httptools --no-access-log --log-level warning) >"$WORK/fastapi.log" 2>&1 &
    FASTAPI_PID=$!
    STARTED_PIDS+=("$FASTAPI_PID")
    FASTAPI_URL="http://127.0.0.1:$port"
    wait_http "$FASTAPI_URL/health" "$FASTAPI_PID" "$WORK/fastapi.log"
}

# start_loco NAME DATABASE_URL: the scaffolded loco app in production mode, on the server CPU.
# Registers and logs in a user, creates a note; sets LOCO_PID, LOCO_URL, LOCO_TOKEN, LOCO_NOTE.
start_loco() {
    local name="$1" dburl="$2" port dir
    dir="$WORK/$name"
    mkdir -p "$dir"
    port="$(free_port)"
    # loco's production configuration, as palisade runs with its defaults; it refuses to start
    # without HOST and the MAILER_* settings, and its JWT secret must be base64 (or no token is
    # ever issued: login answers 401). No SMTP server: the welcome mail of the
    # registration fails in the background, which the benchmark ignores.
    (cd "$BENCH_CACHE/loco/app" && exec env "DATABASE_URL=$dburl" "PORT=$port" BINDING=127.0.0.1 \
        "HOST=http://127.0.0.1:$port" JWT_SECRET=YmVuY2gtbG9jby1qd3Qtc2VjcmV0LTAxMjM0NTY3ODk= \
        MAILER_HOST=127.0.0.1 MAILER_PORT=9 MAILER_USER=bench MAILER_PASSWORD=bench \
        "${SERVER_PIN[@]}" "$LOCO_BIN" start -e production) >"$dir/server.log" 2>&1 &
    LOCO_PID=$!
    STARTED_PIDS+=("$LOCO_PID")
    LOCO_URL="http://127.0.0.1:$port"
    wait_http "$LOCO_URL/_ping" "$LOCO_PID" "$dir/server.log"
    curl -fsS -o /dev/null -H 'Content-Type: application/json' \
        -d '{"name":"bench","email":"bench@example.com","password":"bench-password-1"}' "$LOCO_URL/api/auth/register"
    LOCO_TOKEN="$(curl -fsS -H 'Content-Type: application/json' \
        -d '{"email":"bench@example.com","password":"bench-password-1"}' "$LOCO_URL/api/auth/login" | jq -r .token)"
    LOCO_NOTE="$(curl -fsS -H "Authorization: Bearer $LOCO_TOKEN" -H 'Content-Type: application/json' \
        -d '{"title":"bench note"}' "$LOCO_URL/api/notes" | jq -r .id)"
    # The read must refuse a request without the token, or it would not be the same work.
    [[ "$(curl -s -o /dev/null -w '%{http_code}' "$LOCO_URL/api/notes/$LOCO_NOTE")" == 401 ]] ||
        die "loco's notes read answers without a token: the scaffold was not patched for JWT auth"
}

# --- (a) /health: palisade's full default stack vs bare axum, twice, alternating -------------
if want health; then
    log "(a) /health: palisade (default stack, SQLite) vs bare axum"
    start_palisade health "$(sqlite_env health)"
    PAL_HEALTH_PID=$SERVER_PID
    PAL_HEALTH_URL=$SERVER_URL
    start_bare_axum
    memory_idle "bare-axum" "$BARE_PID"
    if [[ -n "$BASELINE_BIN" ]]; then
        PALISADE_BIN="$BASELINE_BIN" start_palisade health-baseline "$(sqlite_env health-baseline)"
        BASE_HEALTH_URL=$SERVER_URL
    fi
    for _ in 1 2; do
        measure health palisade 64 "$PAL_HEALTH_URL/health"
        measure health bare-axum 64 "$BARE_URL/health"
        [[ -z "$BASELINE_BIN" ]] || measure health baseline 64 "$BASE_HEALTH_URL/health"
    done
    memory_peak "bare-axum" "$BARE_PID"
    pair health palisade bare-axum 64
    [[ -z "$BASELINE_BIN" ]] || pair health palisade baseline 64
    stop_pid "$PAL_HEALTH_PID"
    stop_pid "$BARE_PID"
    [[ -z "$BASELINE_BIN" ]] || stop_pid "$SERVER_PID"
fi

# versus_peer SCENARIO PALISADE_URL PALISADE_TOKEN PEER PEER_NAME PEER_PID PEER_URL PEER_TOKEN: the same
# read on palisade and on a running peer, alternating, twice at c=16 and c=64; the peer's idle and
# peak memory; both pairs; then the peer is stopped.
versus_peer() {
    local scenario=$1 pal_url=$2 pal_token=$3 peer=$4 name=$5 pid=$6 peer_url=$7 peer_token=$8 c
    memory_idle "$name" "$pid"
    for _ in 1 2; do
        for c in 16 64; do
            measure "$scenario" palisade "$c" "$pal_url" "$pal_token"
            measure "$scenario" "$peer" "$c" "$peer_url" "$peer_token"
        done
    done
    memory_peak "$name" "$pid"
    pair "$scenario" palisade "$peer" 16
    pair "$scenario" palisade "$peer" 64
    stop_pid "$pid"
}

# --- (b) authenticated tenant read on SQLite, c = 1, 16, 64; loco on SQLite alternating -------
if want sqlite; then
    log "(b) GET /api/v1/todos/{id} on SQLite"
    start_palisade read-sqlite "$(sqlite_env read-sqlite)" "${NO_LIMITS[@]}"
    memory_idle "palisade (SQLite)" "$SERVER_PID"
    TOKEN_SQLITE="$(palisade_token)"
    TODO_SQLITE="$(seed_todos "$SERVER_URL" "$TOKEN_SQLITE" 20)"
    PAL_SQLITE_URL="$SERVER_URL/api/v1/todos/$TODO_SQLITE"
    PAL_SQLITE_PID=$SERVER_PID
    for c in 1 16 64; do
        measure read-sqlite palisade "$c" "$PAL_SQLITE_URL" "$TOKEN_SQLITE"
    done
    memory_peak "palisade (SQLite)" "$PAL_SQLITE_PID"
    pair read-sqlite palisade palisade 64 1
    # The same scaling with nothing pinned: the server may use every CPU of the machine (sharing
    # them with wrk), which is what "reads scale on a machine with two or more cores" asks of it.
    log "(b) SQLite read scaling, the server and wrk on every CPU"
    ONE_CPU=("${SERVER_PIN[@]}")
    SERVER_PIN=()
    start_palisade read-sqlite-all-cpus "$(sqlite_env read-sqlite-all-cpus)" "${NO_LIMITS[@]}"
    SERVER_PIN=("${ONE_CPU[@]}")
    ALL_TOKEN="$(palisade_token)"
    ALL_URL="$SERVER_URL/api/v1/todos/$(seed_todos "$SERVER_URL" "$ALL_TOKEN" 20)"
    for _ in 1 2; do
        for c in 1 64; do
            measure read-sqlite-all-cpus palisade "$c" "$ALL_URL" "$ALL_TOKEN" unpinned
        done
    done
    pair read-sqlite-all-cpus palisade palisade 64 1
    stop_pid "$SERVER_PID"
    if [[ -n "$BASELINE_BIN" ]]; then
        PALISADE_BIN="$BASELINE_BIN" start_palisade read-sqlite-baseline "$(sqlite_env read-sqlite-baseline)" "${NO_LIMITS[@]}"
        BASE_TOKEN="$(PALISADE_BIN="$BASELINE_BIN" palisade_token)"
        BASE_URL="$SERVER_URL/api/v1/todos/$(seed_todos "$SERVER_URL" "$BASE_TOKEN" 20)"
        # Labelled apart from the scaling runs above, so that the report pairs only runs made
        # back to back (it pairs a label's runs in order).
        for _ in 1 2; do
            measure read-sqlite this-build 64 "$PAL_SQLITE_URL" "$TOKEN_SQLITE"
            measure read-sqlite baseline 64 "$BASE_URL" "$BASE_TOKEN"
        done
        pair read-sqlite this-build baseline 64
        stop_pid "$SERVER_PID"
    fi
    if [[ "$PEERS" -eq 1 && -x "$LOCO_BIN" ]]; then
        log "(e) palisade vs loco on SQLite, alternating"
        start_loco loco-sqlite "sqlite://$WORK/loco-sqlite/loco.sqlite?mode=rwc"
        versus_peer loco-sqlite "$PAL_SQLITE_URL" "$TOKEN_SQLITE" \
            loco "loco (SQLite)" "$LOCO_PID" "$LOCO_URL/api/notes/$LOCO_NOTE" "$LOCO_TOKEN"
    fi
    stop_pid "$PAL_SQLITE_PID"
fi

# --- (b) the same read on PostgreSQL + Redis; FastAPI and loco on PostgreSQL alternating ------
if want pg; then
    # Rate limits on (never reached), as in production and as issue #18's comparison with the
    # peers asks: the request's one Redis script also reads the tenant's membership epoch.
    log "(b) GET /api/v1/todos/{id} on PostgreSQL + Redis, rate limits on"
    pg_redis_env
    PG_DB=$LAST_DB
    start_palisade read-pg "${PG_REDIS_ENV[@]}" "${HIGH_LIMITS[@]}"
    memory_idle "palisade (PostgreSQL + Redis)" "$SERVER_PID"
    TOKEN_PG="$(palisade_token)"
    PAL_PG_URL="$SERVER_URL/api/v1/todos/$(seed_todos "$SERVER_URL" "$TOKEN_PG" 20)"
    PAL_PG_PID=$SERVER_PID
    for c in 1 16 64; do
        measure read-pg palisade "$c" "$PAL_PG_URL" "$TOKEN_PG"
    done
    memory_peak "palisade (PostgreSQL + Redis)" "$PAL_PG_PID"
    pair read-pg palisade palisade 64 1
    if [[ -n "$BASELINE_BIN" ]]; then
        pg_redis_env
        PALISADE_BIN="$BASELINE_BIN" start_palisade read-pg-baseline "${PG_REDIS_ENV[@]}" "${HIGH_LIMITS[@]}"
        BASE_TOKEN="$(PALISADE_BIN="$BASELINE_BIN" palisade_token)"
        BASE_URL="$SERVER_URL/api/v1/todos/$(seed_todos "$SERVER_URL" "$BASE_TOKEN" 20)"
        for _ in 1 2 3; do
            measure read-pg this-build 64 "$PAL_PG_URL" "$TOKEN_PG"
            measure read-pg baseline 64 "$BASE_URL" "$BASE_TOKEN"
        done
        pair read-pg this-build baseline 64
        stop_pid "$SERVER_PID"
    fi
    if [[ "$PEERS" -eq 1 ]]; then
        log "(e) palisade vs FastAPI on the same PostgreSQL database, alternating"
        start_fastapi "$PG_DB"
        versus_peer fastapi-pg "$PAL_PG_URL" "$TOKEN_PG" \
            fastapi "FastAPI (uvicorn, 1 worker)" "$FASTAPI_PID" "$FASTAPI_URL/api/v1/todos/${PAL_PG_URL##*/}" "$TOKEN_PG"
        if [[ -x "$LOCO_BIN" ]]; then
            log "(e) palisade vs loco on PostgreSQL, alternating"
            new_pg_db
            start_loco loco-pg "$PG_URL/$NEW_DB"
            versus_peer loco-pg "$PAL_PG_URL" "$TOKEN_PG" \
                loco "loco (PostgreSQL)" "$LOCO_PID" "$LOCO_URL/api/notes/$LOCO_NOTE" "$LOCO_TOKEN"
        fi
    fi
    stop_pid "$PAL_PG_PID"
fi

# --- (c) the Redis limiter vs the in-process limiter (PostgreSQL + Redis for both) ------------
if want limiter; then
    log "(c) rate limiter: Redis vs in-process, limits on and never reached"
    pg_redis_env
    # The membership cache needs the Redis limiter's script; off in both, so that the pair
    # measures the limiter alone.
    start_palisade limiter-redis "${PG_REDIS_ENV[@]}" "${HIGH_LIMITS[@]}" PALISADE_RATE_LIMIT__BACKEND=redis \
        PALISADE_TENANCY__MEMBERSHIP_CACHE_TTL=0s
    REDIS_LIM_PID=$SERVER_PID
    TOKEN_LIM_R="$(palisade_token)"
    URL_LIM_R="$SERVER_URL/api/v1/todos/$(seed_todos "$SERVER_URL" "$TOKEN_LIM_R" 5)"
    pg_redis_env
    start_palisade limiter-memory "${PG_REDIS_ENV[@]}" "${HIGH_LIMITS[@]}" PALISADE_RATE_LIMIT__BACKEND=memory \
        PALISADE_TENANCY__MEMBERSHIP_CACHE_TTL=0s
    MEM_LIM_PID=$SERVER_PID
    TOKEN_LIM_M="$(palisade_token)"
    URL_LIM_M="$SERVER_URL/api/v1/todos/$(seed_todos "$SERVER_URL" "$TOKEN_LIM_M" 5)"
    for _ in 1 2; do
        measure limiter redis-limiter 64 "$URL_LIM_R" "$TOKEN_LIM_R"
        measure limiter memory-limiter 64 "$URL_LIM_M" "$TOKEN_LIM_M"
    done
    pair limiter redis-limiter memory-limiter 64
    stop_pid "$REDIS_LIM_PID"
    stop_pid "$MEM_LIM_PID"
fi

# --- (d) the filtered list at 1k, 10k and 100k todos, both backends ---------------------------
if want list; then
    log "(d) GET /api/v1/todos?done=true at 1k, 10k, 100k todos"
    list_scenario() {
        local backend="$1" topup="$2" token n
        token="$(palisade_token)"
        seed_todos "$SERVER_URL" "$token" 1 >/dev/null
        for n in 1000 10000 100000; do
            "$topup" "$n"
            measure "list-$backend" "${n}-todos" 16 "$SERVER_URL/api/v1/todos?done=true" "$token"
        done
        pair "list-$backend" 10000-todos 1000-todos 16
        pair "list-$backend" 100000-todos 1000-todos 16
    }
    topup_sqlite() { bulk_todos_sqlite "$WORK/list-sqlite/palisade.db" "$1"; }
    start_palisade list-sqlite "$(sqlite_env list-sqlite)" "${NO_LIMITS[@]}"
    list_scenario sqlite topup_sqlite
    stop_pid "$SERVER_PID"
    pg_redis_env
    LIST_DB=$LAST_DB
    topup_pg() { bulk_todos_pg "$LIST_DB" "$1"; }
    start_palisade list-pg "${PG_REDIS_ENV[@]}" "${NO_LIMITS[@]}"
    list_scenario pg topup_pg
    stop_pid "$SERVER_PID"
fi

REPORT="$WORK/report.md"
{
    echo "## palisade benchmark ($(date -u +%Y-%m-%dT%H:%MZ), ${DURATION}s runs, $(nproc) CPUs, $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown))"
    echo
    python3 "$BENCH_DIR/report.py" "$RESULTS" "$PAIRS" "$MEMORY"
} >"$REPORT"
cat "$REPORT"
[[ -z "$OUT" ]] || cp "$REPORT" "$OUT"
assert_all_succeeded
