#!/usr/bin/env bash
# The onboarding benchmark: N = 1, 10 and 56 tenants through the API against a fresh AWS
# emulator each, next to the emulator's own floor measured in the same run; then the slow
# emulator (every call 100 ms later through a fault proxy enforcing the ECS limits), 1 and 56
# tenants. Prints figures. STATEHOUSE_BENCH_CASES=plain or =slow runs one case;
# STATEHOUSE_BENCH_FAULTS replaces the slow case's rules (see README, "Faults").
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

prepare_bench
cargo build --locked --bin statehouse --example bench_onboard
export STATEHOUSE_BIN=$PWD/target/debug/statehouse
exec ./target/debug/examples/bench_onboard
