#!/usr/bin/env bash
# Runs statehouse locally, end to end: Postgres (started if needed) with a dev database,
# the AWS emulator with the shared platform in it (`statehouse dev bootstrap`), and
# `statehouse serve` with its worker. The dev admin token is kept in .dev/admin-token.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

if [ -f .env ]; then
    set -a; source .env; set +a
fi

ensure_postgres
ensure_database statehouse_dev
ensure_moto
export DATABASE_URL=${DATABASE_URL:-$(database_url statehouse_dev)}

mkdir -p .dev
if [ -z "${STATEHOUSE_BOOTSTRAP_ADMIN_TOKEN:-}" ]; then
    [ -s .dev/admin-token ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > .dev/admin-token
    STATEHOUSE_BOOTSTRAP_ADMIN_TOKEN=$(cat .dev/admin-token)
fi
export STATEHOUSE_BOOTSTRAP_ADMIN_TOKEN
export STATEHOUSE_LISTEN=${STATEHOUSE_LISTEN:-127.0.0.1:8080}
# Health every 15 s rather than every minute, so what is done by hand shows soon.
export STATEHOUSE_HEALTH_INTERVAL=${STATEHOUSE_HEALTH_INTERVAL:-15s}
export STATEHOUSE_ROLLOUT_GATE_INTERVAL=${STATEHOUSE_ROLLOUT_GATE_INTERVAL:-5s}
# Recommendations every minute rather than every hour, for metrics put by hand
# (`statehouse dev put-metrics`) to show soon.
export STATEHOUSE_SIZING_INTERVAL=${STATEHOUSE_SIZING_INTERVAL:-1m}
# The emulator is statehouse's alone: it may use all of each documented AWS limit.
export STATEHOUSE_AWS_BUDGET_SHARE=${STATEHOUSE_AWS_BUDGET_SHARE:-1}

say "Building statehouse"
cargo build --locked --bin statehouse

# The emulator keeps everything in memory: a new one starts empty, and the worker then
# rebuilds every tenant the dev database holds.
MOTO_PORT=${STATEHOUSE_DEV_MOTO_PORT:-4599}
export AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT
export AWS_REGION=${AWS_REGION:-us-east-1} AWS_ACCESS_KEY_ID=dev AWS_SECRET_ACCESS_KEY=dev
if ! curl -fs "$AWS_ENDPOINT_URL/moto-api/" >/dev/null 2>&1; then
    say "Starting the AWS emulator on $AWS_ENDPOINT_URL (log: .dev/moto.log)"
    MOTO_ECS_SERVICE_RUNNING=${MOTO_ECS_SERVICE_RUNNING:-10} \
        "$VENV_DIR/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >.dev/moto.log 2>&1 &
    MOTO_PID=$!
    for _ in $(seq 1 100); do
        curl -fs "$AWS_ENDPOINT_URL/moto-api/" >/dev/null 2>&1 && break
        sleep 0.1
    done
fi

say "Creating the shared platform in the emulator"
if [ "${STATEHOUSE_DEV_SECOND_ACCOUNT:-}" = 1 ]; then
    # Two cells in two emulated accounts: cell-1 here, and `dedicated` in account
    # 222222222222 (us-west-2), reached by AssumeRole; both in .dev/cells.toml.
    rm -f .dev/cells.toml
    ./target/debug/statehouse dev bootstrap --out .dev/platform.env \
        --cells-file .dev/cells.toml --cell cell-1 >/dev/null
    AWS_REGION=us-west-2 ./target/debug/statehouse dev bootstrap --name statehouse-dedicated \
        --out .dev/dedicated.env --role-arn arn:aws:iam::222222222222:role/statehouse-cell \
        --cells-file .dev/cells.toml --cell dedicated --capacity 5 >/dev/null
    export STATEHOUSE_CELLS_FILE=$PWD/.dev/cells.toml
else
    ./target/debug/statehouse dev bootstrap --out .dev/platform.env >/dev/null
fi
set -a; source .dev/platform.env; set +a

# On AWS, ECS registers each running task with its service's target group; the emulator
# does not, so the dev stack does it every few seconds (else every tenant would show `down`:
# no healthy target).
( while sleep 5; do ./target/debug/statehouse dev attach-tasks >/dev/null 2>&1 || true; done ) &
ATTACH_PID=$!
trap 'kill $ATTACH_PID ${MOTO_PID:-} 2>/dev/null || true' EXIT

cat <<MSG

  Swagger UI:       http://$STATEHOUSE_LISTEN/docs/
  Dev admin token:  $STATEHOUSE_BOOTSTRAP_ADMIN_TOKEN
                    (click "Authorize" in the Swagger UI and paste it)
  Try:              curl -H "Authorization: Bearer $STATEHOUSE_BOOTSTRAP_ADMIN_TOKEN" \\
                         -H 'content-type: application/json' -d '{"name":"california"}' \\
                         http://$STATEHOUSE_LISTEN/v1/tenants
  AWS emulator:     $AWS_ENDPOINT_URL (platform settings in .dev/platform.env)

MSG
./target/debug/statehouse serve
