"""One signing key per transparency log, however many instances append to it.

Each `zoll serve` records its active attestation key for the log origin at start. If the
log is also signed by a key this instance's keyring does not hold (neither active nor
retired), another instance of the database signs with another key: verifiers pinning
one log key would reject half the checkpoints and attestations. The instance refuses to
start and says how to share the key (docs/deploy.md).
"""

from __future__ import annotations

import asyncpg

from attest.servicekeys import ServiceKeyring


class ForeignSigner(Exception):
    """The log is signed by a key this instance does not hold."""


async def check_log_signer(pool: asyncpg.Pool, origin: str, keyring: ServiceKeyring) -> None:
    active = keyring.active
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('log-signers:' || $1))", origin)
        await conn.execute(
            "INSERT INTO log_signers (origin, keyid, public_pem) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING",
            origin,
            active.keyid,
            active.public_pem,
        )
        recorded = await conn.fetch(
            "SELECT keyid FROM log_signers WHERE origin = $1 ORDER BY first_seen", origin
        )
    own = {k.keyid for k in keyring.public_keys()}
    foreign = [r["keyid"] for r in recorded if r["keyid"] not in own]
    if foreign:
        raise ForeignSigner(
            f"the transparency log {origin} is also signed with the key {foreign[0]}, which "
            f"this instance does not hold (it signs with {active.keyid}, source "
            f"{active.source}): every instance of one database must sign with the same "
            "attestation key (attest.key.file or attest.key.pkcs11_uri, see docs/deploy.md). "
            "If that key is lost for good, remove it from the table log_signers to continue "
            "the log with this one"
        )
