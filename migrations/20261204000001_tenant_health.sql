-- What the worker last observed of each tenant in AWS (its health snapshot, see
-- src/health/): `unknown` until it is first observed. Kept apart from the reconcile
-- columns: observing never takes a tenant's lease, and a pass never writes it.
ALTER TABLE tenants ADD COLUMN health jsonb NOT NULL
    DEFAULT '{"status": "unknown", "reason": "not observed yet"}';

-- `GET /v1/tenants?health=` and the fleet view count and filter by the rolled-up status.
CREATE INDEX tenants_health_status ON tenants ((health->>'status'), name)
    WHERE status <> 'deleted';

-- One observation round per cell and interval, whatever the number of workers: the worker
-- that moves `next_at` forward observes the cell, the others skip it.
CREATE TABLE health_rounds (
    cell text PRIMARY KEY,
    next_at timestamptz NOT NULL,
    owner text NOT NULL
);

-- A change of health is a change of what the API serves: API processes that keep tenants
-- in memory are told, as for every other column.
DROP TRIGGER tenants_announce_update ON tenants;
CREATE TRIGGER tenants_announce_update
    AFTER UPDATE ON tenants
    FOR EACH ROW
    WHEN ((OLD.id, OLD.name, OLD.display_name, OLD.postal_code, OLD.status, OLD.generation,
           OLD.observed_generation, OLD.spec, OLD.resources, OLD.endpoint, OLD.conditions,
           OLD.last_error, OLD.cell, OLD.data_policy, OLD.deletion_requested_at, OLD.paused_at,
           OLD.paused_reason, OLD.created_at, OLD.updated_at, OLD.deleted_at, OLD.health)
          IS DISTINCT FROM
          (NEW.id, NEW.name, NEW.display_name, NEW.postal_code, NEW.status, NEW.generation,
           NEW.observed_generation, NEW.spec, NEW.resources, NEW.endpoint, NEW.conditions,
           NEW.last_error, NEW.cell, NEW.data_policy, NEW.deletion_requested_at, NEW.paused_at,
           NEW.paused_reason, NEW.created_at, NEW.updated_at, NEW.deleted_at, NEW.health))
    EXECUTE FUNCTION tenants_announce_change();
