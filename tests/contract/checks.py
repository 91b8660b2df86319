"""The contract's own checks, on top of schemathesis's built-in ones.

Loaded by tests/api/contract.rs through SCHEMATHESIS_HOOKS. Two rules the built-in checks
cannot state:

- A request that breaks a schema rule is refused with a problem whose `errors` name the
  part of the request at fault: a body member by its dotted path (or `body`), the path
  parameter `name`, a query parameter or a header by its name.
- A request that keeps every schema rule is refused with a 400 or a 422 only for a rule the
  document states in words: a pagination cursor the server did not issue, the rules
  between the spec's members (Fargate's cpu/memory pairs, min <= desired <= max, the
  size of the environment in bytes), and a rollout's rules against the fleet it meets
  (a selection that matches no live tenant, a canary or waves the tenants to change do not
  add up to, a patch some tenant's spec cannot hold). Anything else would be a rule the
  document hides.
"""

import json
import re

import schemathesis

PROBLEM = "application/problem+json"
# What a 422 may name for a request that keeps every schema rule: the member a rule between
# members blames (memory for a cpu/memory pair, min or max for the order of the counts, and
# the same for the sizing bounds: a bound's memory for its pair, min for min above max).
CROSS_FIELD = {"spec.memory", "spec.min_count", "spec.max_count",
               "spec.sizing.min.memory", "spec.sizing.max.memory", "spec.sizing.min.cpu"}
# What a 422 may name for a rollout that keeps every schema rule, each stated in the
# document's words: the rules between the patched spec's members, the canary and the waves
# against the tenants to change (and `waves` with `growth`), and the selection against the
# fleet and its cells.
ROLLOUT_RULES = re.compile(
    r"^(patch\.(memory|min_count|max_count|sizing\.min\.(cpu|memory)|sizing\.max\.memory)"
    r"|strategy\.(canary|waves)(\[\d+\])?|strategy\.growth"
    r"|selector|selector\.(only|cells)\[\d+\])$"
)
IDEMPOTENCY_REUSED = "urn:statehouse:problem:idempotency-key-reused"


def problem_of(response):
    if response.status_code not in (400, 422):
        return None
    content_type = response.headers.get("content-type", [""])
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    assert content_type.startswith(PROBLEM), f"a {response.status_code} must be {PROBLEM}, not {content_type!r}"
    return json.loads(response.content)


def negative_locations(case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_negative:
        return set()
    return {str(location.value if hasattr(location, "value") else location)
            for location, info in meta.components.items() if info.mode.is_negative}


def documented(case, location):
    """The operation's own parameters there (a bad Authorization is a 401, not a 4xx with fields)."""
    names = {p.name.lower() for p in case.operation.iter_parameters() if str(p.location.value) == location}
    return names - {"authorization"}


def parameter_names(case, location):
    sent = {"query": case.query, "header": case.headers, "path": case.path_parameters}.get(location) or {}
    return documented(case, location) | {str(name).lower() for name in sent}


def names_location(field, case, location):
    field = field.lower()
    if location == "body":
        others = set().union(*(parameter_names(case, loc) for loc in ("path", "query", "header")))
        return field == "body" or field.split(".")[0] not in others
    return field in parameter_names(case, location)


@schemathesis.check
def problems_name_what_is_wrong(ctx, response, case):
    """Every 422, and every 400 about a JSON body or a parameter, names the part at fault."""
    problem = problem_of(response)
    if problem is None:
        return None
    errors = problem.get("errors") or []
    not_json = response.status_code == 400 and problem.get("detail", "").startswith("the body is not valid JSON")
    if not_json or problem.get("type") == IDEMPOTENCY_REUSED:
        return None
    assert errors, f"a {response.status_code} problem must name what is wrong in `errors`: {problem}"
    fields = [e["field"] for e in errors]
    # Headers the document does not name (a stray Content-Type on a GET) are not the
    # server's to judge; a broken rule of a documented header is.
    locations = {loc for loc in negative_locations(case) if loc != "header" or documented(case, "header")}
    if locations:
        assert any(names_location(f, case, loc) for f in fields for loc in locations), (
            f"the request broke a rule of its {sorted(locations)}, but the problem names {fields}"
        )
    return True


@schemathesis.check
def valid_requests_are_refused_only_for_stated_rules(ctx, response, case):
    """A schema-valid request gets a 400 only for a cursor, and a 422 only for a cross-field rule."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    problem = problem_of(response)
    if problem is None or problem.get("type") == IDEMPOTENCY_REUSED:
        return None
    errors = problem.get("errors") or []
    if response.status_code == 400:
        fields = {e["field"] for e in errors}
        assert fields == {"cursor"}, f"a schema-valid request got a 400 about {fields or problem}"
        return True
    # The environment's sizes are in bytes of UTF-8, which JSON Schema cannot count.
    unstated = [e for e in errors if e["field"] not in CROSS_FIELD
                and not ROLLOUT_RULES.match(e["field"])
                and not (e["field"].startswith(("spec.env", "patch.env")) and "bytes" in e["message"])]
    assert not unstated, f"a schema-valid request was refused for a rule the document does not state: {unstated}"
    return True
