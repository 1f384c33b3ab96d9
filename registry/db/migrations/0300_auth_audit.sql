-- Who may do what (principals and their grants per namespace), and the audit log of
-- every state change, hash-chained so a removed or edited row is detected.

-- People ('user'), build systems ('robot', names start with 'robot+') and the one
-- 'anonymous' principal whose grants say what callers without credentials may read.
-- Secrets are stored only as slow hashes (scrypt); anonymous has none and never logs in.
CREATE TABLE auth_principals (
    id           bigserial PRIMARY KEY,
    name         text COLLATE "C" NOT NULL UNIQUE,
    kind         text NOT NULL CHECK (kind IN ('user', 'robot', 'anonymous')),
    secret_hash  text,
    disabled     boolean NOT NULL DEFAULT false,
    description  text NOT NULL DEFAULT '',
    expires_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text NOT NULL DEFAULT 'system',
    CHECK ((kind = 'anonymous') = (secret_hash IS NULL))
);
INSERT INTO auth_principals (name, kind, description)
    VALUES ('anonymous', 'anonymous', 'callers without credentials');

-- A role on a namespace: '*' (everything) or a repository path prefix matched segment by
-- segment ('opendesk' covers 'opendesk' and 'opendesk/…', never 'opendesk-x').
CREATE TABLE auth_grants (
    principal_id  bigint NOT NULL REFERENCES auth_principals(id) ON DELETE CASCADE,
    namespace     text COLLATE "C" NOT NULL,
    role          text NOT NULL
        CHECK (role IN ('reader', 'pusher', 'attester', 'auditor', 'admin', 'monitor')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL DEFAULT 'system',
    PRIMARY KEY (principal_id, namespace, role)
);

-- The audit log. seq is gapless (assigned under the head lock), detail is the canonical
-- JSON text exactly as hashed, hash = SHA-256("zoll-audit-v1\n" || prev_hash || canonical
-- JSON of the row's fields). audit_head holds the newest (seq, hash): appends lock it, so
-- writers in every process are serialised, and its value can be anchored elsewhere.
CREATE TABLE audit_events (
    seq         bigint PRIMARY KEY,
    at          timestamptz NOT NULL,
    actor       text NOT NULL,
    actor_kind  text NOT NULL,
    action      text NOT NULL,
    repository  text COLLATE "C",
    target      text,
    source      text,
    request_id  text,
    detail      text NOT NULL,
    prev_hash   bytea NOT NULL,
    hash        bytea NOT NULL
);
CREATE INDEX audit_events_actor ON audit_events (actor, seq);
CREATE INDEX audit_events_action ON audit_events (action, seq);
CREATE INDEX audit_events_repository ON audit_events (repository, seq)
    WHERE repository IS NOT NULL;
CREATE INDEX audit_events_request ON audit_events (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX audit_events_at ON audit_events (at);

CREATE TABLE audit_head (
    id    boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq   bigint NOT NULL,
    hash  bytea NOT NULL
);
INSERT INTO audit_head (seq, hash) VALUES (0, decode(repeat('00', 32), 'hex'));

-- The service only ever appends. (A database superuser can still disable this trigger:
-- that is what the hash chain and an anchored head are for.)
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END $$;
CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
