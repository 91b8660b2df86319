-- Rightsizing (see src/sizing/): what the rightsizer last concluded for each tenant, kept
-- apart from the reconcile columns like `health` (a pass never writes it, the rightsizer
-- never takes a lease), and the sizes each tenant has had.
ALTER TABLE tenants ADD COLUMN sizing jsonb NOT NULL DEFAULT '{}'::jsonb;

-- CloudWatch reports CPU and memory as a percentage of the task's size at the time, so a
-- sample is read against the size the tenant's tasks had then. A size counts from when a
-- deployment of it completed (the tenant is ready at the generation that asked for it):
-- until then the old tasks run and report against the old size, and a deployment that
-- fails and is rolled back never counts at all. A trigger, so every way a spec is written
-- (the API, a rollout, the rightsizer, a person with psql) is covered.
CREATE TABLE tenant_sizes (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    since     timestamptz NOT NULL,
    cpu       integer NOT NULL CHECK (cpu > 0),
    memory    integer NOT NULL CHECK (memory > 0),
    PRIMARY KEY (tenant_id, since)
);

CREATE FUNCTION tenants_record_size() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last tenant_sizes%ROWTYPE;
BEGIN
    SELECT * INTO last FROM tenant_sizes WHERE tenant_id = NEW.id ORDER BY since DESC LIMIT 1;
    IF NOT FOUND
       OR last.cpu IS DISTINCT FROM (NEW.spec->>'cpu')::integer
       OR last.memory IS DISTINCT FROM (NEW.spec->>'memory')::integer THEN
        INSERT INTO tenant_sizes (tenant_id, since, cpu, memory)
        VALUES (NEW.id, clock_timestamp(), (NEW.spec->>'cpu')::integer, (NEW.spec->>'memory')::integer)
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END;
$$;
-- A new tenant has no task before its first deployment: its first size counts from then on.
CREATE TRIGGER tenants_size_on_insert
    AFTER INSERT ON tenants
    FOR EACH ROW EXECUTE FUNCTION tenants_record_size();
CREATE TRIGGER tenants_size_on_deployed
    AFTER UPDATE ON tenants
    FOR EACH ROW
    WHEN (OLD.observed_generation IS DISTINCT FROM NEW.observed_generation
          AND NEW.observed_generation = NEW.generation)
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
