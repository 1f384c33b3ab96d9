"""Token verification keys shared through PostgreSQL by every instance of one database.

Each instance signs tokens with the keys in its own data folder; the private keys never
leave it. It publishes their public halves in `token_keys` whenever it (re)loads its
folder, before it signs with a new key, so behind a load balancer a token one instance
issued verifies on all of them. A published key is accepted until the last token it can
have signed has expired (`TokenKeyring.valid_for` after its creation); expired rows are
deleted by whoever publishes next.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import asyncpg

from attest.keys import KeyLoadError, PublicKey
from registry.auth.keys import JWT_ALGORITHM, TokenKeyring, VerifyingKey, kid_of

_KID = re.compile(r"^[0-9a-f]{32}$")


async def publish(pool: asyncpg.Pool, keyring: TokenKeyring) -> None:
    """Publish the public keys of this instance's folder (idempotent)."""
    keys = keyring.all_keys()
    await pool.execute(
        """WITH gone AS (DELETE FROM token_keys WHERE expires_at < now())
           INSERT INTO token_keys (kid, algorithm, public_pem, created_at, expires_at)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[],
                                $5::timestamptz[])
           ON CONFLICT (kid) DO NOTHING""",
        [k.kid for k in keys],
        [k.algorithm for k in keys],
        [k.key.public.pem() for k in keys],
        [datetime.fromtimestamp(k.created, UTC) for k in keys],
        [
            datetime.fromtimestamp(k.created, UTC) + timedelta(seconds=keyring.valid_for)
            for k in keys
        ],
    )


async def lookup(pool: asyncpg.Pool, kid: str) -> VerifyingKey | None:
    """The key another instance published under `kid`, if it is still valid."""
    if not _KID.match(kid):
        return None
    row = await pool.fetchrow(
        "SELECT algorithm, public_pem, expires_at FROM token_keys "
        "WHERE kid = $1 AND expires_at > now()",
        kid,
    )
    if row is None:
        return None
    try:
        public = PublicKey.from_pem(row["public_pem"])
    except KeyLoadError:
        return None
    if kid_of(public) != kid or JWT_ALGORITHM.get(public.algorithm) != row["algorithm"]:
        return None  # a row that does not describe its own key verifies nothing
    return VerifyingKey(kid, row["algorithm"], public, row["expires_at"].timestamp())
