#!/usr/bin/env bash
# Production mode on one machine, end to end, as README's "Try production mode locally" describes:
# the local OpenID Connect issuer (deploy/dev-issuer, node-oidc-provider), PostgreSQL with row-level
# security through a non-owner login role, Redis, and palisade with PALISADE_ENVIRONMENT=production
# trusting that issuer. An operator's token creates tenant `acme`; the `acme-ci` client's token
# creates and lists a todo. Run by .ci/run's smoke group, so the recipe cannot rot.
#
#   PALISADE_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
#   PALISADE_TEST_REDIS_URL=redis://127.0.0.1:6379 bash .ci/dev-issuer.sh
#
# Needs node and npm, psql, curl and python3; PALISADE_BIN (default target/debug/palisade).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib/server.sh
source "$repo/.ci/lib/server.sh"
admin="${PALISADE_TEST_DATABASE_URL:?needs PALISADE_TEST_DATABASE_URL (a PostgreSQL admin URL)}"
redis="${PALISADE_TEST_REDIS_URL:?needs PALISADE_TEST_REDIS_URL}"

die() {
	printf 'dev-issuer: %s\n' "$*" >&2
	exit 1
}

workdir="$(mktemp -d "${TMPDIR:-/tmp}/palisade-issuer.XXXXXX")"
database="palisade_issuer_$RANDOM$RANDOM"
issuer_pid=""
# The admin URL with another database (and optionally another user and password).
url_for() {
	python3 - "$admin" "$@" <<-'PY'
		import sys, urllib.parse as u
		url = u.urlsplit(sys.argv[1])
		netloc = url.netloc
		if len(sys.argv) > 3:
		    host = netloc.rsplit("@", 1)[-1]
		    netloc = f"{sys.argv[3]}:{sys.argv[4]}@{host}"
		print(u.urlunsplit((url.scheme, netloc, "/" + sys.argv[2], url.query, url.fragment)))
	PY
}
cleanup() {
	server_stop_all
	[ -z "$issuer_pid" ] || kill "$issuer_pid" 2>/dev/null || true
	psql "$admin" -X -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1 || true
	rm -rf "$workdir"
}
trap cleanup EXIT

echo "dev-issuer: installing the issuer (npm ci)"
npm ci --prefix "$repo/deploy/dev-issuer" --no-audit --no-fund --loglevel=error >/dev/null
port="$(free_port)"
issuer="http://127.0.0.1:$port"
PORT="$port" node "$repo/deploy/dev-issuer/issuer.mjs" >"$workdir/issuer.log" 2>&1 &
issuer_pid=$!
for _ in $(seq 50); do
	http_ok "$issuer/.well-known/openid-configuration" && break
	sleep 0.2
done
http_ok "$issuer/.well-known/openid-configuration" || { cat "$workdir/issuer.log" >&2; die "the issuer did not start"; }

echo "dev-issuer: database $database, migrated by its owner; the server logs in as a member of palisade_app"
psql "$admin" -X -qc "CREATE DATABASE $database" >/dev/null
owner_url="$(url_for "$database")"
(cd "$workdir" && PALISADE_ENVIRONMENT=development PALISADE_DATABASE__URL="$owner_url" "$PALISADE_BIN" migrate)
psql "$owner_url" -X -qc "DO \$\$ BEGIN CREATE ROLE palisade_issuer_app LOGIN PASSWORD 'issuer-smoke' IN ROLE palisade_app; EXCEPTION WHEN duplicate_object THEN NULL; END \$\$" >/dev/null
app_url="$(url_for "$database" palisade_issuer_app issuer-smoke)"

server_start "$workdir/server" \
	PALISADE_ENVIRONMENT=production \
	PALISADE_DATABASE__URL="$app_url" \
	PALISADE_REDIS__URL="$redis" \
	PALISADE_REDIS__KEY_PREFIX="palisade-issuer-$RANDOM" \
	PALISADE_AUTH__ISSUER="$issuer" \
	PALISADE_AUTH__AUDIENCE="urn:palisade:api" ||
	die "palisade did not start in production mode"

token_for() {
	curl -fsS -u "$1" -d grant_type=client_credentials --data-urlencode "scope=$2" "$issuer/token" |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}
# call METHOD PATH TOKEN EXPECTED_STATUS [JSON]: the body on stdout, or a failure naming the answer.
call() {
	local status
	status="$(curl -sS -o "$workdir/body" -w '%{http_code}' -X "$1" "$SERVER_URL$2" \
		-H "authorization: Bearer $3" -H 'content-type: application/json' ${5:+--data "$5"})"
	[ "$status" = "$4" ] || die "$1 $2 answered $status, expected $4: $(cat "$workdir/body")"
	cat "$workdir/body"
}

operator="$(token_for operator:operator-dev-secret platform:admin)"
call POST /api/v1/tenants "$operator" 201 '{"slug": "acme", "name": "Acme"}' >/dev/null
ci="$(token_for acme-ci:acme-dev-secret 'todos:read todos:write')"
call POST /api/v1/todos "$ci" 201 '{"title": "from the local issuer"}' >/dev/null
listed="$(call GET /api/v1/todos "$ci" 200)"
python3 -c 'import json, sys; items = json.loads(sys.argv[1])["items"]; assert [i["title"] for i in items] == ["from the local issuer"], items' "$listed" ||
	die "the todo list is not what was written: $listed"
call GET /api/v1/todos "" 401 >/dev/null
echo "dev-issuer: production mode with the local issuer works (tenant created, todo written and read)"
server_stop
