-- The pipeline: durable jobs, and what each stage concluded about each image.

-- A unit of work that survives restarts. `key` makes enqueueing idempotent: while a job
-- with the same key is queued or running, enqueueing it again does nothing. A running
-- job whose lease expired (its worker died) is queued again.
CREATE TABLE jobs (
    id            bigserial PRIMARY KEY,
    kind          text NOT NULL,
    key           text NOT NULL,
    payload       jsonb NOT NULL DEFAULT '{}'::jsonb,
    state         text NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued', 'running', 'done', 'failed')),
    attempts      integer NOT NULL DEFAULT 0,
    max_attempts  integer NOT NULL DEFAULT 5,
    run_after     timestamptz NOT NULL DEFAULT now(),
    lease_until   timestamptz,
    worker        text,
    last_error    text,
    result        jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX jobs_active_key ON jobs (key) WHERE state IN ('queued', 'running');
CREATE INDEX jobs_ready ON jobs (run_after, id) WHERE state = 'queued';
CREATE INDEX jobs_lease ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_kind_state ON jobs (kind, state, updated_at);

-- One row per manifest the pipeline has seen. kind: image (runnable, gated by admission),
-- index (of images), artifact (signatures, attestations, SBOMs: never gated).
-- state: quarantined until every stage passed, then admitted; rejected when a stage
-- failed for good. Reasons say why, in words an operator can act on.
CREATE TABLE image_status (
    repository_id        bigint NOT NULL,
    digest               text NOT NULL,
    kind                 text NOT NULL CHECK (kind IN ('image', 'index', 'artifact')),
    state                text NOT NULL
                         CHECK (state IN ('quarantined', 'admitted', 'rejected', 'exempt')),
    reasons              jsonb NOT NULL DEFAULT '[]'::jsonb,
    origin               jsonb,
    verification         jsonb,
    verification_passed  boolean,
    hardening            jsonb,
    hardening_passed     boolean,
    sbom                 jsonb,
    fingerprint          text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repository_id, digest),
    FOREIGN KEY (repository_id, digest)
        REFERENCES manifests (repository_id, digest) ON DELETE CASCADE
);
CREATE INDEX image_status_state ON image_status (state, updated_at);

-- The story of an image: every stage outcome, in order.
CREATE TABLE pipeline_events (
    id             bigserial PRIMARY KEY,
    repository_id  bigint NOT NULL,
    digest         text NOT NULL,
    stage          text NOT NULL,
    outcome        text NOT NULL,
    detail         jsonb,
    at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pipeline_events_image ON pipeline_events (repository_id, digest, id);
