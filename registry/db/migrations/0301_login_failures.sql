-- Failed logins per source address ('a:<address>') and per account name ('u:<name>'),
-- shared by every worker process and every service instance on this database, so a
-- guesser meets the same back-off whichever process answers. Successful logins and token
-- requests write nothing here.
CREATE TABLE login_failures (
    key text PRIMARY KEY,
    failures integer NOT NULL,
    last_failure timestamptz NOT NULL,
    blocked_until timestamptz
);
CREATE INDEX login_failures_last ON login_failures (last_failure);
