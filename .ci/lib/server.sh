# shellcheck shell=bash
# shellcheck disable=SC2034 # SERVER_* are read by the scripts that source this file
# The one way the repository's scripts run palisade (k6/run-smoke.sh,
# observability/check_live_metrics.sh, .ci/schemathesis.sh, bench/lib.sh): the built server in its
# own directory with the given environment, on a free 127.0.0.1 port, waited for until /ready
# answers 200, and stopped by its PID (never by name). Sourced, not run; builds nothing.
#
#   server_start DIR [VAR=VALUE ...]
#       Runs `$PALISADE_BIN serve` in DIR (created) with PALISADE_ENVIRONMENT=development and
#       PALISADE_SERVER__ADDR=127.0.0.1:<free port>, then the given variables (which win), on top
#       of the caller's environment. Logs to DIR/server.log. Sets SERVER_PID, SERVER_URL,
#       SERVER_DIR, SERVER_ENV (the variables, for server_run) and SERVER_LOG. Returns non-zero
#       (with the end of the log on stderr) if the server exits or /ready is not 200 within
#       SERVER_STARTUP_TIMEOUT seconds (default 30). SERVER_PREFIX (an array, e.g.
#       (taskset -c 0)) is put before the binary.
#   server_run ARGS...      the binary with ARGS, in SERVER_DIR with SERVER_ENV (`server_run token …`
#                           mints a token that matches the running server's configuration)
#   server_stop [SECONDS]   SIGTERM to the last server started, waits up to SECONDS (default 30),
#                           then SIGKILL; returns the server's exit status (137 when killed)
#   server_stop_all         every server started here that still runs (for EXIT traps)
#   server_show_log         the last 40 lines of the last server's log, on stderr
#   free_port               a free TCP port on 127.0.0.1

: "${PALISADE_BIN:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/target/debug/palisade}"
[[ "$PALISADE_BIN" == /* ]] || PALISADE_BIN="$PWD/$PALISADE_BIN"
SERVER_PIDS=()
if ! declare -p SERVER_PREFIX >/dev/null 2>&1; then
	SERVER_PREFIX=()
fi

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

server_show_log() {
	printf -- '--- %s (last 40 lines) ---\n' "$SERVER_LOG" >&2
	tail -n 40 "$SERVER_LOG" >&2 || true
	printf -- '---\n' >&2
}

# http_ok URL: whether URL answers 200 (python3, which every caller needs anyway for free_port).
http_ok() {
	python3 - "$1" <<-'PY' 2>/dev/null
		import sys, urllib.request
		with urllib.request.urlopen(sys.argv[1], timeout=2) as response:
		    sys.exit(0 if response.status == 200 else 1)
	PY
}

server_start() {
	local port deadline
	[ -x "$PALISADE_BIN" ] || {
		printf 'server.sh: no executable at %s: run "cargo build -p palisade-api" first, or set PALISADE_BIN\n' "$PALISADE_BIN" >&2
		return 1
	}
	SERVER_DIR="$1"
	shift
	mkdir -p "$SERVER_DIR"
	port="$(free_port)"
	SERVER_URL="http://127.0.0.1:$port"
	SERVER_LOG="$SERVER_DIR/server.log"
	SERVER_ENV=(PALISADE_ENVIRONMENT=development "PALISADE_SERVER__ADDR=127.0.0.1:$port" "$@")
	(cd "$SERVER_DIR" && exec env "${SERVER_ENV[@]}" "${SERVER_PREFIX[@]}" "$PALISADE_BIN" serve) >"$SERVER_LOG" 2>&1 &
	SERVER_PID=$!
	SERVER_PIDS+=("$SERVER_PID")
	deadline=$((SECONDS + ${SERVER_STARTUP_TIMEOUT:-30}))
	until http_ok "$SERVER_URL/ready"; do
		if ! kill -0 "$SERVER_PID" 2>/dev/null; then
			server_show_log
			printf 'server.sh: the server exited during startup\n' >&2
			return 1
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			server_show_log
			printf 'server.sh: /ready did not answer 200 within %ss\n' "${SERVER_STARTUP_TIMEOUT:-30}" >&2
			return 1
		fi
		sleep 0.2
	done
}

server_run() {
	(cd "$SERVER_DIR" && env "${SERVER_ENV[@]}" "$PALISADE_BIN" "$@")
}

server_stop() {
	local pid="$SERVER_PID" deadline status=0
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	deadline=$((SECONDS + ${1:-30}))
	while kill -0 "$pid" 2>/dev/null; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			printf 'server.sh: the server did not exit within %ss of SIGTERM; killing it\n' "${1:-30}" >&2
			kill -KILL "$pid" 2>/dev/null || true
			break
		fi
		sleep 0.2
	done
	wait "$pid" 2>/dev/null || status=$?
	SERVER_PID=""
	return "$status"
}

server_stop_all() {
	local pid
	for pid in "${SERVER_PIDS[@]}"; do
		if kill -0 "$pid" 2>/dev/null; then
			kill -TERM "$pid" 2>/dev/null || true
			wait "$pid" 2>/dev/null || true
		fi
	done
}
