#!/usr/bin/env bash
# backup.sh — logical backup of one palisade PostgreSQL database, with checksum, optional
# encryption, optional off-site copy, grandfather-father-son retention and Prometheus metrics.
#
# Usage: backup.sh              take a backup, upload it, prune, write metrics
#        backup.sh --prune-only apply the retention policy to existing backups and exit
#        backup.sh --help
#
# Connection: the standard libpq variables PGHOST, PGPORT, PGUSER, PGPASSWORD (or PGPASSFILE),
# PGSSLMODE, … and PGDATABASE (required: it also names the files).
#
# Who runs it: a role that row-level security cannot hide rows from. palisade FORCEs RLS on every
# tenant table, so even the owning (migration) role is filtered unless it has BYPASSRLS. pg_dump runs
# with row_security=off and therefore fails loudly ("query would be affected by row-level security
# policy") rather than writing a silently partial dump; this script checks up front and says so.
# Use the owner role with BYPASSRLS, or a dedicated role:
#   CREATE ROLE palisade_backup LOGIN BYPASSRLS IN ROLE pg_read_all_data;
#
# Ownership: pg_dump's --no-owner is deliberately NOT used. For archive formats pg_dump ignores it
# anyway (it only affects plain-SQL output); the archive always records owners and grants, and the
# choice is made at restore time. restore.sh keeps ownership by default, because palisade's
# isolation depends on it: the migration role owns the tables and the app role must not (an owner
# of a table is exempt from RLS unless it is forced, and owns its policies). Restoring onto a
# cluster without those roles is possible with `restore.sh --no-owner`.
#
# Environment (defaults in brackets):
#   BACKUP_DIR             where dumps live [/backups]
#   BACKUP_ENCRYPTION      none | age | gpg [none]
#   BACKUP_KEY_FILE        age: recipients file (public keys, one per line);
#                          gpg: file holding the symmetric passphrase. Required unless none.
#   BACKUP_S3_URI          optional off-site copy, e.g. s3://bucket/prefix (uses `aws s3 cp`;
#                          AWS_ENDPOINT_URL selects an S3-compatible store). Retention is applied
#                          to that prefix too.
#   BACKUP_KEEP_DAILY      [7]   BACKUP_KEEP_WEEKLY [4]   BACKUP_KEEP_MONTHLY [12]
#   BACKUP_METRICS_FILE    optional Prometheus textfile (written atomically), e.g.
#                          /var/lib/node_exporter/textfile/palisade-backup-<db>.prom
#   BACKUP_PUSHGATEWAY_URL optional Pushgateway base URL; pushed to job "palisade-backup",
#                          grouping label database="<db>"
#   BACKUP_NOW             optional override of "now" (UTC, YYYYmmddTHHMMSSZ): names the new dump
#   PG_DUMP                pg_dump binary [pg_dump]
#
# Files: <database>_<YYYYmmddTHHMMSSZ>.dump (pg_dump custom format, compressed), with .age or .gpg
# appended when encrypted, and <file>.sha256 beside it in sha256sum format (`sha256sum -c` works
# from inside BACKUP_DIR). A dump is written under a hidden temporary name and renamed only once it
# is complete, verified readable (pg_restore --list), encrypted and checksummed.
#
# Retention (applied after a successful backup, never after a failed one). Consider every file in
# the store named <database>_<timestamp>.dump[.age|.gpg]; timestamps are UTC. Group them into
# buckets three ways: by calendar day (YYYY-mm-dd), by ISO-8601 week (ISO year + week number,
# weeks start on Monday, so 2024-12-30 is in 2025-W01) and by calendar month (YYYY-mm). Only
# buckets that contain at least one backup count. A backup is KEPT if it is
#   - the newest backup of its day,   and that day   is among the BACKUP_KEEP_DAILY   newest days,
#   - the newest backup of its week,  and that week  is among the BACKUP_KEEP_WEEKLY  newest weeks,
#   - or the newest backup of its month, and that month is among the BACKUP_KEEP_MONTHLY newest months
# (each rule counts buckets that contain backups, so a pause in backups never ages the last good
# ones out), or if it is the newest backup of all, or the one this run just wrote. Every other
# backup is deleted together with its .sha256. Setting a BACKUP_KEEP_* to 0 disables that rule.
# Files whose timestamp is not a valid date are reported and left alone.
#
# Exit status: 0 on success; 1 on any failure (the message says what failed and what was left
# behind); 2 on a usage or configuration error.
set -Eeuo pipefail
umask 077

