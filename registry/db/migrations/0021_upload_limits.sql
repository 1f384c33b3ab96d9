-- Who opened an upload session (user or robot; NULL for the service's own uploads), so
-- open sessions can be capped per principal and per repository; and who pushed each blob
-- into a repository, so per-principal storage quotas per namespace can be enforced.
ALTER TABLE upload_sessions ADD COLUMN principal text;
CREATE INDEX upload_sessions_principal ON upload_sessions (principal) WHERE principal IS NOT NULL;
CREATE INDEX upload_sessions_repository ON upload_sessions (repository_id);
ALTER TABLE repository_blobs ADD COLUMN pushed_by text;
CREATE INDEX repository_blobs_pushed_by ON repository_blobs (pushed_by) WHERE pushed_by IS NOT NULL;
