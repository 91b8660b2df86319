#!/usr/bin/env bash
# The fleet-scale benchmark (examples/bench_scale.rs): onboarding 56 tenants in one cell and
# across three cells in two accounts and two regions, then what the fleet costs AWS at rest
# per tenant per resync by AWS bucket, the projection against AWS's documented limits, and
# passes, calls and events per tenant per hour. Prints figures.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

prepare_bench
cargo build --locked --bin statehouse --example bench_scale
export STATEHOUSE_BIN=$PWD/target/debug/statehouse
exec ./target/debug/examples/bench_scale
