#!/usr/bin/env bash
# Runs statehouse locally: starts Postgres if needed, creates the dev database, and serves
# the API with a dev admin token that is kept in .dev/admin-token.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

if [ -f .env ]; then
    set -a; source .env; set +a
fi

ensure_postgres
ensure_database statehouse_dev
export DATABASE_URL=${DATABASE_URL:-$(database_url statehouse_dev)}

mkdir -p .dev
if [ -z "${STATEHOUSE_BOOTSTRAP_ADMIN_TOKEN:-}" ]; then
    [ -s .dev/admin-token ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > .dev/admin-token
    STATEHOUSE_BOOTSTRAP_ADMIN_TOKEN=$(cat .dev/admin-token)
fi
export STATEHOUSE_BOOTSTRAP_ADMIN_TOKEN
export STATEHOUSE_LISTEN=${STATEHOUSE_LISTEN:-127.0.0.1:8080}

say "Building statehouse"
cargo build --locked --bin statehouse

cat <<MSG

  Swagger UI:       http://$STATEHOUSE_LISTEN/docs/
  Dev admin token:  $STATEHOUSE_BOOTSTRAP_ADMIN_TOKEN
                    (click "Authorize" in the Swagger UI and paste it)
  Try:              curl -H "Authorization: Bearer $STATEHOUSE_BOOTSTRAP_ADMIN_TOKEN" http://$STATEHOUSE_LISTEN/v1/tenants

MSG
exec ./target/debug/statehouse serve
