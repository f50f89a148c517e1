#!/usr/bin/env bash
# restore.sh — restore a backup written by backup.sh into a PostgreSQL database.
#
# Usage: restore.sh [options] [FILE]
#   FILE              a backup file (<db>_<timestamp>.dump[.age|.gpg]) or an s3:// URI of one.
#                     Default: the newest backup of $PGDATABASE in BACKUP_DIR.
#   --target DB       restore into DB instead of $PGDATABASE
#   --create          create the target database first if it does not exist
#   --force           allow a non-empty target: objects contained in the backup are dropped and
#                     recreated (pg_restore --clean --if-exists); objects that are not in the
#                     backup are left alone
#   --no-owner        do not restore ownership; everything ends up owned by the restoring role.
#                     Only for clusters that lack palisade's roles: palisade's isolation relies on
#                     the migration role owning the tables and the app role not owning them.
#   --no-privileges   do not restore GRANTs (use when the granted roles do not exist)
#   --skip-checksum   restore even without a matching .sha256 (emergencies only; says so loudly)
#   -h, --help
#
# Steps: verify the SHA-256 in <FILE>.sha256 (a mismatch or a missing checksum is refused before
# anything touches the target), decrypt into a private temporary directory (age: identity file in
# BACKUP_KEY_FILE; gpg: passphrase file in BACKUP_KEY_FILE), check the archive is readable, refuse
# a non-empty target unless --force, restore in ONE transaction (a failure leaves the target as it
# was), ANALYZE, then print the exact row count of every table.
#
# Connection: PGHOST, PGPORT, PGUSER, PGPASSWORD, … as for psql. Run as a superuser, or as a role
# with BYPASSRLS that is a member of the roles owning the objects (the migration role) — restoring
# ownership needs that, and counting rows of FORCE-RLS tables needs BYPASSRLS. The roles themselves
# (owner role, palisade_app) are cluster-wide and not in the dump: they must exist beforehand.
#
# Other environment: BACKUP_DIR [/backups], BACKUP_KEY_FILE, AWS_ENDPOINT_URL (for s3:// files),
# BACKUP_MAINTENANCE_DB (database used to look up/create the target) [postgres], TMPDIR.
#
# Exit status: 0 restored; 1 failure (corrupt or missing backup, restore error, …); 2 usage error;
# 3 refused because the target is not empty (re-run with --force if that is really intended).
set -Eeuo pipefail
umask 077

readonly PROG=restore.sh
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/lib.sh"

FILE=
TARGET=${PGDATABASE:-}
FORCE=0
CREATE=0
SKIP_CHECKSUM=0
PG_RESTORE_EXTRA=()
while (($#)); do
	case $1 in
	--target)
		(($# >= 2)) || usage_error "--target needs a database name"
		TARGET=$2
		shift
		;;
	--target=*) TARGET=${1#--target=} ;;
	--force) FORCE=1 ;;
	--create) CREATE=1 ;;
	--no-owner) PG_RESTORE_EXTRA+=(--no-owner) ;;
	--no-privileges) PG_RESTORE_EXTRA+=(--no-privileges) ;;
	--skip-checksum) SKIP_CHECKSUM=1 ;;
	*) file_arg "$1" ;;
	esac
	shift
done

[[ -n $TARGET ]] || usage_error "no target database: set PGDATABASE or pass --target DB"
[[ $TARGET =~ $NAME_RE ]] || usage_error "target database name '$TARGET' is not a plain name"
BACKUP_DIR=${BACKUP_DIR:-/backups}
MAINTENANCE_DB=${BACKUP_MAINTENANCE_DB:-postgres}
AWS=(aws)
if [[ -n ${AWS_ENDPOINT_URL:-} ]]; then AWS+=(--endpoint-url "$AWS_ENDPOINT_URL"); fi

WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/palisade-restore.XXXXXX")
OWN_GNUPGHOME=
on_exit() {
	if [[ -n $OWN_GNUPGHOME ]] && command -v gpgconf >/dev/null; then GNUPGHOME=$OWN_GNUPGHOME gpgconf --kill gpg-agent >/dev/null 2>&1 || true; fi
	rm -rf -- "$WORK_DIR"
}
trap on_exit EXIT
trap_errors

