#!/usr/bin/env bash
# The onboarding benchmark: N = 1, 10 and 56 tenants through the API against a fresh AWS
# emulator each, next to the emulator's own floor measured in the same run; then the slow
# emulator (every call 100 ms later through a fault proxy enforcing the ECS limits), 1 and 56
# tenants; then rollouts: a new image to 56 ready tenants in waves of 1, 5 and 50 against 56
# concurrent PATCHes of the same change, plain and slow, and the time from a canary's failure
# to its rollout halting. Prints figures. STATEHOUSE_BENCH_CASES=plain, =slow or =rollout
# runs one case;
# STATEHOUSE_BENCH_FAULTS replaces the slow case's rules (see README, "Faults").
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

prepare_bench
cargo build --locked --bin statehouse --example bench_onboard
export STATEHOUSE_BIN=$PWD/target/debug/statehouse
exec ./target/debug/examples/bench_onboard
