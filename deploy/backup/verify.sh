#!/usr/bin/env bash
# verify.sh — the restore drill: prove that a backup restores and matches its source.
#
# Usage: verify.sh [--keep] [FILE]
#   FILE     backup to test (path or s3:// URI). Default: the newest backup of $PGDATABASE in BACKUP_DIR.
#   --keep   keep the scratch database afterwards (for inspection); normally it is dropped.
#
# What it does: restores FILE with restore.sh (checksum verified, decrypted as needed) into a new
# scratch database "<db>_drill_<time>_<pid>" on the same server, then compares the scratch
# database with the source database $PGDATABASE:
#   - the set of tables, with owner, GRANTs, and the RLS flags relrowsecurity/relforcerowsecurity,
#   - every column (name, type, NOT NULL),
#   - every policy in pg_policies (name, permissive, roles, command, USING and WITH CHECK),
#   - the exact row count of every table.
# Any difference is printed as a unified diff and the drill fails. The scratch database is
# dropped in every case (unless --keep).
#
# Row counts are compared with the source as it is NOW, so writes made after the backup show up as
# differences. Run the drill right after a backup against a quiet database (staging, a replica
# promoted for the purpose, or off-peak), or read the diff: rows that only grew on append-mostly
# tables (audit_events) point at recent writes, anything else at a bad backup.
#
# Environment: as restore.sh (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, BACKUP_DIR,
# BACKUP_KEY_FILE, BACKUP_MAINTENANCE_DB). The role needs CREATEDB and BYPASSRLS (or superuser),
# and must be allowed to restore ownership (superuser, or member of the owning roles).
#
# Exit status: 0 the backup restored and matches; 1 it did not (or the drill could not run); 2 usage.
set -Eeuo pipefail
umask 077

readonly PROG=verify.sh
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/lib.sh"

KEEP=0
FILE=
while (($#)); do
	case $1 in
	--keep) KEEP=1 ;;
	*) file_arg "$1" ;;
	esac
	shift
done

SOURCE=${PGDATABASE:-}
[[ -n $SOURCE ]] || usage_error "PGDATABASE (the source database to compare with) is not set"
[[ $SOURCE =~ $NAME_RE ]] || usage_error "PGDATABASE '$SOURCE' is not a plain name"
BACKUP_DIR=${BACKUP_DIR:-/backups}
MAINTENANCE_DB=${BACKUP_MAINTENANCE_DB:-postgres}

here=$(dirname -- "$(readlink -f -- "$0")")
if [[ -x $here/restore.sh ]]; then RESTORE=$here/restore.sh; else RESTORE=$(command -v restore.sh) || die "restore.sh not found next to $0 or on PATH"; fi

if [[ -z $FILE ]]; then newest_backup "$SOURCE"; fi

SCRATCH="${SOURCE:0:32}_drill_$(date -u +%Y%m%d%H%M%S)_$$"
WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/palisade-verify.XXXXXX")
on_exit() {
	local rc=$?
	if ((KEEP)); then
		log "scratch database '$SCRATCH' kept (--keep); drop it with: dropdb --force $SCRATCH"
	elif ! psql -X -w -q -v ON_ERROR_STOP=1 --dbname="$MAINTENANCE_DB" -v db="$SCRATCH" \
		<<<'DROP DATABASE IF EXISTS :"db" WITH (FORCE);' 2>"$WORK_DIR/drop.err"; then
		printf '[%s] WARNING: could not drop scratch database %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$SCRATCH" "$(cat "$WORK_DIR/drop.err")" >&2
		rc=1
	fi
	rm -rf -- "$WORK_DIR"
	if ((rc != 0)); then
		printf '[%s] RESTORE DRILL FAILED for %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$FILE" >&2
	fi
	exit "$rc"
}
trap on_exit EXIT
trap_errors

# One line per fact, sorted, so two databases compare with diff.
describe() {
	sql "$1" <<'SQL'
SET row_security = off;
WITH rels AS (
    SELECT c.oid, c.relname, c.relkind, n.nspname, c.relrowsecurity, c.relforcerowsecurity,
           pg_get_userbyid(c.relowner) AS owner, c.relacl
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname !~ '^pg_'
)
SELECT line FROM (
    SELECT format('table %I.%I owner=%s rowsecurity=%s forcerowsecurity=%s acl=%s',
                  nspname, relname, owner, relrowsecurity, relforcerowsecurity,
                  coalesce(relacl::text, '-')) AS line
    FROM rels
    UNION ALL
    SELECT format('column %I.%I.%I %s%s', r.nspname, r.relname, a.attname,
                  format_type(a.atttypid, a.atttypmod), CASE WHEN a.attnotnull THEN ' not null' ELSE '' END)
    FROM rels r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT format('policy %I.%I %I permissive=%s roles=%s cmd=%s using=%s with_check=%s',
                  schemaname, tablename, policyname, permissive, roles::text, cmd,
                  coalesce(regexp_replace(qual, '\s+', ' ', 'g'), '-'),
                  coalesce(regexp_replace(with_check, '\s+', ' ', 'g'), '-'))
    FROM pg_policies
    UNION ALL
    SELECT format('rows %I.%I %s', nspname, relname,
                  (xpath('/row/n/text()',
                         query_to_xml(format('SELECT count(*) AS n FROM ONLY %I.%I', nspname, relname),
                                      false, true, '')))[1]::text)
    FROM rels WHERE relkind = 'r'
) facts
ORDER BY line COLLATE "C";
SQL
}

log "restore drill: backup $FILE, source '$SOURCE', scratch database '$SCRATCH'"
"$RESTORE" --target "$SCRATCH" --create "$FILE" || die "restore of $FILE into scratch database '$SCRATCH' failed"

log "comparing '$SCRATCH' with '$SOURCE'"
describe "$SOURCE" >"$WORK_DIR/source" || die "could not describe source database '$SOURCE'"
describe "$SCRATCH" >"$WORK_DIR/restored" || die "could not describe scratch database '$SCRATCH'"

tables=$(grep -c '^table ' "$WORK_DIR/source" || true)
policies=$(grep -c '^policy ' "$WORK_DIR/source" || true)
forced=$(grep -c '^table .* forcerowsecurity=t ' "$WORK_DIR/source" || true)
rows=$(awk '$1 == "rows" { s += $3 } END { print s + 0 }' "$WORK_DIR/source")

if ! diff -u --label "source:$SOURCE" --label "restored:$(basename -- "$FILE")" \
	"$WORK_DIR/source" "$WORK_DIR/restored" >"$WORK_DIR/diff"; then
	cat "$WORK_DIR/diff" >&2
	die "the restored backup differs from '$SOURCE' (lines starting with - are only in the source, + only in the backup)"
fi
log "RESTORE DRILL PASSED: $tables tables ($forced with forced RLS), $policies policies, $rows rows — identical to '$SOURCE'"
