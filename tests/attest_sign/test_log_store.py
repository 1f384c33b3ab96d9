"""The PostgreSQL log: proofs against signed checkpoints, 1,000 concurrent appends,
idempotent attestation logging and repair after a killed signer."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from attest import statements as st
from attest.keys import PrivateKey
from attest.signing import sign_statement
from attest.tlog.checkpoint import verify_checkpoint, verify_extension
from attest.tlog.entries import LogRecord, admission_record, record_from_document
from attest.tlog.hashing import leaf_hash, root_of
from attest.tlog.ledger import AttestationLedger
from attest.tlog.proofs import verify_inclusion
from attest.tlog.store import EntryNotFound, LogCorrupt, LogError, TransparencyLog
from registry.oci.digest import Digest
from tests.support.paths import REPO

ORIGIN = "zoll.example/log"


@pytest.fixture
async def pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(pg_dsn, min_size=1, max_size=4) as p:
        yield p


def admission(n: int) -> LogRecord:
    return admission_record(
        subject_digest=str(Digest.of(str(n).encode())),
        repository="opendesk/app",
        decision="admitted" if n % 3 else "denied",
        reasons=[f"decision {n}"],
        decided_at=datetime(2025, 1, 1, tzinfo=UTC),
    )


def vsa_for(digest: Digest) -> dict[str, object]:
    return st.vsa(
        image="opendesk/app",
        digest=digest,
        verifier=st.Verifier("https://zoll.example"),
        time_verified=datetime(2025, 1, 1, tzinfo=UTC),
        policy=st.ResourceRef("p"),
        result="PASSED",
        verified_levels=[],
    )


async def test_entries_prove_inclusion_and_checkpoints_prove_consistency(
    pool: asyncpg.Pool,
) -> None:
    key = PrivateKey.generate("ed25519")
    log = TransparencyLog(pool, key, ORIGIN)
    empty = await log.checkpoint()
    assert empty.checkpoint.size == 0
    first = await log.append([admission(i) for i in range(5)])
    assert [e.index for e in first] == [0, 1, 2, 3, 4]
    old = await log.checkpoint()
    assert (await log.checkpoint()).to_text() == old.to_text()  # one signature per size
    await log.append([admission(i) for i in range(5, 13)])
    new = await log.checkpoint()
    trusted = [log.verifier]
    old_cp = verify_checkpoint(old.to_text(), trusted, origin=ORIGIN)
    new_cp = verify_checkpoint(new.to_text(), trusted, origin=ORIGIN)
    verify_extension(old_cp, new_cp, await log.consistency_proof(5, 13))
    verify_extension(empty.checkpoint, new_cp, await log.consistency_proof(0, 13))
    for index in range(13):
        entry = await log.entry(index)
        leaf = record_from_document(json.loads(json.dumps(entry.to_json()))).leaf_hash()
        assert leaf == entry.leaf_hash
        proof = await log.inclusion_proof(index, 13)
        verify_inclusion(index, 13, leaf, proof.hashes, new_cp.root)
        if index < 5:
            old_proof = await log.inclusion_proof(index, 5)
            verify_inclusion(index, 5, leaf, old_proof.hashes, old_cp.root)
    assert (await log.checkpoint_at(5)) == old
    assert [e.index for e in await log.entries(10, 100)] == [10, 11, 12]
    with pytest.raises(EntryNotFound):
        await log.entry(13)
    with pytest.raises(LogError, match="13 entries, not 14"):
        await log.inclusion_proof(0, 14)
    with pytest.raises(LogError, match="not in a tree"):
        await log.inclusion_proof(13, 13)


async def test_a_thousand_concurrent_appends_from_four_writers(pg_dsn: str) -> None:
    key = PrivateKey.generate("ecdsa-p256")
    pools = [await asyncpg.create_pool(pg_dsn, min_size=1, max_size=3) for _ in range(4)]
    try:
        logs = [TransparencyLog(p, key, ORIGIN, max_batch=64) for p in pools]
        results = await asyncio.gather(*(logs[i % 4].append([admission(i)]) for i in range(1000)))
        indexes = sorted(entry.index for [entry] in results)
        assert indexes == list(range(1000))
        async with pools[0].acquire() as conn:
            rows = await conn.fetch("SELECT idx, body FROM tlog_leaves ORDER BY idx")
        assert [r["idx"] for r in rows] == list(range(1000))
        recomputed = root_of([leaf_hash(bytes(r["body"])) for r in rows])
        checkpoint = verify_checkpoint((await logs[1].checkpoint()).to_text(), [logs[0].verifier])
        assert checkpoint.size == 1000 and checkpoint.root == recomputed
        by_index = {entry.index: entry for [entry] in results}
        for index in random.Random(7).sample(range(1000), 25):
            proof = await logs[2].inclusion_proof(index)
            verify_inclusion(index, 1000, by_index[index].leaf_hash, proof.hashes, recomputed)
        assert await logs[3].check() == 1000
    finally:
        for p in pools:
            await p.close()


async def test_a_failed_batch_writes_nothing_and_leaves_no_gap(pool: asyncpg.Pool) -> None:
    log = TransparencyLog(pool, PrivateKey.generate(), ORIGIN)
    unknown = LogRecord(admission(1).body, attestation_id=424242)  # no such attestation row
    with pytest.raises(LogError, match="nothing written"):
        await log.append([admission(0), unknown])
    assert await log.size() == 0
    results = await asyncio.gather(
        *(log.append([unknown if i == 3 else admission(i)]) for i in range(8)),
        return_exceptions=True,
    )
    failed = [r for r in results if isinstance(r, BaseException)]
    assert failed and all(isinstance(r, LogError) for r in failed)
    written = sorted(r[0].index for r in results if isinstance(r, list))
    assert written == list(range(len(written))) and await log.check() == len(written)
    [entry] = await log.append([admission(9)])
    assert entry.index == len(written)


async def test_an_attestation_is_logged_once_and_links_to_its_leaf(pool: asyncpg.Pool) -> None:
    key = PrivateKey.generate()
    log = TransparencyLog(pool, key, ORIGIN)
    ledger = AttestationLedger(log)
    digest = Digest.of(b"image")
    logged = await ledger.sign_and_log(
        vsa_for(digest), key, subject=digest, repository="opendesk/app"
    )
    again = await ledger.log_attestation(logged.attestation)
    twice = await asyncio.gather(*(ledger.log_attestation(logged.attestation) for _ in range(5)))
    assert {e.entry.index for e in [again, *twice]} == {logged.entry.index}
    assert await log.size() == 1
    assert logged.attestation.status == "logged"
    assert logged.attestation.log_index == logged.entry.index
    assert [a.id for a in await ledger.for_subject(digest, st.VSA_V1)] == [logged.attestation.id]
    same = await ledger.record(logged.attestation.envelope, subject=digest, repository="x")
    assert same.id == logged.attestation.id
    with pytest.raises(ValueError, match="does not name"):
        await ledger.record(
            logged.attestation.envelope, subject=Digest.of(b"other"), repository="x"
        )


async def test_an_images_statements_are_logged_together(pool: asyncpg.Pool) -> None:
    """The pipeline's VSA, hardening result and SBOM of one image: one record statement,
    one log commit, consecutive entries, each linked to its attestation."""
    key = PrivateKey.generate()
    log = TransparencyLog(pool, key, ORIGIN)
    ledger = AttestationLedger(log)
    digest = Digest.of(b"image")
    bom = st.statement([st.subject("opendesk/app", digest)], "https://cyclonedx.org/bom", {})
    statements = [vsa_for(digest), bom]
    logged = await ledger.sign_and_log_many(statements, key, subject=digest, repository="r/a")
    assert [e.entry.index for e in logged] == [0, 1] and await log.size() == 2
    assert [e.attestation.predicate_type for e in logged] == [st.VSA_V1, bom["predicateType"]]
    assert all(e.attestation.log_index == e.entry.index for e in logged)
    assert all(e.attestation.status == "logged" for e in logged)
    head = verify_checkpoint((await log.checkpoint()).to_text(), [log.verifier], origin=ORIGIN)
    for item in logged:
        proof = await log.inclusion_proof(item.entry.index, 2)
        verify_inclusion(item.entry.index, 2, item.entry.leaf_hash, proof.hashes, head.root)
    # The same envelopes again: stored and logged once.
    envelopes = [item.attestation.envelope for item in logged]
    again = await ledger.record_many(envelopes, subject=digest, repository="r/a")
    assert [a.id for a in again] == [item.attestation.id for item in logged]
    relogged = await ledger.log_attestations(again)
    assert [e.entry.index for e in relogged] == [0, 1] and await log.size() == 2


async def test_repair_logs_what_was_signed_before_a_crash(pool: asyncpg.Pool) -> None:
    key = PrivateKey.generate()
    ledger = AttestationLedger(TransparencyLog(pool, key, ORIGIN))
    await ledger.log.append([admission(0)])
    digests = [Digest.of(bytes([i])) for i in range(3)]
    stranded = [
        await ledger.record(sign_statement(vsa_for(d), key), subject=d, repository="opendesk/app")
        for d in digests
    ]
    assert [a.status for a in await ledger.pending()] == ["signed"] * 3
    assert await ledger.for_subject(digests[0]) == []  # nothing publishable yet

    restarted = TransparencyLog(pool, key, ORIGIN)  # a new process after the crash
    report = await restarted.repair()
    assert (report.size, report.appended, report.checkpoint.checkpoint.size) == (4, 3, 4)
    for stored in stranded:
        row = await AttestationLedger(restarted).get(stored.id)
        assert row.status == "logged" and row.log_index is not None
        entry = await restarted.entry(row.log_index)
        assert entry.attestation_id == stored.id
        assert entry.body["envelope"] == stored.envelope.to_json()
    assert (await restarted.repair()).appended == 0


async def test_tampered_storage_is_detected(pool: asyncpg.Pool) -> None:
    log = TransparencyLog(pool, PrivateKey.generate(), ORIGIN)
    await log.append([admission(i) for i in range(6)])
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE tlog_leaves SET body = $1 WHERE idx = 2", b'{"kind":"admission"}'
        )
        with pytest.raises(LogCorrupt, match="does not hash"):
            await log.entry(2)
        await conn.execute(
            "UPDATE tlog_nodes SET hash = $1 WHERE level = 2 AND idx = 0", b"\0" * 32
        )
    with pytest.raises(LogCorrupt, match="fold"):
        await log.append([admission(7)])
    with pytest.raises(LogCorrupt):
        await log.check()


async def test_killed_signers_leave_a_log_that_repair_makes_whole(
    pool: asyncpg.Pool, pg_dsn: str, tmp_path: Path
) -> None:
    key = PrivateKey.generate()
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(key.pem())
    for attempt in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.attest_sign.crash_writer", pg_dsn, ORIGIN, str(key_file)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert proc.stdout is not None
        for _ in range(7 + attempt * 3):  # let it log some, then kill it mid-flight
            assert proc.stdout.readline(), proc.stderr.read() if proc.stderr else ""
        await asyncio.sleep(random.uniform(0.0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()

    log = TransparencyLog(pool, key, ORIGIN)
    report = await log.repair()
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM attestations WHERE status = 'signed'") == 0
        leaves = await conn.fetch("SELECT idx, body, attestation_id FROM tlog_leaves ORDER BY idx")
        mismatched = await conn.fetchval(
            """SELECT count(*) FROM attestations a JOIN tlog_leaves l
                 ON l.idx = a.log_index AND l.log_id = a.log_id
               WHERE l.attestation_id IS DISTINCT FROM a.id"""
        )
        attestations = await conn.fetchval("SELECT count(*) FROM attestations")
    assert [r["idx"] for r in leaves] == list(range(report.size))
    assert attestations == report.size and mismatched == 0
    assert report.checkpoint.checkpoint.root == root_of(
        [leaf_hash(bytes(r["body"])) for r in leaves]
    )


async def test_proofs_read_each_high_subtree_once_per_process(pool: asyncpg.Pool) -> None:
    """Every proof needs some of the same few high subtrees (2**8 leaves and more); they
    never change once complete, so a log process reads each from the database once and
    a proof in a large log reads no more rows than one in a small log. The rows are
    overwritten after the first round of proofs: this process's proofs still verify
    (served from memory), a new process's read the overwritten rows and fail."""
    log = TransparencyLog(pool, PrivateKey.generate(), ORIGIN)
    for start in range(0, 2048, 512):
        await log.append([admission(i) for i in range(start, start + 512)])
    await log.append([admission(i) for i in range(2048, 2100)])
    head = verify_checkpoint((await log.checkpoint()).to_text(), [log.verifier], origin=ORIGIN)
    indexes = random.Random(5).sample(range(head.size), 40)

    async def proofs_verify(of: TransparencyLog) -> bool:
        for index in indexes:
            entry = await of.entry(index)
            proof = await of.inclusion_proof(index, head.size)
            try:
                verify_inclusion(index, head.size, entry.leaf_hash, proof.hashes, head.root)
            except ValueError:
                return False
        return True

    assert await proofs_verify(log)
    async with pool.acquire() as conn:
        overwritten = await conn.execute(
            "UPDATE tlog_nodes SET hash = $1 WHERE level >= 8", b"\1" * 32
        )
    assert overwritten == "UPDATE 15"  # of 256 leaves: 8; of 512: 4; of 1,024: 2; of 2,048: 1
    assert await proofs_verify(log)
    assert not await proofs_verify(TransparencyLog(pool, log.signer, ORIGIN))
