-- The latest job of a key (its history: the runs of a mirror entry, the copies of one
-- image): what `zoll mirror` progress and status read for every entry and image of a set.
CREATE INDEX jobs_key_history ON jobs (key, id DESC);
