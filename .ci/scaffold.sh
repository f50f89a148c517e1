#!/usr/bin/env bash
# The resource scaffold works and a resource is four files: generates `notes` with
# `cargo xtask new-resource notes` in this checkout, checks that exactly four files appeared and
# nothing else changed, then formats-checks, lints, builds and runs the new resource's tests and
# the schema-parity test on both backends. The generated files are removed on exit, whatever
# happens. Needs PALISADE_TEST_DATABASE_URL and PALISADE_TEST_REDIS_URL (as the test group does).
set -euo pipefail
cd "$(dirname "$0")/.."

name=notes
generated=(
	"crates/api/src/resources/$name.rs"
	"crates/api/tests/api/resources/$name.rs"
)
for file in "${generated[@]}"; do
	[ ! -e "$file" ] || { echo "scaffold: $file exists; this check needs a checkout without a $name resource" >&2; exit 1; }
done
before=$(git status --porcelain --untracked-files=all)

cleanup() {
	rm -f "${generated[@]}" migrations/postgres/*_"$name".sql migrations/sqlite/*_"$name".sql
}
trap cleanup EXIT

cargo xtask new-resource "$name"

after=$(git status --porcelain --untracked-files=all)
added=$(comm -13 <(sort <<<"$before") <(sort <<<"$after"))
count=$(grep -c . <<<"$added" || true)
echo "scaffold: files added or changed by the generator:"
echo "$added"
if [ "$count" -ne 4 ]; then
	echo "scaffold: expected exactly 4 new files, got $count" >&2
	exit 1
fi

cargo fmt --all -- --check
cargo clippy --locked -p palisade-api --all-targets --all-features -- -D warnings
: "${PALISADE_TEST_DATABASE_URL:?needs PALISADE_TEST_DATABASE_URL}" "${PALISADE_TEST_REDIS_URL:?needs PALISADE_TEST_REDIS_URL}"
CI=true cargo test --locked -p palisade-api --all-features --test api -- "resources::$name::" tenancy::the_openapi_document_covers_every_api_route
CI=true cargo test --locked -p palisade-store --test schema_parity
