# Shared set-up for the run and test scripts: make sure Postgres is up and a database of
# ours exists. Sourced, not run.

PGHOST_ADDR=${PGHOST_ADDR:-127.0.0.1}
PGPORT_NUM=${PGPORT_NUM:-5432}
PGUSER_NAME=${PGUSER_NAME:-postgres}

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

ensure_postgres() {
    if pg_isready -q -h "$PGHOST_ADDR" -p "$PGPORT_NUM"; then
        return
    fi
    say "Postgres is not answering on $PGHOST_ADDR:$PGPORT_NUM; starting it"
    if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
        local version
        version=$(ls /etc/postgresql | sort -V | tail -n 1)
        pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    else
        die "Postgres is not running and pg_ctlcluster is not available: start Postgres on $PGHOST_ADDR:$PGPORT_NUM"
    fi
    for _ in $(seq 1 30); do
        pg_isready -q -h "$PGHOST_ADDR" -p "$PGPORT_NUM" && return
        sleep 1
    done
    die "Postgres did not come up on $PGHOST_ADDR:$PGPORT_NUM"
}

ensure_database() {
    local name=$1
    if ! psql -h "$PGHOST_ADDR" -p "$PGPORT_NUM" -U "$PGUSER_NAME" -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$name'" | grep -q 1; then
        say "Creating database $name"
        psql -h "$PGHOST_ADDR" -p "$PGPORT_NUM" -U "$PGUSER_NAME" -d postgres -qc "CREATE DATABASE \"$name\""
    fi
}

database_url() {
    echo "postgres://$PGUSER_NAME@$PGHOST_ADDR:$PGPORT_NUM/$1"
}

# The AWS emulator (moto's server mode) in a virtualenv of the project's own.
MOTO_VERSION=5.1.22
VENV_DIR=${VENV_DIR:-.venv}

ensure_moto() {
    if [ -x "$VENV_DIR/bin/moto_server" ] && "$VENV_DIR/bin/python" -c \
        "import importlib.metadata as m, sys; sys.exit(m.version('moto') != '$MOTO_VERSION')" 2>/dev/null; then
        return
    fi
    say "Installing the AWS emulator (moto $MOTO_VERSION) into $VENV_DIR"
    python3 -m venv "$VENV_DIR"
    "$VENV_DIR/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
}

# The contract test's request generator (schemathesis, every package pinned) in a
# virtualenv of its own, so its dependencies never meet the emulator's.
CONTRACT_VENV=${CONTRACT_VENV:-.venv-contract}
CONTRACT_REQUIREMENTS=tests/contract/requirements.txt

ensure_contract_tools() {
    local stamp="$CONTRACT_VENV/.installed" want
    want=$(sha256sum "$CONTRACT_REQUIREMENTS" | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return
    fi
    say "Installing the contract test's tools (schemathesis) into $CONTRACT_VENV"
    python3 -m venv "$CONTRACT_VENV"
    "$CONTRACT_VENV/bin/pip" install --quiet --disable-pip-version-check -r "$CONTRACT_REQUIREMENTS"
    echo "$want" > "$stamp"
}

# What a benchmark needs: Postgres, the emulator, and a database URL on which it may
# create (and re-create) databases of its own.
prepare_bench() {
    ensure_postgres
    ensure_moto
    export STATEHOUSE_MOTO_SERVER=$PWD/$VENV_DIR/bin/moto_server
    export DATABASE_URL=$(database_url postgres)
}
