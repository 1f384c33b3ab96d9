-- The public halves of the token signing keys of every instance on this database
-- (registry.auth.keyshare). Each instance signs with the private keys in its own data
-- folder, which never leave it, and publishes the public keys here, so a token one
-- instance issued verifies on all of them behind a load balancer. A row is accepted until
-- `expires_at`: after the last token its key can have signed has expired.
CREATE TABLE token_keys (
    kid         text PRIMARY KEY,
    algorithm   text NOT NULL CHECK (algorithm IN ('ES256', 'EdDSA')),
    public_pem  text NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX token_keys_expiry ON token_keys (expires_at);
