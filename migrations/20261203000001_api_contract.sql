-- A replayed create answers with the ETag the first answer carried, so a client that
-- retried can go on to PATCH with If-Match exactly as if its first try had come back.
-- Responses stored before this column existed replay without one.
ALTER TABLE idempotency_keys ADD COLUMN etag text;
