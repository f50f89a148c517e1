#!/usr/bin/env bash
# GitHub service containers run PostgreSQL with password authentication (POSTGRES_PASSWORD), as
# production does. The test harness (crates/api/tests/support) serves each test database through
# the non-owner login role `palisade_test_app`, which has no password, so this lets that one role
# in from the runner without a password; the admin `postgres` keeps its password.
#
#   bash .ci/postgres-service.sh CONTAINER_ID      (${{ job.services.postgres.id }})
set -euo pipefail

container="${1:?usage: postgres-service.sh CONTAINER_ID}"
docker exec "$container" sh -c \
	'sed -i "1i host all palisade_test_app all trust" "$PGDATA/pg_hba.conf"'
docker exec -u postgres "$container" psql -U postgres -qtAc 'SELECT pg_reload_conf()' >/dev/null
echo "postgres-service: palisade_test_app may log in without a password; everyone else needs one"
