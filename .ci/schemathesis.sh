#!/usr/bin/env bash
# Property-based API tests: schemathesis generates requests from the server's own OpenAPI document
# (/api/v1/openapi.json) and checks every response against it (all checks: no 5xx, documented
# status codes, content types, headers and schemas, invalid input rejected, valid input accepted,
# deleted resources gone, auth not ignored, ...).
#
#   bash .ci/schemathesis.sh [sqlite|postgres|all]      (default: all)
#
# For each backend it starts the real server (target/debug/palisade, with .ci/lib/server.sh) on a
# free loopback port in development mode with rate limits off, on its own fresh database: a new SQLite file, or a new
# PostgreSQL database migrated by the admin (the owner) and served through a non-owner login role,
# with its own Redis key prefix. It mints development tokens with `palisade token`, creates a
# tenant and a few todos, then runs schemathesis three times: as a tenant admin over every
# tenant-scoped operation, as a platform admin over /api/v1/tenants, and last as the tenant admin
# over /api/v1/auth/revoke (which may revoke the token that calls it). The document's links from
# each read to its revalidation (`If-None-Match` with the ETag received) drive schemathesis's
# stateful phase, and the script fails unless the server answered some requests with 304.
#
# Failures already accepted are recorded in .ci/schemathesis-baseline.json (schemathesis
# --baseline): they are printed every run, and only a failure not in the baseline fails this
# script. SCHEMATHESIS_BASELINE_UPDATE=1 merges this run's failures into the file;
# SCHEMATHESIS_BASELINE_PRUNE=1 also drops the entries this run no longer reproduces (after a fix).
#
# Environment:
#   PALISADE_BIN                  server binary (default target/debug/palisade; built if missing)
#   PALISADE_TEST_DATABASE_URL    admin URL for the postgres backend (may create databases, roles)
#   PALISADE_TEST_REDIS_URL       Redis for the postgres backend
#   SCHEMATHESIS_MAX_EXAMPLES     test cases per operation and phase (default 25)
#   SCHEMATHESIS_REPORT_DIR       JUnit reports (default target/schemathesis)
# Needs schemathesis (pinned in .ci/requirements.txt), psql for the postgres backend, python3.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
backends="${1:-all}"
# shellcheck source-path=SCRIPTDIR source=lib/server.sh
source "$repo/.ci/lib/server.sh"
max_examples="${SCHEMATHESIS_MAX_EXAMPLES:-25}"
report_dir="${SCHEMATHESIS_REPORT_DIR:-$repo/target/schemathesis}"
baseline="$repo/.ci/schemathesis-baseline.json"

die() {
	printf 'schemathesis.sh: %s\n' "$*" >&2
	exit 1
}

command -v schemathesis >/dev/null 2>&1 ||
	die "schemathesis is not installed: pip install -r .ci/requirements.txt (in a venv; .ci/run does this)"
if [ ! -x "$PALISADE_BIN" ]; then
	echo "schemathesis.sh: building the server"
	nice -n 10 cargo build --locked -p palisade-api
fi
mkdir -p "$report_dir"

workdir="$(mktemp -d "${TMPDIR:-/tmp}/palisade-schemathesis.XXXXXX")"
database=""
drop_database() {
	if [ -n "$database" ]; then
		psql "$PALISADE_TEST_DATABASE_URL" -X -q -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1 || true
	fi
	database=""
}
cleanup() {
	server_stop_all
	drop_database
	rm -rf "$workdir"
}
trap cleanup EXIT

# with_database URL DATABASE [USER PASSWORD]: URL with its database (and credentials) replaced.
with_database() {
	python3 - "$@" <<-'EOF'
		import sys
		from urllib.parse import quote, urlsplit, urlunsplit
		url, database, *user = sys.argv[1:]
		parts = urlsplit(url)
		netloc = parts.netloc
		if user:
		    host = netloc.rsplit("@", 1)[-1]
		    netloc = f"{quote(user[0])}:{quote(user[1])}@{host}"
		print(urlunsplit((parts.scheme, netloc, "/" + database, parts.query, "")))
	EOF
}

