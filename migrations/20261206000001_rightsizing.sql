-- Rightsizing (see src/sizing/): what the rightsizer last concluded for each tenant, kept
-- apart from the reconcile columns like `health` (a pass never writes it, the rightsizer
-- never takes a lease), and the sizes each tenant has had.
ALTER TABLE tenants ADD COLUMN sizing jsonb NOT NULL DEFAULT '{}'::jsonb;

-- CloudWatch reports CPU and memory as a percentage of the task's size at the time, so a
-- sample is read against the size the tenant had then. A trigger, so every writer (the
-- API, a rollout, the rightsizer, a person with psql) leaves the record.
CREATE TABLE tenant_sizes (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    since     timestamptz NOT NULL,
    cpu       integer NOT NULL CHECK (cpu > 0),
    memory    integer NOT NULL CHECK (memory > 0),
    PRIMARY KEY (tenant_id, since)
);

CREATE FUNCTION tenants_record_size() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tenant_sizes (tenant_id, since, cpu, memory)
    VALUES (NEW.id, clock_timestamp(), (NEW.spec->>'cpu')::integer, (NEW.spec->>'memory')::integer)
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END;
$$;
CREATE TRIGGER tenants_size_on_insert
    AFTER INSERT ON tenants
    FOR EACH ROW EXECUTE FUNCTION tenants_record_size();
CREATE TRIGGER tenants_size_on_update
    AFTER UPDATE ON tenants
    FOR EACH ROW
    WHEN ((OLD.spec->'cpu', OLD.spec->'memory') IS DISTINCT FROM (NEW.spec->'cpu', NEW.spec->'memory'))
    EXECUTE FUNCTION tenants_record_size();

-- Tenants that exist already have had their present size as far as anyone can tell.
INSERT INTO tenant_sizes (tenant_id, since, cpu, memory)
SELECT id, created_at, (spec->>'cpu')::integer, (spec->>'memory')::integer FROM tenants;

-- Periodic work that one worker does for everyone (a cell's health round, its rightsizing
-- slice, its check for tasks stopped out of memory): whoever moves a round's `next_at`
-- forward does it. Health rounds, named by their cell until now, become `health:<cell>`.
ALTER TABLE health_rounds RENAME TO worker_rounds;
ALTER TABLE worker_rounds RENAME COLUMN cell TO round;
UPDATE worker_rounds SET round = 'health:' || round;

-- The rightsizer's conclusions are part of what the API serves of a tenant: API processes
-- that keep tenants in memory are told of a change, as for every other column.
DROP TRIGGER tenants_announce_update ON tenants;
CREATE TRIGGER tenants_announce_update
    AFTER UPDATE ON tenants
    FOR EACH ROW
    WHEN ((OLD.id, OLD.name, OLD.display_name, OLD.postal_code, OLD.status, OLD.generation,
           OLD.observed_generation, OLD.spec, OLD.resources, OLD.endpoint, OLD.conditions,
           OLD.last_error, OLD.cell, OLD.data_policy, OLD.deletion_requested_at, OLD.paused_at,
           OLD.paused_reason, OLD.created_at, OLD.updated_at, OLD.deleted_at, OLD.health,
           OLD.sizing)
          IS DISTINCT FROM
          (NEW.id, NEW.name, NEW.display_name, NEW.postal_code, NEW.status, NEW.generation,
           NEW.observed_generation, NEW.spec, NEW.resources, NEW.endpoint, NEW.conditions,
           NEW.last_error, NEW.cell, NEW.data_policy, NEW.deletion_requested_at, NEW.paused_at,
           NEW.paused_reason, NEW.created_at, NEW.updated_at, NEW.deleted_at, NEW.health,
           NEW.sizing))
    EXECUTE FUNCTION tenants_announce_change();
