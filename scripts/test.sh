#!/usr/bin/env bash
# Runs every check and test: formatting, lints, unit tests and the integration tests
# against a real Postgres (each test gets a fresh database of its own) and the AWS emulator
# (each test that needs one starts its own moto server).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_postgres
ensure_database statehouse_test
ensure_moto
ensure_contract_tools
# Tests that talk to AWS start a private emulator each, from this binary.
export STATEHOUSE_MOTO_SERVER=$PWD/$VENV_DIR/bin/moto_server
# The contract test generates requests from the served document with this.
export STATEHOUSE_SCHEMATHESIS=$PWD/$CONTRACT_VENV/bin/schemathesis
# The integration tests create and drop their own databases through this one.
export DATABASE_URL=$(database_url statehouse_test)

# Terraform modules, Dockerfile and docker-compose.yml (installs its own tools).
scripts/check-ship.sh

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy"
cargo clippy --locked --all-targets -- -D warnings

say "tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --locked --no-fail-fast
else
    cargo test --locked --no-fail-fast
fi
