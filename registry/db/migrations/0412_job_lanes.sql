-- Fair scheduling. Each job has a lane: a priority (0: someone waits for it — a push, a
-- pull-through fetch — before 2: bulk work — mirror sets, re-evaluations) and a source
-- (the pushed repository, the mirrored upstream) that takes turns with the other sources
-- of its priority. A job inherits the lane of the job that queued it, so the stages of a
-- mirrored image stay bulk work. Retries (attempts > 0) go after all fresh work.
ALTER TABLE jobs ADD COLUMN priority smallint NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN source text NOT NULL DEFAULT '';

-- When each source was last served: the source served longest ago goes first.
CREATE TABLE job_sources (
    source      text PRIMARY KEY,
    claimed_at  timestamptz NOT NULL
);

-- Mirror work queued before lanes existed is bulk work too (its source: the set).
UPDATE jobs SET priority = 2, source = 'mirror:' || coalesce(payload->>'set', '')
 WHERE kind IN ('mirror-entry', 'mirror-image') AND state IN ('queued', 'running');
