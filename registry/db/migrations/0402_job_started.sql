-- When a job's current attempt started, so its run time (not its time in the queue) can
-- be told apart: updated_at - started_at for finished jobs.
ALTER TABLE jobs ADD COLUMN started_at timestamptz;
