"""A Zoll signer process for the crash test: records batches, then logs them one by one.

Run as `python -m tests.attest_sign.crash_writer DSN ORIGIN KEY_PEM`; prints a line per
logged attestation until it is killed.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from attest import statements as st
from attest.keys import PrivateKey
from attest.signing import sign_statement
from attest.tlog.ledger import AttestationLedger
from attest.tlog.store import TransparencyLog
from registry.oci.digest import Digest


async def main(dsn: str, origin: str, key_file: Path) -> None:
    key = PrivateKey.from_pem(key_file.read_bytes())
    async with asyncpg.create_pool(dsn, min_size=1, max_size=2) as pool:
        ledger = AttestationLedger(TransparencyLog(pool, key, origin))
        n = 0
        while True:
            stored = []
            for _ in range(5):
                n += 1
                digest = Digest.of(f"image {n} {datetime.now(UTC)}".encode())
                statement = st.vsa(
                    image="r/app",
                    digest=digest,
                    verifier=st.Verifier("https://zoll.example"),
                    time_verified=datetime.now(UTC),
                    policy=st.ResourceRef("p"),
                    result="PASSED",
                    verified_levels=[],
                )
                envelope = sign_statement(statement, key)
                stored.append(await ledger.record(envelope, subject=digest, repository="r/app"))
            for attestation in stored:
                logged = await ledger.log_attestation(attestation)
                print(logged.entry.index, flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
