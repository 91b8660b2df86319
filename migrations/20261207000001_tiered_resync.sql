-- The request_seq at which the tenant's last pass found it whole (every resource matching
-- generation `observed_generation`, its deployment complete). While request_seq still
-- equals it, nothing was asked of the tenant since: a resync round compares it from
-- batched calls, and its next due pass is a deep check rather than a full pass. A round
-- that finds drift clears it, which makes the next pass a full one.
ALTER TABLE tenants ADD COLUMN whole_at_seq bigint;

-- The resync round reads the whole tenants of one cell.
CREATE INDEX tenants_whole_by_cell ON tenants (cell)
    WHERE status = 'ready' AND whole_at_seq IS NOT NULL;