# call METHOD PATH TOKEN [JSON]: an API request that must succeed; prints the body.
call() {
	python3 - "$base_url" "$@" <<-'EOF'
		import json, sys, urllib.request
		base, method, path, token, *body = sys.argv[1:]
		data = body[0].encode() if body else None
		request = urllib.request.Request(base + path, data=data, method=method, headers={
		    "authorization": f"Bearer {token}", "content-type": "application/json"})
		with urllib.request.urlopen(request, timeout=10) as response:
		    print(response.read().decode())
	EOF
}

# run_schemathesis NAME TOKEN FILTER...: one schemathesis run; its exit status.
run_schemathesis() {
	local name=$1 token=$2
	shift 2
	local config="$workdir/schemathesis.toml"
	# The token reaches schemathesis through the environment, never the command line: schemathesis
	# expands ${VAR} in its configuration file.
	# shellcheck disable=SC2016
	printf '[headers]\nAuthorization = "Bearer ${SCHEMATHESIS_TOKEN}"\n' >"$config"
	# A conditional write answers 412 to an `If-Match` that is well formed but not the current
	# ETag (documented on the operation): a schema cannot say which ETag is current, so for these
	# operations 412 is an acceptance of the request's shape, like 404 for an unknown id.
	cat >>"$config" <<-'TOML'
		[[operations]]
		include-name = ["PATCH /api/v1/todos/{id}", "DELETE /api/v1/todos/{id}", "DELETE /api/v1/webhooks/{id}", "POST /api/v1/webhooks/{id}/rotate-secret"]
		checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "412", "429", "5xx"]
		# A retry with the same Idempotency-Key and a different body is refused with the documented
		# 422 (the key is bound to the first body); schemathesis reuses generated keys across bodies.
		[[operations]]
		include-name = ["POST /api/v1/todos"]
		checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
		# A webhook URL is refused (422 webhook-url-refused) when it is no http(s) URL or names an
		# address that is not public, and an API key's expiry must be in the future: rules of the
		# value a schema cannot state.
		[[operations]]
		include-name = ["POST /api/v1/webhooks", "PATCH /api/v1/webhooks/{id}", "POST /api/v1/api-keys"]
		checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "410", "412", "422", "429", "5xx"]
		# A tenant a platform admin deleted answers 410 to the operations on it (docs/data-rights.md):
		# like 404 for an unknown id, an acceptance of the request's shape.
		[[operations]]
		include-name = ["POST /api/v1/tenants/{id}/suspend", "POST /api/v1/tenants/{id}/reactivate", "DELETE /api/v1/tenants/{id}", "GET /api/v1/tenants/{id}", "POST /api/v1/tenants/{id}/restore"]
		checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "410", "429", "5xx"]
		# Deleting a tenant is a soft delete with a grace period: the platform admin still reads it
		# (status `deleted`) to restore it, so "deleted resource still available" does not apply.
		[[operations]]
		include-name = ["DELETE /api/v1/tenants/{id}"]
		checks.use_after_free.enabled = false
	TOML
	local args=(run "$base_url/api/v1/openapi.json" --checks all --max-examples "$max_examples"
		--generation-deterministic --workers 1 --no-color
		--report junit --report-junit-path "$report_dir/$name.xml" "$@")
	if [ -n "${SCHEMATHESIS_BASELINE_PRUNE:-}" ]; then
		args+=(--baseline "$baseline" --baseline-update --baseline-prune)
	elif [ -n "${SCHEMATHESIS_BASELINE_UPDATE:-}" ]; then
		args+=(--baseline "$baseline" --baseline-update)
	elif [ -f "$baseline" ]; then
		args+=(--baseline "$baseline")
	fi
	echo "schemathesis.sh: $name"
	SCHEMATHESIS_TOKEN="$token" schemathesis --config-file "$config" "${args[@]}"
}

