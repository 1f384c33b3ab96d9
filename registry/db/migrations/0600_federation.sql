-- Federation: other Zoll nodes this one knows (pinned peers), what it witnessed of their
-- logs, what it follows of them, what they said, and what it caught them doing wrong.

-- Peers pinned with `zoll peers add` or the API (config peers are read from the config).
CREATE TABLE federation_peers (
    name              text PRIMARY KEY,
    url               text NOT NULL,
    log_origin        text NOT NULL UNIQUE,
    log_key           text NOT NULL,           -- signed-note verifier key of its checkpoints
    witness_key       text NOT NULL,           -- its cosigner vkey (type 0x04)
    attestation_keys  jsonb NOT NULL,          -- [PEM, ...] its statements are signed with
    card              jsonb NOT NULL,          -- the node card as it was pinned
    added_at          timestamptz NOT NULL DEFAULT now(),
    added_by          text
);

-- Witness side: the latest checkpoint this node cosigned for each log it witnesses.
-- Checked and replaced atomically (row lock), persisted before a cosignature is returned.
CREATE TABLE witness_state (
    origin       text PRIMARY KEY,
    size         bigint NOT NULL CHECK (size >= 0),
    root         bytea NOT NULL CHECK (length(root) = 32),
    checkpoint   text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Log side: cosignatures witnesses returned for this node's own checkpoints, and how far
-- each witness has cosigned (the old size of the next request).
CREATE TABLE tlog_cosignatures (
    log_id      smallint NOT NULL REFERENCES tlog_logs (id),
    size        bigint NOT NULL,
    witness     text NOT NULL,
    line        text NOT NULL,
    cosigned_at timestamptz NOT NULL,
    PRIMARY KEY (log_id, size, witness)
);
CREATE TABLE tlog_witnesses (
    log_id      smallint NOT NULL REFERENCES tlog_logs (id),
    witness     text NOT NULL,
    size        bigint NOT NULL DEFAULT 0,
    last_error  text,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (log_id, witness)
);

-- How far this node's log is published as static tiles in its object store.
CREATE TABLE tlog_tiles (
    log_id      smallint PRIMARY KEY REFERENCES tlog_logs (id),
    size        bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Follower side: how far this node has read each peer's log. `frontier` is the compact
-- range of the entries read so far ([[level, index, base64 hash], ...]); `verified_size`
-- is the size of the last peer checkpoint whose root it recomputed from those entries.
CREATE TABLE federation_follow (
    peer            text PRIMARY KEY,
    state           text NOT NULL DEFAULT 'following'
                    CHECK (state IN ('following', 'forked', 'unreachable')),
    size            bigint NOT NULL DEFAULT 0,
    frontier        jsonb NOT NULL DEFAULT '[]',
    verified_size   bigint NOT NULL DEFAULT 0,
    checkpoint      text,
    peer_size       bigint NOT NULL DEFAULT 0,
    last_entry_at   timestamptz,
    last_contact_at timestamptz,
    caught_up_at    timestamptz,
    last_error      text,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- What peers said about images, read from their logs. Only rows with verified = true (the
-- entry is in a checkpoint whose root this node recomputed) count for quorum and revocation.
CREATE TABLE federation_statements (
    peer            text NOT NULL,
    log_index       bigint NOT NULL,
    subject         text NOT NULL,
    repository      text NOT NULL,
    kind            text NOT NULL,           -- vsa | rebuild | hardening | admission
    verdict         text NOT NULL,           -- PASSED/FAILED, reproduced/differs/failed, ...
    stated_at       timestamptz,
    tags            text[] NOT NULL DEFAULT '{}',
    verified        boolean NOT NULL DEFAULT false,
    PRIMARY KEY (peer, log_index)
);
CREATE INDEX federation_statements_subject
    ON federation_statements (subject, kind, peer, log_index DESC);

-- Evidence that a log misbehaved: two checkpoints, both signed by its key, that cannot both
-- be true (or a checkpoint whose root the entries it served do not give).
CREATE TABLE federation_forks (
    id                   bigserial PRIMARY KEY,
    origin               text NOT NULL,
    peer                 text,
    kind                 text NOT NULL,
    known_checkpoint     text NOT NULL,
    offending_checkpoint text NOT NULL,
    detail               jsonb NOT NULL DEFAULT '{}',
    detected_at          timestamptz NOT NULL DEFAULT now()
);

-- Which digest each node says a tag names; disagreements are shown, never resolved by vote.
CREATE TABLE federation_tags (
    repository  text NOT NULL,
    tag         text NOT NULL,
    node        text NOT NULL,
    digest      text NOT NULL,
    seen_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repository, tag, node)
);
