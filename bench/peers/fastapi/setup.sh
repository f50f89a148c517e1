#!/usr/bin/env bash
# Creates (or refreshes) the FastAPI peer's venv in the bench cache from the pinned requirements.
# Idempotent: does nothing when the venv already matches requirements.txt.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/palisade-bench}/venv"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
printf '%s\n' "$want" >"$stamp"
