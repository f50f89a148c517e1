# Shortcuts for the commands a newcomer needs; each recipe is a thin call into cargo, .ci/run or
# bench/run.sh, so CI (which calls those directly) and `just` can never disagree.
# Install just: `cargo install just --locked`, or your package manager (`apt install just` on
# Debian 13 / Ubuntu 24.04 and later, `brew install just`). `just --list` shows the recipes.

# The test harness's services (README "Tests"); override with `just pg=... redis=... test-pg`.
pg := env_var_or_default("PALISADE_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
redis := env_var_or_default("PALISADE_TEST_REDIS_URL", "redis://127.0.0.1:6379")

# List the recipes.
default:
    @just --list

# Serve on http://127.0.0.1:8080 with the embedded defaults (SQLite, development tokens).
dev *args:
    cargo run -- {{args}}

# The test suite on SQLite only (PostgreSQL/Redis variants print a notice and do nothing).
test *args:
    cargo test --workspace --all-features --locked {{args}}

# The full test suite, also on PostgreSQL + Redis (what CI runs).
test-pg *args:
    PALISADE_TEST_DATABASE_URL={{pg}} PALISADE_TEST_REDIS_URL={{redis}} CI=true cargo test --workspace --all-features --locked {{args}}

# fmt, cargo-deny, cargo-machete, clippy -D warnings (CI's lint group).
lint:
    bash .ci/run lint

# observability/, deploy/, workflows and shell scripts (CI's validate group).
validate:
    bash .ci/run validate

# k6 smoke test, schemathesis, live /metrics, benchmark and resilience smoke (CI's smoke group).
smoke:
    bash .ci/run smoke

# The pairwise benchmark (bench/README.md); e.g. `just bench --quick --only health`.
bench *args:
    cargo build --release --locked -p palisade-api -p bare-axum
    bash bench/run.sh {{args}}

# API documentation of every crate, opened in a browser with `just docs --open`.
docs *args:
    cargo doc --workspace --no-deps --all-features {{args}}