readonly PROG=backup.sh
readonly TS_RE='^[0-9]{8}T[0-9]{6}Z$'
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/lib.sh"

human() { numfmt --to=iec-i --suffix=B "$1" 2>/dev/null || printf '%s bytes' "$1"; }

# --- arguments and configuration -------------------------------------------------------------

MODE=backup
while (($#)); do
	case $1 in
	--prune-only) MODE=prune ;;
	-h | --help)
		usage
		exit 0
		;;
	*) usage_error "unknown argument: $1" ;;
	esac
	shift
done

DB=${PGDATABASE:-}
[[ -n $DB ]] || usage_error "PGDATABASE is not set (it names the database to back up and its files)"
[[ $DB =~ $NAME_RE ]] ||
	usage_error "PGDATABASE '$DB' contains characters that are unsafe in file names"
BACKUP_DIR=${BACKUP_DIR:-/backups}
BACKUP_ENCRYPTION=${BACKUP_ENCRYPTION:-none}
BACKUP_KEY_FILE=${BACKUP_KEY_FILE:-}
BACKUP_S3_URI=${BACKUP_S3_URI:-}
BACKUP_S3_URI=${BACKUP_S3_URI%/}
BACKUP_KEEP_DAILY=${BACKUP_KEEP_DAILY:-7}
BACKUP_KEEP_WEEKLY=${BACKUP_KEEP_WEEKLY:-4}
BACKUP_KEEP_MONTHLY=${BACKUP_KEEP_MONTHLY:-12}
BACKUP_METRICS_FILE=${BACKUP_METRICS_FILE:-}
BACKUP_PUSHGATEWAY_URL=${BACKUP_PUSHGATEWAY_URL:-}
BACKUP_PUSHGATEWAY_URL=${BACKUP_PUSHGATEWAY_URL%/}
PG_DUMP=${PG_DUMP:-pg_dump}

for knob in BACKUP_KEEP_DAILY BACKUP_KEEP_WEEKLY BACKUP_KEEP_MONTHLY; do
	[[ ${!knob} =~ ^[0-9]+$ ]] || usage_error "$knob must be a non-negative integer, got '${!knob}'"
done
case $BACKUP_ENCRYPTION in
none) SUFFIX= ;;
age | gpg)
	SUFFIX=.$BACKUP_ENCRYPTION
	if [[ $MODE == backup ]]; then
		[[ -n $BACKUP_KEY_FILE ]] || usage_error "BACKUP_ENCRYPTION=$BACKUP_ENCRYPTION needs BACKUP_KEY_FILE"
		[[ -r $BACKUP_KEY_FILE ]] || usage_error "BACKUP_KEY_FILE '$BACKUP_KEY_FILE' is not readable"
		command -v "$BACKUP_ENCRYPTION" >/dev/null || usage_error "BACKUP_ENCRYPTION=$BACKUP_ENCRYPTION but '$BACKUP_ENCRYPTION' is not installed"
	fi
	;;
