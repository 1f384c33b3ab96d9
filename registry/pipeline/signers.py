"""One signing key per transparency log, and one witness key per node, however many
instances share the database.

Each `zoll serve` records at start the key it will sign with under the name it signs for
(the log origin; the witness's cosigner name). If that name is also signed for by a key
this instance does not hold, another instance of the database signs with another key:
verifiers and peers pinning one key would reject half of what the node publishes. The
instance refuses to start and says how to share the key (docs/deploy.md).
"""

from __future__ import annotations

import asyncpg

from attest.servicekeys import ServiceKeyring
from attest.tlog.cosignature import Cosigner


class ForeignSigner(Exception):
    """The log, or the node's witness, signs with a key this instance does not hold."""


async def _foreign(
    pool: asyncpg.Pool, name: str, keyid: str, public: str, own: set[str]
) -> list[str]:
    """The key ids recorded for `name` that are not in `own`, oldest first; when there
    are none, `keyid` is recorded. A refused instance records nothing, so it cannot lock
    out the instances that hold the right key."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('log-signers:' || $1))", name)
        rows = await conn.fetch(
            "SELECT keyid FROM log_signers WHERE origin = $1 ORDER BY first_seen", name
        )
        foreign = [r["keyid"] for r in rows if r["keyid"] not in own]
        if not foreign:
            await conn.execute(
                "INSERT INTO log_signers (origin, keyid, public_pem) VALUES ($1, $2, $3) "
                "ON CONFLICT DO NOTHING",
                name,
                keyid,
                public,
            )
    return foreign


async def check_log_signer(pool: asyncpg.Pool, origin: str, keyring: ServiceKeyring) -> None:
    active = keyring.active
    own = {k.keyid for k in keyring.public_keys()}
    foreign = await _foreign(pool, origin, active.keyid, active.public_pem, own)
    if foreign:
        raise ForeignSigner(
            f"the transparency log {origin} is also signed with the key {foreign[0]}, which "
            f"this instance does not hold (it signs with {active.keyid}, source "
            f"{active.source}): every instance of one database must sign with the same "
            "attestation key (attest.key.file or attest.key.pkcs11_uri, see docs/deploy.md). "
            "If that key is lost for good, remove it from the table log_signers to continue "
            "the log with this one"
        )


async def check_witness_key(pool: asyncpg.Pool, witness: Cosigner) -> None:
    """Peers pin one witness key per node; a second one would make them refuse the
    cosignatures of every instance holding it."""
    keyid = f"{witness.key_hash:08x}"
    foreign = await _foreign(pool, witness.name, keyid, witness.vkey(), {keyid})
    if foreign:
        raise ForeignSigner(
            f"this node's witness {witness.name} also cosigns with the key {foreign[0]}, not "
            f"this instance's {keyid}: every instance of one database must use the same "
            "witness key (federation.witness_key_file, or a shared data folder, see "
            "docs/deploy.md). If that key is retired for good, remove it from the table "
            "log_signers and have the peers pin this one"
        )
