#!/usr/bin/env bash
# Builds the loco peer ONCE into the bench cache (never in the repository, never in CI): loco's
# own generator makes its SaaS starter (SQLite and PostgreSQL both compiled in), scaffolds a
# `notes` resource, and the notes read is made to require loco's JWT auth, as palisade's read
# requires a token. About 25 minutes on two cores. Everything comes from crates.io.
#
# usage: bench/peers/loco/setup.sh       (then bench/run.sh finds it)
# Rebuild from scratch: remove ${BENCH_CACHE:-~/.cache/palisade-bench}/loco and run it again.
set -euo pipefail
cache="${BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/palisade-bench}/loco"
tools="$cache/tools"
app="$cache/app"
export PATH="$tools/bin:$PATH"
mkdir -p "$cache"

[[ -x "$tools/bin/loco" ]] || nice -n 10 cargo install --locked loco@1.2.0 --root "$tools"
[[ -x "$tools/bin/sea-orm-cli" ]] || nice -n 10 cargo install --locked sea-orm-cli@^2 --root "$tools"

if [[ ! -f "$app/Cargo.toml" ]]; then
    rm -rf "$cache/gen"
    mkdir -p "$cache/gen"
    (cd "$cache/gen" && loco new -n bench_notes --db sqlite --bg async --assets none -p .)
    mv "$cache/gen/bench_notes" "$app"
    rmdir "$cache/gen"
    # Release builds for everything but the generator (below): its own `cargo loco db ...` steps too.
    sed -i 's/^loco = "run --"$/loco = "run --release --"/' "$app/.cargo/config.toml"
fi

cd "$app"
if [[ ! -f src/controllers/notes.rs ]]; then
    # loco compiles its generators into debug builds only (`generate` is unknown to a release
    # build), so this one step runs a debug build; the migration and entity steps it runs itself
    # go through the `cargo loco` alias, in release mode.
    nice -n 10 cargo run -- generate scaffold notes title:string --api
fi
# The scaffolded read is public; palisade's is not. Require loco's JWT extractor on it.
if ! grep -q '_auth: auth::JWT' src/controllers/notes.rs; then
    sed -i 's/pub async fn get_one(/pub async fn get_one(\n    _auth: auth::JWT,/' src/controllers/notes.rs
    grep -q '_auth: auth::JWT' src/controllers/notes.rs || {
        echo "could not patch get_one in $app/src/controllers/notes.rs" >&2
        exit 1
    }
fi
nice -n 10 cargo build --release
ls -l "$app/target/release/bench_notes-cli"
