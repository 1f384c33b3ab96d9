-- Scale (issue 24): what keeps routine work proportional to what changed.

-- The newest audit event `zoll audit verify` found intact, so the next run checks only
-- the events after it (and that this one is unchanged) instead of the whole chain.
-- `zoll audit verify --full` still walks everything.
CREATE TABLE audit_verified (
    id           boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq          bigint NOT NULL CHECK (seq >= 0),
    hash         bytea NOT NULL CHECK (length(hash) = 32),
    verified_at  timestamptz NOT NULL DEFAULT now()
);
