-- A job whose subject is gone (an image deleted while its pipeline jobs waited or ran)
-- ends as `cancelled`: neither done nor failed, nothing to retry, nothing to report.
ALTER TABLE jobs DROP CONSTRAINT jobs_state_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_state_check
    CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled'));