# --- choose the backup -----------------------------------------------------------------------

if [[ -z $FILE ]]; then
	src=${PGDATABASE:-$TARGET}
	newest_backup "$src"
	log "newest backup of '$src' in $BACKUP_DIR: $FILE"
fi

if [[ $FILE == s3://* ]]; then
	command -v aws >/dev/null || die "FILE is an s3:// URI but the aws CLI is not installed"
	local_copy="$WORK_DIR/$(basename -- "$FILE")"
	log "downloading $FILE${AWS_ENDPOINT_URL:+ (endpoint $AWS_ENDPOINT_URL)}"
	"${AWS[@]}" s3 cp --only-show-errors "$FILE" "$local_copy" || die "could not download $FILE"
	if ! "${AWS[@]}" s3 cp --only-show-errors "$FILE.sha256" "$local_copy.sha256"; then
		warn "could not download $FILE.sha256"
	fi
	FILE=$local_copy
fi
[[ -f $FILE ]] || die "backup file '$FILE' does not exist"
[[ -r $FILE ]] || die "backup file '$FILE' is not readable by uid $(id -u)"

# --- integrity ------------------------------------------------------------------------------

if [[ -f $FILE.sha256 ]]; then
	expected=
	read -r expected _ <"$FILE.sha256" || true
	expected=${expected,,}
	[[ $expected =~ ^[0-9a-f]{64}$ ]] || die "$FILE.sha256 is not in sha256sum format; refusing to restore"
	actual=$(sha256sum -- "$FILE")
	actual=${actual%% *}
	if [[ $actual != "$expected" ]]; then
		die "CHECKSUM MISMATCH for $FILE: expected $expected (from $FILE.sha256), got $actual. The backup is corrupt or was modified; refusing to restore. Nothing was changed. Pick another backup (e.g. the previous one) or a copy from off-site storage."
	fi
	log "checksum OK (sha256 $actual)"
elif ((SKIP_CHECKSUM)); then
	warn "no checksum file $FILE.sha256 — restoring an UNVERIFIED backup because --skip-checksum was given"
else
	die "no checksum file $FILE.sha256; refusing to restore an unverified backup (pass --skip-checksum to override)"
fi

# --- decrypt --------------------------------------------------------------------------------

DUMP=$FILE
case $FILE in
*.age)
	[[ -n ${BACKUP_KEY_FILE:-} && -r ${BACKUP_KEY_FILE:-} ]] ||
		die "$FILE is age-encrypted: set BACKUP_KEY_FILE to a readable age identity (private key) file"
	command -v age >/dev/null || die "$FILE is age-encrypted but age is not installed"
	DUMP="$WORK_DIR/backup.dump"
	log "decrypting with age (identity $BACKUP_KEY_FILE)"
	age --decrypt --identity "$BACKUP_KEY_FILE" --output "$DUMP" "$FILE" || die "age could not decrypt $FILE (wrong identity, or a damaged file)"
	;;
*.gpg)
	[[ -n ${BACKUP_KEY_FILE:-} && -r ${BACKUP_KEY_FILE:-} ]] ||
		die "$FILE is gpg-encrypted: set BACKUP_KEY_FILE to a readable passphrase file"
	command -v gpg >/dev/null || die "$FILE is gpg-encrypted but gpg is not installed"
	export GNUPGHOME="$WORK_DIR/gnupg"
	OWN_GNUPGHOME=$GNUPGHOME
	mkdir -m 700 "$GNUPGHOME"
	DUMP="$WORK_DIR/backup.dump"
	log "decrypting with gpg (passphrase from $BACKUP_KEY_FILE)"
	gpg --batch --yes --quiet --no-tty --pinentry-mode loopback --passphrase-file "$BACKUP_KEY_FILE" \
		--decrypt --output "$DUMP" "$FILE" || die "gpg could not decrypt $FILE (wrong passphrase, or a damaged file)"
	;;
