-- Registry core: repositories, content-addressed blobs and per-repository links,
-- manifests (bytes kept here: they are small), tags with history, referrers, uploads.

CREATE TABLE repositories (
    id          bigserial PRIMARY KEY,
    name        text COLLATE "C" NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A row exists only once the blob's bytes are in storage and their digest was verified.
-- storage_key is where the driver keeps the bytes (content-addressed on filesystems, a
-- per-upload key on S3, which cannot rename). The row itself is never updated: manifest
-- pushes hold FOR SHARE on it, and re-uploads, mounts and HEADs refresh the link below
-- instead, which is what the GC grace period is measured against.
CREATE TABLE blobs (
    digest        text PRIMARY KEY,
    size          bigint NOT NULL CHECK (size >= 0),
    storage_key   text NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Visibility: a blob is visible in a repository only through a link.
CREATE TABLE repository_blobs (
    repository_id  bigint NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest         text NOT NULL REFERENCES blobs(digest),
    linked_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX repository_blobs_digest ON repository_blobs (digest);

CREATE TABLE manifests (
    repository_id   bigint NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest          text NOT NULL,
    media_type      text NOT NULL,
    artifact_type   text,
    subject_digest  text,
    annotations     jsonb,
    content         bytea NOT NULL,
    size            integer NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX manifests_subject ON manifests (repository_id, subject_digest)
    WHERE subject_digest IS NOT NULL;
CREATE INDEX manifests_digest ON manifests (digest);

-- What a manifest references: blobs (config, layers) and, for indexes, child manifests.
CREATE TABLE manifest_blobs (
    repository_id    bigint NOT NULL,
    manifest_digest  text NOT NULL,
    blob_digest      text NOT NULL REFERENCES blobs(digest),
    PRIMARY KEY (repository_id, manifest_digest, blob_digest),
    FOREIGN KEY (repository_id, manifest_digest)
        REFERENCES manifests (repository_id, digest) ON DELETE CASCADE
);
CREATE INDEX manifest_blobs_blob ON manifest_blobs (repository_id, blob_digest);

CREATE TABLE manifest_children (
    repository_id  bigint NOT NULL,
    parent_digest  text NOT NULL,
    child_digest   text NOT NULL,
    PRIMARY KEY (repository_id, parent_digest, child_digest),
    FOREIGN KEY (repository_id, parent_digest)
        REFERENCES manifests (repository_id, digest) ON DELETE CASCADE,
    FOREIGN KEY (repository_id, child_digest)
        REFERENCES manifests (repository_id, digest)
);
CREATE INDEX manifest_children_child ON manifest_children (repository_id, child_digest);

-- Deleting a manifest deletes the tags pointing at it (as the spec requires).
CREATE TABLE tags (
    repository_id    bigint NOT NULL,
    name             text COLLATE "C" NOT NULL,
    manifest_digest  text NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repository_id, name),
    FOREIGN KEY (repository_id, manifest_digest)
        REFERENCES manifests (repository_id, digest) ON DELETE CASCADE
);
CREATE INDEX tags_manifest ON tags (repository_id, manifest_digest);

-- Every tag move, kept after the tag or manifest is gone (no foreign keys on purpose).
CREATE TABLE tag_history (
    id               bigserial PRIMARY KEY,
    repository_id    bigint NOT NULL,
    name             text NOT NULL,
    previous_digest  text,
    manifest_digest  text,
    changed_at       timestamptz NOT NULL DEFAULT now(),
    request_id       text
);
CREATE INDEX tag_history_tag ON tag_history (repository_id, name, id);

-- An upload in progress. hash_state is the running digest state at `size` bytes, so
-- any worker can continue it; driver_state is the storage driver's own bookkeeping
-- (S3 multipart upload id and parts). busy_until is a lease that serialises requests
-- to the same session without holding a database connection while bytes stream.
CREATE TABLE upload_sessions (
    id             uuid PRIMARY KEY,
    repository_id  bigint NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    algorithm      text NOT NULL DEFAULT 'sha256',
    size           bigint NOT NULL DEFAULT 0,
    hash_state     bytea,
    driver_state   jsonb NOT NULL DEFAULT '{}'::jsonb,
    busy_until     timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX upload_sessions_updated ON upload_sessions (updated_at);
