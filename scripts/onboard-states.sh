#!/usr/bin/env bash
# Onboards a list of states through the statehouse CLI and reports the ones that failed.
#
#   scripts/onboard-states.sh california texas ohio
#   scripts/onboard-states.sh < states.txt          # one name a line, `#` comments
#
# Needs `statehouse` (or $STATEHOUSE) and `jq` on PATH, and the API's address and key the
# way the CLI finds them: STATEHOUSE_API_URL and STATEHOUSE_TOKEN, or the config file.
# Settings: CONCURRENCY (default 8), TIMEOUT for each tenant (default 15m), and any
# `statehouse tenants create` flags in CREATE_FLAGS (e.g. "--image humangov/app:1.4.0").
#
# Every state is created (or, if it exists, followed) until it is ready or fails; the
# CLI's JSON summary is kept in onboard-report.json (or $REPORT). Exits 0 when every state is
# ready, 1 when any failed.
set -euo pipefail

STATEHOUSE=${STATEHOUSE:-statehouse}
REPORT=${REPORT:-onboard-report.json}
command -v jq >/dev/null || { echo "error: this script needs jq" >&2; exit 2; }

# The names always go through --from-file, so even a single state gets the bulk report (an
# array, with existing states followed rather than refused).
names() {
    if [ $# -gt 0 ]; then printf '%s\n' "$@"; else cat; fi
}

# Progress goes to stderr (plain lines in a pipe or log); the JSON result goes to stdout.
# The CLI exits non-zero when any tenant failed; the report says which, so carry on.
status=0
# shellcheck disable=SC2086 # CREATE_FLAGS is meant to split into flags
names "$@" | "$STATEHOUSE" tenants create --from-file - ${CREATE_FLAGS:-} \
    --wait --timeout "${TIMEOUT:-15m}" --concurrency "${CONCURRENCY:-8}" \
    --output json > "$REPORT" || status=$?

if ! jq -e 'type == "array"' "$REPORT" >/dev/null 2>&1; then
    # Nothing was attempted: a usage, authentication or connection error, already printed.
    [ "$status" -ne 0 ] || status=1
    exit "$status"
fi

total=$(jq length "$REPORT")
ok=$(jq '[.[] | select(.exit_code == 0)] | length' "$REPORT")
echo "$ok of $total states onboarded"
jq -r '.[] | select(.exit_code == 0) | "  ok      \(.name)  \(.endpoint // .status)"' "$REPORT"
jq -r '.[] | select(.exit_code != 0) | "  FAILED  \(.name)  (\(.result)) \(.error)"' "$REPORT"
[ "$ok" -eq "$total" ]
