#!/usr/bin/env bash
# The resilience suite (docs/architecture.md, issue "Hostile edges"): Redis restarted, PostgreSQL
# backends terminated, an idle-socket flood, a SIGTERM drain and the JWKS provider down, each
# under load against the real binary, each reporting requests, failures by status and worst
# latency. Exit status 1 when any scenario fails.
#
#   bash bench/resilience.sh                 # builds the release binary, runs every scenario
#   bash bench/resilience.sh idle-flood      # one scenario
#
# Needs PostgreSQL (PALISADE_TEST_DATABASE_URL: an admin URL that may create databases; default
# postgres://postgres@127.0.0.1:5432/postgres), and the redis-server, psql, openssl and python3
# executables. Redis is a private redis-server on a free port, started and stopped here.
# PALISADE_BIN skips the build and uses that binary.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
for tool in python3 psql openssl redis-server; do
    command -v "$tool" >/dev/null 2>&1 || {
        printf 'resilience: %s is not installed\n' "$tool" >&2
        exit 1
    }
done
bin="${PALISADE_BIN:-}"
if [ -n "$bin" ] && [[ "$bin" != /* ]]; then
    # The suite runs the binary from its own working directories: make a relative path absolute.
    bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
fi
if [ -z "$bin" ]; then
    (cd "$repo" && nice -n 10 cargo build --release -p palisade-api --bin palisade)
    bin="$repo/target/release/palisade"
fi
exec python3 "$repo/bench/resilience.py" --bin "$bin" "$@"
