-- A job asked for again while it runs (its inputs changed under it: a signature pushed
-- while the image was being verified) runs once more when it ends, instead of the request
-- being dropped by the unique key over queued and running jobs.
--
-- A job handed to the worker that queued it (the next stage of the same image) is
-- inserted running with started_at NULL until that worker starts it; asking for it again
-- before then needs no rerun.
ALTER TABLE jobs ADD COLUMN rerun boolean NOT NULL DEFAULT false;
