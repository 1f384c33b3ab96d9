-- The image listing (registry/db/manifests.py IMAGE_PAGE) reads the tags of its whole page
-- in one range of this index, from the page's first digest to its last, and from the
-- index alone (INCLUDE name): one probe and a heap page per listed image before, which at
-- 100,000 tags was most of the listing's reads. It replaces tags_manifest, whose leading
-- columns it has, for the foreign key's cascades too.
CREATE INDEX tags_by_manifest ON tags (repository_id, manifest_digest) INCLUDE (name);
DROP INDEX tags_manifest;