esac
pg_restore --list "$DUMP" >"$WORK_DIR/toc" 2>"$WORK_DIR/toc.err" ||
	die "$FILE is not a readable pg_dump archive: $(tr '\n' ' ' <"$WORK_DIR/toc.err")"
log "archive OK: $(grep -c 'TABLE DATA' "$WORK_DIR/toc" || true) table(s) with data, $(grep -c ' POLICY ' "$WORK_DIR/toc" || true) RLS policy(ies)"

# --- target ---------------------------------------------------------------------------------

exists=$(sql "$MAINTENANCE_DB" -v db="$TARGET" <<<"SELECT count(*) FROM pg_database WHERE datname = :'db';") ||
	die "cannot connect to ${PGHOST:-<default host>}:${PGPORT:-5432} database '$MAINTENANCE_DB' to look up '$TARGET'"
if [[ $exists == 0 ]]; then
	((CREATE)) || die "target database '$TARGET' does not exist; create it (createdb -O <owner role> $TARGET) or pass --create"
	log "creating database '$TARGET'"
	sql "$MAINTENANCE_DB" -v db="$TARGET" <<<'CREATE DATABASE :"db";' || die "could not create database '$TARGET'"
fi

objects=$(
	sql "$TARGET" <<'SQL'
SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_')
     + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_')
     + (SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_'
          AND t.typrelid = 0 AND t.typcategory <> 'A')
     + (SELECT count(*) FROM pg_namespace n
        WHERE n.nspname NOT IN ('public', 'pg_catalog', 'information_schema') AND n.nspname !~ '^pg_')
     + (SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql');
SQL
) || die "cannot inspect target database '$TARGET'"
CLEAN=()
if [[ $objects != 0 ]]; then
	if ((!FORCE)); then
		die "target database '$TARGET' is not empty ($objects user object(s)); refusing to overwrite it. Restore into an empty database (--target NEW --create), or re-run with --force to drop and replace the objects contained in the backup." 3
	fi
	warn "target database '$TARGET' is not empty ($objects user object(s)); --force given: objects in the backup will be dropped and recreated"
	CLEAN=(--clean --if-exists)
fi

# --- restore --------------------------------------------------------------------------------

START=$(now_epoch)
log "restoring $(basename -- "$FILE") into '$TARGET' (single transaction${CLEAN:+, --clean --if-exists}${PG_RESTORE_EXTRA[*]:+, ${PG_RESTORE_EXTRA[*]}})"
if ! pg_restore --no-password --exit-on-error --single-transaction "${CLEAN[@]}" "${PG_RESTORE_EXTRA[@]}" \
	--dbname="$TARGET" "$DUMP"; then
	die "pg_restore failed (see its message above); the transaction was rolled back, so '$TARGET' is as it was before"
fi
log "restore committed in $(awk -v a="$START" -v b="$(now_epoch)" 'BEGIN { printf "%.1f", b - a }')s; running ANALYZE"
sql "$TARGET" <<<'ANALYZE;' || warn "ANALYZE failed; run it by hand before sending traffic"

# --- report ---------------------------------------------------------------------------------

# Exact counts; row_security=off makes a role that RLS would filter fail instead of under-count.
if counts=$(
	sql "$TARGET" -F ' ' <<'SQL'
SET row_security = off;
SELECT format('%I.%I', n.nspname, c.relname),
       (xpath('/row/n/text()',
              query_to_xml(format('SELECT count(*) AS n FROM ONLY %I.%I', n.nspname, c.relname), false, true, '')))[1]::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_'
ORDER BY 1;
SQL
); then
	total=0
	tables=0
	printf '\nRow counts in %s:\n' "$TARGET"
	while read -r table n; do
		[[ -n $table ]] || continue
		printf '  %-48s %12s\n' "$table" "$n"
		total=$((total + n))
		tables=$((tables + 1))
	done <<<"$counts"
	printf '  %-48s %12s\n\n' "($tables tables)" "$total"
else
	warn "restore succeeded, but counting rows failed (does this role have BYPASSRLS?)"
fi
log "restore of $(basename -- "$FILE") into '$TARGET' completed successfully"
