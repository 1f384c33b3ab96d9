-- Zoll's transparency log and the attestations it records (attest.tlog.store).
--
-- Every append locks its log's row in tlog_logs (SELECT ... FOR UPDATE), reads `size`,
-- writes leaves size..size+n-1, the subtree nodes they complete, the new size and root,
-- and marks the appended attestations logged, all in one transaction. So indexes are
-- unique and gap-free however many writers there are, and an attestation row never
-- carries a log index whose leaf is not committed (the foreign key says so too).

CREATE TABLE tlog_logs (
    id          smallserial PRIMARY KEY,
    origin      text NOT NULL UNIQUE,
    size        bigint NOT NULL DEFAULT 0 CHECK (size >= 0),
    root        bytea NOT NULL CHECK (length(root) = 32),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- What Zoll signs: one row per DSSE envelope. 'signed' rows are not in the log yet
-- (the service stopped between signing and logging); TransparencyLog.repair() appends
-- them at start. Only 'logged' rows may be published with a log index.
CREATE TABLE attestations (
    id               bigserial PRIMARY KEY,
    subject_digest   text NOT NULL,
    repository       text NOT NULL,
    predicate_type   text NOT NULL,
    keyid            text NOT NULL,
    envelope         bytea NOT NULL,
    envelope_sha256  text NOT NULL UNIQUE,
    status           text NOT NULL DEFAULT 'signed' CHECK (status IN ('signed', 'logged')),
    log_id           smallint,
    log_index        bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    logged_at        timestamptz,
    CHECK ((status = 'logged') = (log_index IS NOT NULL)),
    CHECK ((log_id IS NULL) = (log_index IS NULL))
);
CREATE INDEX attestations_subject ON attestations (subject_digest, predicate_type);
CREATE INDEX attestations_pending ON attestations (id) WHERE status = 'signed';

-- body is the leaf data itself (RFC 8785 canonical JSON); leaf_hash = SHA-256(0x00||body).
CREATE TABLE tlog_leaves (
    log_id          smallint NOT NULL REFERENCES tlog_logs (id),
    idx             bigint NOT NULL CHECK (idx >= 0),
    leaf_hash       bytea NOT NULL CHECK (length(leaf_hash) = 32),
    kind            text NOT NULL,
    body            bytea NOT NULL,
    attestation_id  bigint UNIQUE REFERENCES attestations (id),
    integrated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (log_id, idx)
);

ALTER TABLE attestations
    ADD FOREIGN KEY (log_id, log_index) REFERENCES tlog_leaves (log_id, idx);

-- Hashes of complete perfect subtrees above the leaves: node (level, idx) covers leaves
-- [idx * 2^level, (idx + 1) * 2^level). Written once when complete, never changed;
-- any proof needs O(log n) of them.
CREATE TABLE tlog_nodes (
    log_id  smallint NOT NULL REFERENCES tlog_logs (id),
    level   smallint NOT NULL CHECK (level BETWEEN 1 AND 63),
    idx     bigint NOT NULL CHECK (idx >= 0),
    hash    bytea NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (log_id, level, idx)
);

-- Every checkpoint the log signed; at most one per size (the first signature wins).
CREATE TABLE tlog_checkpoints (
    log_id     smallint NOT NULL REFERENCES tlog_logs (id),
    size       bigint NOT NULL CHECK (size >= 0),
    root       bytea NOT NULL CHECK (length(root) = 32),
    note       text NOT NULL,
    keyid      text NOT NULL,
    signed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (log_id, size)
);
