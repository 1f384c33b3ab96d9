-- The attestation keys that sign each transparency log, as instances report them at start
-- (registry.pipeline.signers). Several instances of one database append to one log and
-- must sign with one key; an instance whose keyring does not hold every key recorded
-- here refuses to start instead of signing the log's checkpoints with a key of its own.
CREATE TABLE log_signers (
    origin      text NOT NULL,
    keyid       text NOT NULL,
    public_pem  text NOT NULL,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (origin, keyid)
);