*) usage_error "BACKUP_ENCRYPTION must be none, age or gpg, got '$BACKUP_ENCRYPTION'" ;;
esac
if [[ -n $BACKUP_S3_URI ]]; then
	[[ $BACKUP_S3_URI == s3://?* ]] || usage_error "BACKUP_S3_URI must look like s3://bucket/prefix, got '$BACKUP_S3_URI'"
	command -v aws >/dev/null || usage_error "BACKUP_S3_URI is set but the aws CLI is not installed"
fi
if [[ -n ${BACKUP_NOW:-} ]]; then
	[[ $BACKUP_NOW =~ $TS_RE ]] || usage_error "BACKUP_NOW must be a UTC timestamp like 20250102T030405Z, got '$BACKUP_NOW'"
	STAMP=$BACKUP_NOW
else
	STAMP=$(date -u +%Y%m%dT%H%M%SZ)
fi
stamp_iso() { printf '%s-%s-%sT%s:%s:%sZ' "${1:0:4}" "${1:4:2}" "${1:6:2}" "${1:9:2}" "${1:11:2}" "${1:13:2}"; }
date -u -d "$(stamp_iso "$STAMP")" +%s >/dev/null 2>&1 || usage_error "BACKUP_NOW '$STAMP' is not a valid date"

AWS=(aws)
if [[ -n ${AWS_ENDPOINT_URL:-} ]]; then AWS+=(--endpoint-url "$AWS_ENDPOINT_URL"); fi

# --- cleanup: temporary files always go; final names only if this run did not finish them -----

TMP_FILES=()
FINAL_FILES=()
COMMITTED=0
WORK_DIR=
DUMP_PID=
OWN_GNUPGHOME=
on_exit() {
	local rc=$?
	if [[ -n $DUMP_PID ]] && kill -0 "$DUMP_PID" 2>/dev/null; then kill "$DUMP_PID" 2>/dev/null || true; fi
	local f
	for f in "${TMP_FILES[@]}"; do rm -f -- "$f"; done
	if ((rc != 0 && COMMITTED == 0)); then
		for f in "${FINAL_FILES[@]}"; do rm -f -- "$f"; done
	fi
	if [[ -n $WORK_DIR ]]; then
		if [[ -n $OWN_GNUPGHOME ]] && command -v gpgconf >/dev/null; then GNUPGHOME=$OWN_GNUPGHOME gpgconf --kill gpg-agent >/dev/null 2>&1 || true; fi
		rm -rf -- "$WORK_DIR"
	fi
	if ((rc != 0)) && [[ $MODE == backup ]]; then
		if ((COMMITTED)); then
			printf '[%s] ERROR: backup FAILED after the local dump was completed; it is kept. Nothing was pruned unless reported above.\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >&2
		else
			printf '[%s] ERROR: backup FAILED; no backup file was written and nothing was pruned.\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >&2
		fi
	fi
}
trap on_exit EXIT
trap_errors

# --- retention ------------------------------------------------------------------------------

# Reads file names on stdin and prints, newest first, "keep <name> <reasons>", "prune <name>", or
# "skip <name>" for a name shaped like a backup whose timestamp is not a real date (never touched).
# Names that are not backups of $DB are ignored. Calendar arithmetic is done here rather than with
# `date`, so one stray file cannot break pruning and any POSIX awk (mawk in the image) works.
retention_plan() {
	backup_names "$DB" |
		LC_ALL=C sort -r -u |
		awk -v n=$((${#DB} + 2)) -v kd="$BACKUP_KEEP_DAILY" -v kw="$BACKUP_KEEP_WEEKLY" \
			-v km="$BACKUP_KEEP_MONTHLY" -v always="${KEEP_ALWAYS:-}" '
		# Days since 1970-01-01 of a date (years >= 1970 only).
		function days(y, m, d,   yoe, doy) {
			if (m <= 2) y -= 1
			yoe = y % 400
			doy = int((153 * (m > 2 ? m - 3 : m + 9) + 2) / 5) + d - 1
			return int(y / 400) * 146097 + yoe * 365 + int(yoe / 4) - int(yoe / 100) + doy - 719468
		}
		function leap(y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 }
		function valid(y, m, d, hh, mi, ss,   dim) {
			if (y < 1970 || m < 1 || m > 12 || d < 1 || hh > 23 || mi > 59 || ss > 60) return 0
			dim = (m == 2) ? 28 + leap(y) : (m == 4 || m == 6 || m == 9 || m == 11) ? 30 : 31
			return d <= dim
		}
		# ISO-8601 week "YYYY-Www": the week (Monday..Sunday) belongs to the year of its Thursday.
		function isoweek(y, m, d,   z, thu, iy) {
			z = days(y, m, d)
			thu = z - ((z + 3) % 7 + 1) + 4
			iy = y
			if (thu < days(iy, 1, 1)) iy--
			else if (thu >= days(iy + 1, 1, 1)) iy++
			return sprintf("%04d-W%02d", iy, int((thu - days(iy, 1, 1)) / 7) + 1)
		}
		{
			s = substr($0, n)
			y = substr(s, 1, 4) + 0; mo = substr(s, 5, 2) + 0; dd = substr(s, 7, 2) + 0
			if (!valid(y, mo, dd, substr(s, 10, 2) + 0, substr(s, 12, 2) + 0, substr(s, 14, 2) + 0)) {
				print "skip " $0
				next
			}
			day = substr(s, 1, 8); month = substr(s, 1, 6); week = isoweek(y, mo, dd); why = ""
			if (!(day in D))   { D[day] = 1;     if (++nd <= kd) why = why "daily(" day ") " }
			if (!(week in W))  { W[week] = 1;    if (++nw <= kw) why = why "weekly(" week ") " }
			if (!(month in M)) { M[month] = 1;   if (++nm <= km) why = why "monthly(" month ") " }
			if (++seen == 1) why = why "newest "
			if ($0 == always) why = why "just-taken "
			if (why == "") print "prune " $0; else print "keep " $0 " " why
		}'
}

PRUNED=()
KEPT=0
# apply_plan PLAN WHERE DELETE: carries out retention_plan's output PLAN for the store WHERE (a
# directory or an s3:// prefix), calling the function DELETE with each pruned name; counts KEPT.
apply_plan() {
	local plan=$1 where=$2 delete=$3 line name
	KEPT=0
	while IFS= read -r line; do
		[[ -n $line ]] || continue
		name=${line#* }
		name=${name%% *}
		if [[ $line == keep* ]]; then
			KEPT=$((KEPT + 1))
		elif [[ $line == skip* ]]; then
			warn "ignoring $where/$name: its timestamp is not a valid date"
		else
			"$delete" "$name"
			PRUNED+=("$where/$name")
			log "pruned $where/$name"
		fi
	done <<<"$plan"
}

delete_local() { rm -f -- "$BACKUP_DIR/$1" "$BACKUP_DIR/$1.sha256"; }
prune_local() {
	local plan
	plan=$(find "$BACKUP_DIR" -maxdepth 1 -type f -printf '%f\n' | retention_plan)
	apply_plan "$plan" "$BACKUP_DIR" delete_local
	log "retention (daily=$BACKUP_KEEP_DAILY weekly=$BACKUP_KEEP_WEEKLY monthly=$BACKUP_KEEP_MONTHLY): kept $KEPT in $BACKUP_DIR"
}

delete_s3() {
	"${AWS[@]}" s3 rm --only-show-errors "$BACKUP_S3_URI/$1" || die "could not delete $BACKUP_S3_URI/$1"
	"${AWS[@]}" s3 rm --only-show-errors "$BACKUP_S3_URI/$1.sha256" || warn "could not delete $BACKUP_S3_URI/$1.sha256"
}
prune_s3() {
	local listing plan
	listing=$("${AWS[@]}" s3 ls "$BACKUP_S3_URI/") || die "could not list $BACKUP_S3_URI/ for retention"
	plan=$(awk '$1 != "PRE" { print $NF }' <<<"$listing" | retention_plan)
	apply_plan "$plan" "$BACKUP_S3_URI" delete_s3
	log "retention: kept $KEPT in $BACKUP_S3_URI/"
}

# --- setup ----------------------------------------------------------------------------------

mkdir -p -- "$BACKUP_DIR" || die "cannot create BACKUP_DIR '$BACKUP_DIR'"
[[ -w $BACKUP_DIR ]] || die "BACKUP_DIR '$BACKUP_DIR' is not writable by uid $(id -u)"

# One run per database and directory at a time (the CronJob also uses concurrencyPolicy: Forbid).
if command -v flock >/dev/null; then
	exec 9>"$BACKUP_DIR/.$DB.lock"
	flock -n 9 || die "another backup of '$DB' is running in $BACKUP_DIR (lock .$DB.lock is held)"
fi

if [[ $MODE == prune ]]; then
	log "prune-only: applying retention to backups of '$DB'"
	prune_local
	[[ -z $BACKUP_S3_URI ]] || prune_s3
	log "prune-only finished: ${#PRUNED[@]} backup(s) pruned"
	exit 0
fi

START=$(now_epoch)
NAME="${DB}_${STAMP}.dump${SUFFIX}"
FINAL="$BACKUP_DIR/$NAME"
log "starting backup of database '$DB' on ${PGHOST:-<libpq default host>}:${PGPORT:-5432} as ${PGUSER:-<libpq default user>}"
log "target: $FINAL (encryption: $BACKUP_ENCRYPTION${BACKUP_S3_URI:+, off-site: $BACKUP_S3_URI/})"
[[ ! -e $FINAL ]] || die "$FINAL already exists; refusing to overwrite a backup"

# Stale temporaries from a killed run (we hold the lock, so nobody is writing them).
while IFS= read -r stale; do
	[[ -n $stale ]] || continue
	warn "removing stale temporary file from an interrupted run: $stale"
	rm -f -- "$stale"
done < <(find "$BACKUP_DIR" -maxdepth 1 -type f -name ".${DB}_*.partial-*" 2>/dev/null)

WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/palisade-backup.XXXXXX")

# --- preflight: can we connect, and will RLS hide rows from us? ------------------------------

preflight=$(sql "$DB" -F ' ' -c "
	SELECT r.rolsuper OR r.rolbypassrls,
	       (SELECT count(*) FROM pg_class c
	        WHERE c.relkind IN ('r', 'p') AND c.relrowsecurity
	          AND (c.relforcerowsecurity OR NOT pg_has_role(c.relowner, 'USAGE'))),
	       pg_database_size(current_database()),
	       current_setting('server_version')
	FROM pg_roles r WHERE r.rolname = current_user" 2>"$WORK_DIR/psql.err") ||
	die "cannot connect to database '$DB': $(tr '\n' ' ' <"$WORK_DIR/psql.err")"
read -r can_bypass rls_tables db_size server_version <<<"$preflight"
if [[ $can_bypass != t && $rls_tables != 0 ]]; then
	die "role '${PGUSER:-$(id -un)}' has neither SUPERUSER nor BYPASSRLS, and row-level security applies to it on $rls_tables table(s); pg_dump would be refused (FORCE RLS binds the table owner too). Run as a role with BYPASSRLS, e.g. CREATE ROLE palisade_backup LOGIN BYPASSRLS IN ROLE pg_read_all_data"
fi
log "connected: PostgreSQL $server_version, database size $(human "$db_size"), role bypasses RLS: $can_bypass"

# --- dump -----------------------------------------------------------------------------------

tmp_dump=$(mktemp "$BACKUP_DIR/.${DB}_${STAMP}.partial-XXXXXX")
TMP_FILES+=("$tmp_dump")
log "running pg_dump (custom format, compressed) with ${PG_DUMP}"
"$PG_DUMP" --format=custom --compress=6 --no-password --file="$tmp_dump" --dbname="$DB" &
DUMP_PID=$!
if wait "$DUMP_PID"; then DUMP_PID=; else
	rc=$?
	DUMP_PID=
	die "pg_dump exited with status $rc; see its message above"
fi
[[ -s $tmp_dump ]] || die "pg_dump reported success but wrote an empty file"
pg_restore --list "$tmp_dump" >/dev/null 2>"$WORK_DIR/list.err" ||
	die "pg_dump output is not a readable archive: $(tr '\n' ' ' <"$WORK_DIR/list.err")"
dump_size=$(stat -c %s "$tmp_dump")
log "dump complete: $(human "$dump_size") compressed (database $(human "$db_size") on disk)"

# --- encrypt --------------------------------------------------------------------------------

tmp_final=$tmp_dump
case $BACKUP_ENCRYPTION in
age)
	tmp_final=$(mktemp "$BACKUP_DIR/.${DB}_${STAMP}.partial-XXXXXX")
	TMP_FILES+=("$tmp_final")
	log "encrypting with age for the recipients in $BACKUP_KEY_FILE"
	age --encrypt --recipients-file "$BACKUP_KEY_FILE" --output "$tmp_final" "$tmp_dump" ||
		die "age encryption failed"
	rm -f -- "$tmp_dump"
	;;
gpg)
	tmp_final=$(mktemp "$BACKUP_DIR/.${DB}_${STAMP}.partial-XXXXXX")
	TMP_FILES+=("$tmp_final")
	export GNUPGHOME="$WORK_DIR/gnupg"
	OWN_GNUPGHOME=$GNUPGHOME
	mkdir -m 700 "$GNUPGHOME"
	log "encrypting with gpg (symmetric AES256, passphrase from $BACKUP_KEY_FILE)"
	gpg --batch --yes --quiet --no-tty --pinentry-mode loopback --passphrase-file "$BACKUP_KEY_FILE" \
		--symmetric --cipher-algo AES256 --compress-algo none --output "$tmp_final" "$tmp_dump" ||
		die "gpg encryption failed"
	rm -f -- "$tmp_dump"
	;;
esac

# --- checksum and commit --------------------------------------------------------------------

size=$(stat -c %s "$tmp_final")
sum=$(sha256sum "$tmp_final")
sum=${sum%% *}
tmp_sum=$(mktemp "$BACKUP_DIR/.${DB}_${STAMP}.partial-XXXXXX")
TMP_FILES+=("$tmp_sum")
printf '%s  %s\n' "$sum" "$NAME" >"$tmp_sum"
chmod 0640 "$tmp_final" "$tmp_sum"
FINAL_FILES+=("$FINAL" "$FINAL.sha256")
mv -f -- "$tmp_final" "$FINAL"
mv -f -- "$tmp_sum" "$FINAL.sha256"
sync -- "$FINAL" "$FINAL.sha256" 2>/dev/null || true
COMMITTED=1
KEEP_ALWAYS=$NAME
log "wrote $FINAL ($(human "$size")), sha256 $sum"

# --- off-site copy --------------------------------------------------------------------------

if [[ -n $BACKUP_S3_URI ]]; then
	log "uploading to $BACKUP_S3_URI/$NAME${AWS_ENDPOINT_URL:+ (endpoint $AWS_ENDPOINT_URL)}"
	"${AWS[@]}" s3 cp --only-show-errors "$FINAL" "$BACKUP_S3_URI/$NAME" ||
		die "upload of $NAME to $BACKUP_S3_URI failed; the local backup is kept and nothing was pruned"
	"${AWS[@]}" s3 cp --only-show-errors "$FINAL.sha256" "$BACKUP_S3_URI/$NAME.sha256" ||
		die "upload of $NAME.sha256 to $BACKUP_S3_URI failed; the local backup is kept and nothing was pruned"
	log "upload complete"
fi

# --- retention (only reached when everything above succeeded) -------------------------------

prune_local
[[ -z $BACKUP_S3_URI ]] || prune_s3

# --- metrics --------------------------------------------------------------------------------

END=$(now_epoch)
DURATION=$(awk -v a="$START" -v b="$END" 'BEGIN { printf "%.3f", b - a }')
metrics() {
	local label=$1
	cat <<EOF
# HELP palisade_backup_last_success_timestamp_seconds Unix time at which the last successful backup finished.
# TYPE palisade_backup_last_success_timestamp_seconds gauge
palisade_backup_last_success_timestamp_seconds${label} ${END%.*}
# HELP palisade_backup_last_size_bytes Size in bytes of the last successful backup file (compressed, encrypted when enabled).
# TYPE palisade_backup_last_size_bytes gauge
palisade_backup_last_size_bytes${label} $size
# HELP palisade_backup_last_duration_seconds Wall-clock duration of the last successful backup run.
# TYPE palisade_backup_last_duration_seconds gauge
palisade_backup_last_duration_seconds${label} $DURATION
EOF
}
if [[ -n $BACKUP_METRICS_FILE ]]; then
	metrics_tmp="$(dirname -- "$BACKUP_METRICS_FILE")/.$(basename -- "$BACKUP_METRICS_FILE").tmp.$$"
	TMP_FILES+=("$metrics_tmp")
	metrics "{database=\"$DB\"}" >"$metrics_tmp" || die "cannot write metrics to $metrics_tmp"
	chmod 0644 "$metrics_tmp"
	mv -f -- "$metrics_tmp" "$BACKUP_METRICS_FILE" || die "cannot write metrics file $BACKUP_METRICS_FILE"
	log "metrics written to $BACKUP_METRICS_FILE"
fi
if [[ -n $BACKUP_PUSHGATEWAY_URL ]]; then
	# The database label comes from the grouping key, so each database keeps its own group.
	metrics "" | curl --fail --silent --show-error --max-time 30 -X PUT --data-binary @- \
		"$BACKUP_PUSHGATEWAY_URL/metrics/job/palisade-backup/database/$DB" ||
		die "backup succeeded but pushing metrics to $BACKUP_PUSHGATEWAY_URL failed"
	log "metrics pushed to $BACKUP_PUSHGATEWAY_URL (job palisade-backup, database $DB)"
fi

# --- summary --------------------------------------------------------------------------------

log "backup completed successfully"
{
	printf '\nSummary:\n'
	printf '  Database:  %s (%s on disk)\n' "$DB" "$(human "$db_size")"
	printf '  Duration:  %ss\n' "$DURATION"
	printf '  File:      %s\n' "$NAME"
	printf '  Size:      %s (%s bytes; pg_dump output %s)\n' "$(human "$size")" "$size" "$(human "$dump_size")"
	printf '  SHA-256:   %s\n' "$sum"
	printf '  Location:  %s/%s\n' "$BACKUP_DIR" "${BACKUP_S3_URI:+ and $BACKUP_S3_URI/}"
	printf '  Encrypted: %s\n' "$BACKUP_ENCRYPTION"
	printf '  Pruned:    %s\n' "${#PRUNED[@]}"
	for p in "${PRUNED[@]}"; do printf '             %s\n' "$p"; done
}
