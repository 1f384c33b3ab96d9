-- The catalog (registry/db/repositories.py CATALOG_PAGE) lists only repositories that hold
-- a manifest: one EXISTS probe per listed repository. Through the primary key
-- (repository_id, digest: ~90 bytes an entry) that probe went one B-tree level deeper
-- between 1,000 and 100,000 manifests; this index holds the repository ids alone,
-- deduplicated (a few bytes a manifest), stays two levels deep and in the buffers.
CREATE INDEX manifests_repository ON manifests (repository_id);