run_backend() {
	local backend=$1 status=0 platform tenant slug
	export PALISADE_ENVIRONMENT=development
	unset DATABASE_URL REDIS_URL
	if [ "$backend" = postgres ]; then
		[ -n "${PALISADE_TEST_DATABASE_URL:-}" ] && [ -n "${PALISADE_TEST_REDIS_URL:-}" ] ||
			die "the postgres backend needs PALISADE_TEST_DATABASE_URL and PALISADE_TEST_REDIS_URL"
		database="palisade_st_$(python3 -c 'import uuid; print(uuid.uuid4().hex)')"
		psql "$PALISADE_TEST_DATABASE_URL" -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $database" >/dev/null
		DATABASE_URL="$(with_database "$PALISADE_TEST_DATABASE_URL" "$database")" "$PALISADE_BIN" migrate
		# The server connects as a non-owner login role, as in production (row-level security).
		psql "$(with_database "$PALISADE_TEST_DATABASE_URL" "$database")" -X -q -v ON_ERROR_STOP=1 <<-'EOF' >/dev/null
			DO $$ BEGIN CREATE ROLE palisade_schemathesis LOGIN IN ROLE palisade_app;
			EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
			ALTER ROLE palisade_schemathesis PASSWORD 'schemathesis';
		EOF
		export DATABASE_URL
		DATABASE_URL="$(with_database "$PALISADE_TEST_DATABASE_URL" "$database" palisade_schemathesis schemathesis)"
		export REDIS_URL="$PALISADE_TEST_REDIS_URL"
		# The app role may not migrate (the owner did, above).
		export PALISADE_DATABASE__AUTO_MIGRATE=false
		export PALISADE_REDIS__KEY_PREFIX="schemathesis-$database"
	fi
	server_start "$workdir/$backend" PALISADE_RATE_LIMIT__ENABLED=false || die "the $backend server did not start"
	base_url="$SERVER_URL"
	echo "schemathesis.sh: $backend server on $base_url"

	slug="schemathesis"
	platform="$(server_run token --sub schemathesis-operator --scopes platform:admin)"
	call POST /api/v1/tenants "$platform" "{\"slug\":\"$slug\",\"name\":\"Schemathesis\"}" >/dev/null
	tenant="$(server_run token --tenant "$slug" --sub schemathesis \
		--scopes todos:read,todos:write,tenant:admin,api_keys:read,api_keys:write,webhooks:read,webhooks:write)"
	for title in "first todo" "second todo" "third todo"; do
		call POST /api/v1/todos "$tenant" "{\"title\":\"$title\"}" >/dev/null
	done
	call GET /api/v1/auth/me "$tenant" >/dev/null

	run_schemathesis "$backend-tenant" "$tenant" --exclude-path-regex '^/api/v1/(tenants|auth/revoke)' || status=1
	run_schemathesis "$backend-platform" "$platform" --include-path-regex '^/api/v1/tenants' || status=1
	# Last: revoking may revoke the calling token, and every later call would then get 401.
	run_schemathesis "$backend-revoke" "$tenant" --include-path-regex '^/api/v1/auth/revoke' \
		--phases examples,coverage,fuzzing || status=1
	# 304s must have been served and checked against the document: schemathesis sends the documented
	# `If-None-Match` header (`*` among its values), and its stateful phase follows each read's link
	# to the same read with `If-None-Match: <the ETag received>` (27 vs 11 without that phase).
	revalidated="$(python3 - "$base_url/metrics" <<-'EOF'
		import re, sys, urllib.request
		text = urllib.request.urlopen(sys.argv[1], timeout=10).read().decode()
		print(sum(float(m) for m in re.findall(r'^http_requests_total\{[^}]*status="304"[^}]*\} (\S+)$', text, re.M)))
	EOF
	)"
	echo "schemathesis.sh: $backend: $revalidated requests answered 304 Not Modified"
	python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > 0 else 1)' "$revalidated" ||
		{ echo "schemathesis.sh: no 304 was served: the stateful phase did not revalidate any read" >&2; status=1; }

	server_stop || true
	drop_database
	unset DATABASE_URL REDIS_URL PALISADE_REDIS__KEY_PREFIX PALISADE_DATABASE__AUTO_MIGRATE
	return "$status"
}

status=0
case "$backends" in
sqlite | postgres) run_backend "$backends" || status=1 ;;
all)
	run_backend sqlite || status=1
	run_backend postgres || status=1
	;;
*) die "unknown backend '$backends' (sqlite, postgres or all)" ;;
esac
if [ "$status" -ne 0 ]; then
	die "schemathesis found failures that are not in .ci/schemathesis-baseline.json (JUnit reports in $report_dir)"
fi
echo "schemathesis.sh: OK (no failure outside the baseline; reports in $report_dir)"
