-- Fleet rollouts (see src/rollout/): a change of spec shipped to many tenants in waves, by a
-- controller in the worker that only ever writes desired state. The plan is fixed at
-- creation: one `rollout_targets` row per tenant it will change, with the spec before and
-- after and the generation it was planned on.

CREATE TYPE rollout_state AS ENUM
    ('running', 'awaiting_approval', 'paused', 'rolling_back',
     'succeeded', 'rolled_back', 'rollback_failed', 'aborted');

CREATE TABLE rollouts (
    id             uuid PRIMARY KEY,
    state          rollout_state NOT NULL DEFAULT 'running',
    -- Why it is in that state, in words (a halt's cause, a pause's reason).
    reason         text,
    patch          jsonb NOT NULL,
    selector       jsonb NOT NULL,
    -- The strategy with every default filled in, so the rollout never changes meaning when
    -- the defaults of a later version do.
    strategy       jsonb NOT NULL,
    -- The tenants the plan leaves out, with why.
    skipped        jsonb NOT NULL DEFAULT '[]'::jsonb,
    waves          integer NOT NULL CHECK (waves >= 0),
    current_wave   integer NOT NULL DEFAULT 1 CHECK (current_wave >= 1),
    -- Whether the selection is the whole fleet: then success updates the fleet defaults.
    whole_fleet    boolean NOT NULL,
    created_by     text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    -- Bumped by every write, the API's and the controller's: a controller step commits only
    -- if nothing changed the rollout since it read it.
    version        bigint NOT NULL DEFAULT 1,
    -- The controller's lease, as on tenants: claimed with SKIP LOCKED, writes fenced by token.
    lease_token      uuid,
    lease_owner      text,
    lease_expires_at timestamptz,
    -- When the controller must look again even if nothing wakes it: a bake's end, a deploy
    -- deadline, the next health gate check.
    next_check_at  timestamptz NOT NULL DEFAULT now(),
    -- When the baking tenants' health was last read from AWS.
    gates_checked_at timestamptz,
    CHECK ((lease_token IS NULL) = (lease_expires_at IS NULL)),
    CHECK ((finished_at IS NULL) = (state IN ('running', 'awaiting_approval', 'paused', 'rolling_back')))
);
CREATE INDEX rollouts_by_created ON rollouts (created_at DESC, id DESC);
CREATE INDEX rollouts_active_due ON rollouts (next_check_at) WHERE finished_at IS NULL;

CREATE TYPE rollout_target_state AS ENUM
    ('pending', 'deploying', 'baking', 'succeeded', 'failed', 'superseded', 'cancelled',
     'reverting', 'reverted', 'revert_failed', 'kept');

CREATE TABLE rollout_targets (
    rollout_id        uuid NOT NULL REFERENCES rollouts (id),
    tenant_id         uuid NOT NULL REFERENCES tenants (id),
    tenant_name       text NOT NULL,
    wave              integer NOT NULL CHECK (wave >= 1),
    -- The order tenants of one wave start in.
    position          integer NOT NULL,
    state             rollout_target_state NOT NULL DEFAULT 'pending',
    from_spec         jsonb NOT NULL,
    to_spec           jsonb NOT NULL,
    -- The tenant's generation when the plan was made: the rollout writes only on it.
    planned_generation bigint NOT NULL,
    -- The generation the rollout wrote, and the one its rollback wrote.
    target_generation  bigint,
    revert_generation  bigint,
    started_at        timestamptz,
    ready_at          timestamptz,
    bake_ends_at      timestamptz,
    finished_at       timestamptz,
    revert_started_at timestamptz,
    reason            text,
    -- Why it failed, kept when it is then put back (cleared when it is tried again).
    failure           text,
    -- A person ended its bake early (`promote`): no minimum of requests applies.
    promoted          boolean NOT NULL DEFAULT false,
    -- While the rollout is active: one active rollout per tenant, whoever races.
    active            boolean NOT NULL DEFAULT true,
    PRIMARY KEY (rollout_id, tenant_id)
);
CREATE UNIQUE INDEX rollout_targets_one_active_per_tenant ON rollout_targets (tenant_id) WHERE active;
CREATE INDEX rollout_targets_by_name ON rollout_targets (tenant_name) WHERE active;

-- What happened to a rollout, by whom (`key:<name>` or `controller:<worker>`) and on what
-- trigger (`user`, `progress`, `gate`, `alarm`, `timeout`). Append-only, like tenant events.
CREATE TABLE rollout_events (
    id          bigserial PRIMARY KEY,
    rollout_id  uuid NOT NULL REFERENCES rollouts (id),
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor       text NOT NULL,
    trigger     text NOT NULL,
    action      text NOT NULL,
    tenant_name text,
    message     text NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX rollout_events_by_rollout ON rollout_events (rollout_id, id);

CREATE FUNCTION rollout_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'rollout_events is append-only';
END;
$$;
CREATE TRIGGER rollout_events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON rollout_events
    FOR EACH ROW EXECUTE FUNCTION rollout_events_append_only();
CREATE TRIGGER rollout_events_no_truncate
    BEFORE TRUNCATE ON rollout_events
    FOR EACH STATEMENT EXECUTE FUNCTION rollout_events_append_only();

-- The spec new tenants get. Seeded from the configuration the first time it is read; from
-- then on it lives here, changed by PATCH /v1/fleet/defaults and by rollouts that succeed
-- over the whole fleet.
CREATE TABLE fleet_defaults (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    spec       jsonb NOT NULL,
    version    bigint NOT NULL DEFAULT 1,
    updated_by text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
