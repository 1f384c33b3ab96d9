-- Which process holds an upload session's lease (host:pid), so the supervisor can give
-- a dead worker's uploads back at once instead of after their lease runs out.
ALTER TABLE upload_sessions ADD COLUMN busy_by text;
CREATE INDEX upload_sessions_busy_by ON upload_sessions (busy_by) WHERE busy_by IS NOT NULL;
