# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154 # FILE is set for the sourcing script; PROG and BACKUP_DIR come from it.
# lib.sh — helpers shared by backup.sh, restore.sh and verify.sh. Sourced, never run: each script
# sources it from its own directory (the repository's deploy/backup, or /usr/local/bin in the image)
# after `set -Eeuo pipefail` and after setting PROG to its own name.

# A database name that is safe in file names and needs no quoting.
readonly NAME_RE='^[A-Za-z0-9_][A-Za-z0-9_.-]*$'

log() { printf '[%s] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }
warn() { printf '[%s] WARNING: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }
# die MESSAGE [STATUS]: exit with STATUS [1].
die() {
	printf '[%s] ERROR: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$1" >&2
	exit "${2:-1}"
}
usage_error() {
	printf '%s: %s (see %s --help)\n' "$PROG" "$*" "$PROG" >&2
	exit 2
}
# The comment block at the top of the running script, up to its `set -Eeuo` line.
usage() { sed -n '2,/^set -Eeuo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

now_epoch() {
	if [[ -n ${EPOCHREALTIME:-} ]]; then printf '%s\n' "${EPOCHREALTIME/,/.}"; else date +%s; fi
}

# Turns a failing command and SIGTERM/SIGINT into die (and so into the script's EXIT trap).
trap_errors() {
	trap 'die "command failed (line $LINENO): $BASH_COMMAND"' ERR
	trap 'die "interrupted by SIGTERM"' TERM
	trap 'die "interrupted by SIGINT"' INT
}

# The arguments restore.sh and verify.sh treat alike: --help, an unknown option, and the one FILE.
file_arg() {
	case $1 in
	-h | --help)
		usage
		exit 0
		;;
	-*) usage_error "unknown option: $1" ;;
	*)
		[[ -z $FILE ]] || usage_error "only one FILE may be given"
		FILE=$1
		;;
	esac
}

# psql against database $1, unaligned, quiet, stopping at the first error; more psql arguments
# (-v NAME=VALUE, -F, -c) follow, SQL on stdin unless -c is given.
sql() {
	local db=$1
	shift
	psql -X -w -q -At -v ON_ERROR_STOP=1 --dbname="$db" "$@"
}

# Filters file names on stdin down to the backups of database $1: <db>_<YYYYmmddTHHMMSSZ>.dump[.age|.gpg].
backup_names() {
	awk -v p="${1}_" 'index($0, p) == 1 && substr($0, length(p) + 1) ~ /^[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z\.dump(\.age|\.gpg)?$/'
}

# Sets FILE to the newest backup of database $1 in BACKUP_DIR (the names sort by their UTC time).
newest_backup() {
	[[ -d $BACKUP_DIR ]] || die "BACKUP_DIR '$BACKUP_DIR' does not exist; pass the backup FILE explicitly"
	FILE=$(find "$BACKUP_DIR" -maxdepth 1 -type f -printf '%f\n' | backup_names "$1" | LC_ALL=C sort -r | head -n 1)
	[[ -n $FILE ]] || die "no backups of '$1' found in $BACKUP_DIR"
	FILE=$BACKUP_DIR/$FILE
}
