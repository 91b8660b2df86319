#!/usr/bin/env bash
# The API benchmark on the release build: reads under load next to /healthz as the
# ceiling, then a burst of 500 mixed requests at once with two CPU hogs running (the
# worker on, the AWS emulator 100 ms away per call). Prints figures.
# STATEHOUSE_BENCH_CASES=reads or =burst runs one case; STATEHOUSE_BENCH_SECONDS sets how
# long each read load is measured; STATEHOUSE_BIN measures another statehouse binary.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

prepare_bench
say "Building the release binary and the benchmark (the first time takes about half an hour)"
cargo build --release --locked --bin statehouse --example bench_api
export STATEHOUSE_BIN=${STATEHOUSE_BIN:-$PWD/target/release/statehouse}
exec ./target/release/examples/bench_api
