#!/usr/bin/env bash
# Starts the built server in development (temporary directory, free port, so /docs is on), mints
# a development token, runs .ci/api-docs-browser.cjs in headless Chromium, and stops the server
# by its PID.
#
#   cargo build -p palisade-api && bash .ci/api-docs.sh
#
# Environment: PALISADE_BIN (default target/debug/palisade), CHROMIUM (default /usr/bin/chromium),
# NODE_PATH where playwright-core is installed (.ci/run puts it in its tool cache).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${PALISADE_BIN:-$repo/target/debug/palisade}"
[[ "$bin" == /* ]] || bin="$PWD/$bin"
[ -x "$bin" ] || { echo "api-docs: no executable at $bin (cargo build -p palisade-api)" >&2; exit 1; }

workdir="$(mktemp -d "${TMPDIR:-/tmp}/palisade-docs.XXXXXX")"
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
base_url="http://127.0.0.1:$port"
export PALISADE_ENVIRONMENT=development
export PALISADE_SERVER__ADDR="127.0.0.1:$port"
(cd "$workdir" && exec "$bin" serve) >"$workdir/server.log" 2>&1 &
server_pid=$!
deadline=$((SECONDS + 30))
until (cd "$workdir" && "$bin" healthcheck --url "$base_url/health") >/dev/null 2>&1; do
	if ! kill -0 "$server_pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
		tail -n 40 "$workdir/server.log" >&2
		echo "api-docs: the server did not come up" >&2
		exit 1
	fi
	sleep 0.2
done
token="$(cd "$workdir" && "$bin" token --tenant demo --sub api-docs --scopes todos:read)"
# The token goes through the environment, not the command line (where ps would show it).
BASE_URL="$base_url" TOKEN="$token" node "$repo/.ci/api-docs-browser.cjs"
