-- How many tags and manifests each repository holds, for the repository listing
-- (/api/v1/repositories), at a cost that does not grow with the repository.
--
-- Counting the rows of every listed repository read all of them (100,000 tags in one
-- repository: its page 3.2x slower at 100x in bench/scale.py). A counter in one row
-- updated by every push would queue all pushes to a repository behind each other (and
-- repositories.ensure never touches the repository row for that reason). So writes only
-- insert: statement triggers on tags and manifests append one signed delta per repository
-- per statement to repository_count_deltas, which no one updates; the housekeeping of
-- each worker folds them into repository_counts (repositories.fold_counts), and a listing
-- reads the folded row plus the few deltas not folded yet.

-- Lock writers out until the counts below are committed together with their triggers:
-- a tag or manifest written in between would be neither backfilled nor counted. Taken in
-- the order pushes take them (manifest, then its tags).
LOCK TABLE manifests, tags IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE repository_counts (
    repository_id  bigint PRIMARY KEY,
    tags           bigint NOT NULL,
    manifests      bigint NOT NULL
);

-- Insert-only (the fold deletes what it moved). No foreign key: its check would lock the
-- repository row (FOR KEY SHARE) on every tag push; repository_count_cleanup below does
-- what ON DELETE CASCADE would.
CREATE TABLE repository_count_deltas (
    id             bigserial PRIMARY KEY,
    repository_id  bigint NOT NULL,
    tags           bigint NOT NULL,
    manifests      bigint NOT NULL
);
CREATE INDEX repository_count_deltas_repository ON repository_count_deltas (repository_id);

-- One function for the four triggers: each names its transition table `changed`. An
-- INSERT ... ON CONFLICT DO UPDATE puts only the rows it inserted there (a moved tag is
-- an UPDATE, and counts nothing). Rows of a repository deleted in this transaction
-- (cascades from DELETE FROM repositories) are not counted: that repository has no counts.
CREATE FUNCTION repository_count_delta() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO repository_count_deltas (repository_id, tags, manifests)
    SELECT c.repository_id,
           CASE WHEN TG_TABLE_NAME = 'tags' THEN c.n ELSE 0 END,
           CASE WHEN TG_TABLE_NAME = 'manifests' THEN c.n ELSE 0 END
      FROM (SELECT repository_id,
                   count(*) * CASE WHEN TG_OP = 'INSERT' THEN 1 ELSE -1 END AS n
              FROM changed GROUP BY repository_id) c
     WHERE EXISTS (SELECT 1 FROM repositories r WHERE r.id = c.repository_id);
    RETURN NULL;
END $$;

CREATE TRIGGER tags_counted_insert AFTER INSERT ON tags
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT
    EXECUTE FUNCTION repository_count_delta();
CREATE TRIGGER tags_counted_delete AFTER DELETE ON tags
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT
    EXECUTE FUNCTION repository_count_delta();
CREATE TRIGGER manifests_counted_insert AFTER INSERT ON manifests
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT
    EXECUTE FUNCTION repository_count_delta();
CREATE TRIGGER manifests_counted_delete AFTER DELETE ON manifests
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT
    EXECUTE FUNCTION repository_count_delta();

-- A deleted repository leaves neither counts nor deltas (deltas another transaction
-- committed while this one waited for its rows included).
CREATE FUNCTION repository_count_cleanup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM repository_count_deltas WHERE repository_id IN (SELECT id FROM gone);
    DELETE FROM repository_counts WHERE repository_id IN (SELECT id FROM gone);
    RETURN NULL;
END $$;

CREATE TRIGGER repositories_counts_cleanup AFTER DELETE ON repositories
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION repository_count_cleanup();

INSERT INTO repository_counts (repository_id, tags, manifests)
SELECT r.id, coalesce(t.n, 0), coalesce(m.n, 0)
  FROM repositories r
  LEFT JOIN (SELECT repository_id, count(*) AS n FROM tags GROUP BY 1) t
         ON t.repository_id = r.id
  LEFT JOIN (SELECT repository_id, count(*) AS n FROM manifests GROUP BY 1) m
         ON m.repository_id = r.id;
