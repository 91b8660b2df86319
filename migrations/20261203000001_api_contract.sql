-- A replayed create answers with the ETag the first answer carried, so a client that
-- retried can go on to PATCH with If-Match exactly as if its first try had come back.
-- Responses stored before this column existed replay without one.
ALTER TABLE idempotency_keys ADD COLUMN etag text;

-- Every change to what the API serves of a tenant is announced, with the tenant's name, on
-- statehouse_tenant_rows as it commits: API processes that keep tenants they have read in
-- memory forget them. A trigger, so no writer (API, worker, a person with psql) can forget
-- to announce; heartbeats and claims, which change only the lease columns, stay quiet.
CREATE FUNCTION tenants_announce_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('statehouse_tenant_rows', OLD.name);
    ELSE
        PERFORM pg_notify('statehouse_tenant_rows', NEW.name);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER tenants_announce_insert_or_delete
    AFTER INSERT OR DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION tenants_announce_change();
CREATE TRIGGER tenants_announce_update
    AFTER UPDATE ON tenants
    FOR EACH ROW
    WHEN ((OLD.id, OLD.name, OLD.display_name, OLD.postal_code, OLD.status, OLD.generation,
           OLD.observed_generation, OLD.spec, OLD.resources, OLD.endpoint, OLD.conditions,
           OLD.last_error, OLD.cell, OLD.data_policy, OLD.deletion_requested_at, OLD.paused_at,
           OLD.paused_reason, OLD.created_at, OLD.updated_at, OLD.deleted_at)
          IS DISTINCT FROM
          (NEW.id, NEW.name, NEW.display_name, NEW.postal_code, NEW.status, NEW.generation,
           NEW.observed_generation, NEW.spec, NEW.resources, NEW.endpoint, NEW.conditions,
           NEW.last_error, NEW.cell, NEW.data_policy, NEW.deletion_requested_at, NEW.paused_at,
           NEW.paused_reason, NEW.created_at, NEW.updated_at, NEW.deleted_at))
    EXECUTE FUNCTION tenants_announce_change();
