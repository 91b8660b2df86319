-- Tenants: one row per incarnation of a state's tenant. The API writes the desired state
-- (spec, generation, deletion request); the worker writes what it observed (status,
-- resources, conditions, observed_generation). A deleted tenant's row is kept as a tombstone
-- for the audit trail, so a name may have many rows but at most one that is not deleted.

CREATE TYPE tenant_status AS ENUM
    ('pending', 'provisioning', 'ready', 'updating', 'failed', 'deleting', 'deleted');
CREATE TYPE data_policy AS ENUM ('retain', 'purge');
CREATE TYPE key_role AS ENUM ('admin', 'viewer');

CREATE TABLE tenants (
    id                    uuid PRIMARY KEY,
    name                  text NOT NULL,
    display_name          text NOT NULL,
    postal_code           text NOT NULL,
    status                tenant_status NOT NULL DEFAULT 'pending',
    spec                  jsonb NOT NULL,
    generation            bigint NOT NULL DEFAULT 1 CHECK (generation >= 1),
    observed_generation   bigint NOT NULL DEFAULT 0 CHECK (observed_generation >= 0),
    resources             jsonb NOT NULL DEFAULT '{}'::jsonb,
    endpoint              text,
    conditions            jsonb NOT NULL DEFAULT '[]'::jsonb,
    last_error            text,
    cell                  text NOT NULL,
    data_policy           data_policy,
    deletion_requested_at timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    deleted_at            timestamptz,
    -- A deletion request always says what to do with the data.
    CHECK ((deletion_requested_at IS NULL) = (data_policy IS NULL)),
    CHECK ((status = 'deleted') = (deleted_at IS NOT NULL))
);

-- The guarantee behind "a live tenant of that name → 409": concurrent creates of one name
-- race on this index and exactly one wins.
CREATE UNIQUE INDEX tenants_one_live_per_name ON tenants (name) WHERE status <> 'deleted';
-- Keyset pagination in name order.
CREATE INDEX tenants_by_name ON tenants (name, id);
CREATE INDEX tenants_by_status ON tenants (status, name, id);

-- Every action on a tenant, by the API (with the key that made it) or the worker.
-- Keyed by name as well as id, so a state's history reads across its incarnations.
CREATE TABLE tenant_events (
    id          bigserial PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    tenant_name text NOT NULL,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor       text NOT NULL,
    action      text NOT NULL,
    generation  bigint NOT NULL,
    message     text NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX tenant_events_by_name ON tenant_events (tenant_name, id DESC);

-- The history is evidence for auditors: nobody, not even the service, may rewrite it.
CREATE FUNCTION tenant_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'tenant_events is append-only';
END;
$$;
CREATE TRIGGER tenant_events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON tenant_events
    FOR EACH ROW EXECUTE FUNCTION tenant_events_append_only();
CREATE TRIGGER tenant_events_no_truncate
    BEFORE TRUNCATE ON tenant_events
    FOR EACH STATEMENT EXECUTE FUNCTION tenant_events_append_only();

-- API keys. Only a SHA-256 of the token is stored: the tokens are 256 random bits, so a
-- fast hash is as strong as a slow one and keeps authentication cheap. A revoked key stays
-- for the record; its name can then be reused.
CREATE TABLE api_keys (
    id           uuid PRIMARY KEY,
    name         text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    role         key_role NOT NULL,
    token_hash   bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE UNIQUE INDEX api_keys_one_active_per_name ON api_keys (name) WHERE revoked_at IS NULL;

-- Responses to POSTs that carried an Idempotency-Key, replayed for 24 hours. Scoped per
-- API key so two callers cannot see each other's responses.
CREATE TABLE idempotency_keys (
    key_name        text NOT NULL,
    idempotency_key text NOT NULL,
    request_hash    bytea NOT NULL,
    response_status smallint NOT NULL,
    response_body   jsonb NOT NULL,
    location        text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (key_name, idempotency_key)
);
