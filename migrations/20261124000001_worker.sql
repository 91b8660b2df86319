-- The reconciler's bookkeeping on each tenant row.
--
-- Leases: a worker claims a due tenant by writing a fresh `lease_token` and an expiry in
-- one `FOR UPDATE SKIP LOCKED` statement, then holds no lock while it calls AWS. Every write
-- it makes afterwards says `WHERE lease_token = $token`, so a worker whose lease expired
-- (paused, partitioned) and was taken over can no longer change the row: its writes are
-- fenced off. The token is new on every claim, so a worker cannot even fence itself in by
-- mistake across two claims of one tenant.
ALTER TABLE tenants
    ADD COLUMN lease_token      uuid,
    ADD COLUMN lease_owner      text,
    ADD COLUMN lease_expires_at timestamptz,
    -- When the tenant is next due: now() after any API write (so a NOTIFY finds it due),
    -- a backoff after a transient error, the resync interval after a clean pass, and
    -- 'infinity' after a permanent error (it waits for a new spec or a reconcile request).
    ADD COLUMN next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    -- Bumped by every API write that asks for work. A worker remembers it at claim time; if
    -- it moved while the worker was busy, the tenant is due again at once on release
    -- instead of after the resync interval.
    ADD COLUMN request_seq      bigint NOT NULL DEFAULT 0,
    -- When the current desired state was asked for; time-to-ready is measured from it.
    ADD COLUMN requested_at     timestamptz NOT NULL DEFAULT now(),
    -- Consecutive failed passes, and since when: transient errors become `failed` only
    -- once they have lasted longer than the retry budget.
    ADD COLUMN attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    ADD COLUMN failing_since    timestamptz,
    ADD CHECK ((lease_token IS NULL) = (lease_expires_at IS NULL));

-- The claim query's scan: live tenants by due time.
CREATE INDEX tenants_due ON tenants (next_attempt_at) WHERE status <> 'deleted';

-- Listener rule priorities, one per tenant incarnation per cell. The primary key is the
-- uniqueness guarantee: two workers allocating at once cannot both take a priority, and a
-- priority is free again only once the tenant's rule is verified deleted.
CREATE TABLE rule_priorities (
    cell       text NOT NULL,
    priority   integer NOT NULL CHECK (priority BETWEEN 1 AND 50000),
    tenant_id  uuid NOT NULL UNIQUE REFERENCES tenants (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cell, priority)
);
