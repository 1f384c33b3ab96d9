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

-- Referrers are listed a page at a time in digest order (/v2/<name>/referrers/<digest>
-- with n and last): this index serves the page without sorting every referrer of a
-- subject (1,000 signatures and attestations on one image are not unusual). It covers
-- what manifests_subject served, which goes.
CREATE INDEX manifests_subject_digest ON manifests (repository_id, subject_digest, digest)
    WHERE subject_digest IS NOT NULL;
DROP INDEX manifests_subject;

-- Deleting a blob row makes PostgreSQL check that no manifest still references it (the
-- foreign key manifest_blobs.blob_digest → blobs). manifest_blobs_blob leads with the
-- repository, so that check read all of manifest_blobs for every blob GC removed: at
-- 1,000,000 references, seconds per blob. This index makes it one lookup.
CREATE INDEX manifest_blobs_digest ON manifest_blobs (blob_digest);
