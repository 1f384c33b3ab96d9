"""`zoll log verify`, `zoll log verify-inclusion` and `zoll keys` on real files."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from attest import statements as st
from attest.artifacts import sigstore_bundle
from attest.servicekeys import ServiceKeyring
from attest.signing import sign_statement
from attest.tlog.entries import admission_record
from attest.tlog.ledger import AttestationLedger
from attest.tlog.store import TransparencyLog
from registry.cli.main import main
from registry.oci.digest import Digest
from tests.support.postgres import fresh_database

ORIGIN = "zoll.example/log"


@pytest.fixture
async def pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(pg_dsn, min_size=1, max_size=2) as p:
        yield p


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def admission(n: int) -> Any:
    return admission_record(
        subject_digest=str(Digest.of(bytes([n]))),
        repository="opendesk/app",
        decision="admitted",
        reasons=[],
        decided_at=datetime(2025, 1, 1, tzinfo=UTC),
    )


async def build_log(pool: asyncpg.Pool, ring: ServiceKeyring, folder: Path) -> dict[str, Path]:
    """A real log with an attestation in it, and the files an auditor would keep."""
    log = TransparencyLog(pool, ring.signer, ORIGIN)
    await log.append([admission(i) for i in range(3)])
    old = await log.checkpoint()
    digest = Digest.of(b"the image")
    statement = st.vsa(
        image="opendesk/app",
        digest=digest,
        verifier=st.Verifier("https://zoll.example"),
        time_verified=datetime(2025, 1, 1, tzinfo=UTC),
        policy=st.ResourceRef("p"),
        result="PASSED",
        verified_levels=["SLSA_BUILD_LEVEL_1"],
    )
    logged = await AttestationLedger(log).sign_and_log(
        statement, ring.signer, subject=digest, repository="opendesk/app"
    )
    await log.append([admission(i) for i in range(3, 9)])
    new = await log.checkpoint()
    files = {
        "old": folder / "old.txt",
        "new": folder / "new.txt",
        "consistency": folder / "consistency.json",
        "envelope": folder / "attestation.json",
        "bundle": folder / "attestation.sigstore.json",
        "entry": folder / "entry.json",
        "inclusion": folder / "proof.json",
        "keys": folder / "keys.json",
        "pem": folder / "zoll.pub",
        "vkey": folder / "zoll.vkey",
    }
    files["old"].write_text(old.to_text())
    files["new"].write_text(new.to_text())
    size = new.checkpoint.size
    files["consistency"].write_text(
        json.dumps((await log.consistency_proof(old.checkpoint.size, size)).to_json())
    )
    envelope = logged.attestation.envelope
    files["envelope"].write_text(json.dumps(envelope.to_json()))
    files["bundle"].write_bytes(sigstore_bundle(envelope, ring.signer.public))
    files["entry"].write_text(
        json.dumps((await log.entry(logged.entry.index)).to_json(), default=str)
    )
    proof = await log.inclusion_proof(logged.entry.index, size)
    files["inclusion"].write_text(json.dumps(proof.to_json()))
    files["keys"].write_text(json.dumps(ring.to_json(log_origin=ORIGIN)))
    files["pem"].write_text(ring.active.public_pem)
    files["vkey"].write_text(log.verifier.vkey() + "\n")
    return files


async def test_log_verify_accepts_an_honest_log_and_catches_forks_and_tampering(
    pool: asyncpg.Pool, pg_admin_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ring = ServiceKeyring.load_or_create(tmp_path / "data")
    f = await build_log(pool, ring, tmp_path)
    for key in ("pem", "vkey", "keys"):
        code, out = run(
            capsys, "log", "verify", "--checkpoint", str(f["old"]), "--newer", str(f["new"]),
            "--proof", str(f["consistency"]), "--key", str(f[key]),
        )  # fmt: skip
        assert (code, out["verified"], out["oldSize"], out["newSize"]) == (0, True, 3, 10)

    argv = ["log", "verify", "--checkpoint", str(f["old"]), "--newer", str(f["new"])]
    assert main([*argv, "--proof", str(f["consistency"]), "--key", str(f["pem"])]) == 0
    assert "✓ zoll.example/log: size 10 extends size 3" in capsys.readouterr().err

    proof = json.loads(f["consistency"].read_text())
    proof["hashes"][0] = proof["hashes"][1]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(proof))
    code, out = run(
        capsys, "log", "verify", "--checkpoint", str(f["old"]), "--newer", str(f["new"]),
        "--proof", str(bad), "--key", str(f["pem"]),
    )  # fmt: skip
    assert (code, out["verified"], out["reason"]) == (1, False, "verification")

    # The same key signs a different history for the same origin: a fork.
    async with asyncpg.create_pool(
        await fresh_database(pg_admin_dsn), min_size=1, max_size=2
    ) as other:
        forked = TransparencyLog(other, ring.signer, ORIGIN)
        await forked.append([admission(i) for i in (0, 1, 2, 99, 4, 5, 6, 7, 8, 9)])
        fork_cp = tmp_path / "fork.txt"
        fork_cp.write_text((await forked.checkpoint()).to_text())
        fork_proof = tmp_path / "fork-proof.json"
        fork_proof.write_text(json.dumps((await forked.consistency_proof(3)).to_json()))
    code, out = run(
        capsys, "log", "verify", "--checkpoint", str(f["new"]), "--newer", str(fork_cp),
        "--key", str(f["pem"]),
    )  # fmt: skip
    assert (code, out["reason"]) == (1, "fork")
    code, out = run(
        capsys, "log", "verify", "--checkpoint", str(f["old"]), "--newer", str(fork_cp),
        "--proof", str(fork_proof), "--key", str(f["pem"]),
    )  # fmt: skip
    assert (code, out["verified"]) == (0, True)  # the fork agrees on the first 3 entries
    code, out = run(
        capsys, "log", "verify", "--checkpoint", str(f["old"]), "--newer", str(f["new"]),
        "--proof", str(f["consistency"]), "--key", str(tmp_path / "missing.pub"),
    )  # fmt: skip
    assert (code, out["reason"]) == (2, "input")


async def test_verify_inclusion_from_an_envelope_a_bundle_or_an_entry(
    pool: asyncpg.Pool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ring = ServiceKeyring.load_or_create(tmp_path / "data")
    f = await build_log(pool, ring, tmp_path)
    for document in ("envelope", "bundle", "entry"):
        code, out = run(
            capsys, "log", "verify-inclusion", "--entry", str(f[document]), "--proof",
            str(f["inclusion"]), "--checkpoint", str(f["new"]), "--key", str(f["keys"]),
        )  # fmt: skip
        assert (code, out["verified"], out["logIndex"], out["kind"]) == (0, True, 3, "attestation")

    other = sign_statement(json.loads(_payload(f["envelope"])), ring.signer)  # new signature
    forged = tmp_path / "other.json"
    forged.write_text(json.dumps(other.to_json()))
    code, out = run(
        capsys, "log", "verify-inclusion", "--entry", str(forged), "--proof", str(f["inclusion"]),
        "--checkpoint", str(f["new"]), "--key", str(f["pem"]),
    )  # fmt: skip
    assert (code, out["verified"]) == (1, False)
    stranger = ServiceKeyring.load_or_create(tmp_path / "stranger")
    stranger_pem = tmp_path / "stranger.pub"
    stranger_pem.write_text(stranger.active.public_pem)
    code, out = run(
        capsys, "log", "verify-inclusion", "--entry", str(f["envelope"]), "--proof",
        str(f["inclusion"]), "--checkpoint", str(f["new"]), "--key", str(stranger_pem),
    )  # fmt: skip
    assert (code, out["reason"]) == (1, "verification")
    assert "not signed by any trusted key" in out["error"]
    code, out = run(
        capsys, "log", "verify-inclusion", "--entry", str(f["envelope"]), "--proof",
        str(f["inclusion"]), "--checkpoint", str(f["old"]), "--key", str(f["pem"]),
    )  # fmt: skip
    assert (code, out["reason"]) == (2, "input") and "tree size 10" in out["error"]
    code, out = run(
        capsys, "log", "verify-inclusion", "--entry", str(f["envelope"]), "--proof",
        str(f["inclusion"]), "--checkpoint", str(f["new"]), "--key", str(f["pem"]),
        "--origin", "other.example/log",
    )  # fmt: skip
    assert (code, out["reason"]) == (1, "verification") and "other.example/log" in out["error"]


def _payload(path: Path) -> bytes:
    import base64

    return base64.b64decode(json.loads(path.read_text())["payload"])


def test_keys_list_rotate_and_public(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    code, out = run(capsys, "keys", "list", "--data-dir", str(data))
    assert (code, out) == (0, {"keys": []})
    first = ServiceKeyring.load_or_create(data).active
    code, out = run(capsys, "keys", "rotate", "--data-dir", str(data), "--algorithm", "ed25519")
    assert code == 0 and out["retired"] == first.keyid
    new = out["active"]["keyid"]
    code, out = run(capsys, "keys", "list", "--data-dir", str(data))
    assert [(k["keyid"], k["status"]) for k in out["keys"]] == [
        (first.keyid, "retired"),
        (new, "active"),
    ]
    assert main(["keys", "public", "--data-dir", str(data), "--keyid", first.keyid[:12]]) == 0
    assert capsys.readouterr().out == first.public_pem
    (data / "keys" / "keyring.json").write_text("{}")
    assert main(["keys", "list", "--data-dir", str(data)]) == 2
    assert "not a version 1 keyring" in capsys.readouterr().err
