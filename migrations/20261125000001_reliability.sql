-- Pause: an operator repairing a tenant by hand stops the worker from touching it. A paused
-- tenant is never claimed; pausing also takes the lease away, so a pass in flight has its
-- next write refused and stops there. Resuming makes the tenant due at once.
ALTER TABLE tenants
    ADD COLUMN paused_at     timestamptz,
    ADD COLUMN paused_reason text CHECK (length(paused_reason) <= 500),
    ADD CHECK (paused_reason IS NULL OR paused_at IS NOT NULL);

-- Placement counts the live tenants of each cell (one target group each).
CREATE INDEX tenants_live_by_cell ON tenants (cell) WHERE status <> 'deleted';
