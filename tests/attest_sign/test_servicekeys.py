"""Service keys: first start, permissions, rotation with history, PEM files, SoftHSM."""

from __future__ import annotations

import copy
import json
import os
import stat
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from securesystemslib.dsse import Envelope as SslibEnvelope
from securesystemslib.signer import SSlibKey

from attest import statements as st
from attest.keys import PrivateKey
from attest.servicekeys import (
    KeyPermissionError,
    KeyringError,
    Pkcs11Error,
    Pkcs11Signer,
    Pkcs11Uri,
    ServiceKeyring,
    ServiceKeySettings,
    read_keyring,
)
from attest.signing import sign_statement
from attest.tlog.checkpoint import Checkpoint, sign_checkpoint, verify_checkpoint
from attest.tlog.hashing import EMPTY_ROOT
from attest.tlog.note import NoteVerifier
from registry.oci.digest import Digest
from tests.attest_sign.softhsm import Token, make_token

T0 = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Token:
    return make_token(tmp_path_factory.mktemp("softhsm"))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def a_statement() -> dict[str, object]:
    return st.vsa(
        image="r/app",
        digest=Digest.of(b"img"),
        verifier=st.Verifier("https://zoll.example"),
        time_verified=T0,
        policy=st.ResourceRef("p"),
        result="PASSED",
        verified_levels=[],
    )


def verified_by_securesystemslib(ring: ServiceKeyring) -> list[str]:
    envelope = sign_statement(a_statement(), ring.signer)
    public = ring.active.public_key()
    sslib = SslibEnvelope.from_dict(copy.deepcopy(envelope.to_json()))
    return list(sslib.verify([SSlibKey.from_crypto(public.key, keyid=public.keyid)], 1))


def test_first_start_generates_a_private_key_and_later_starts_reuse_it(tmp_path: Path) -> None:
    ring = ServiceKeyring.load_or_create(tmp_path, clock=lambda: T0)
    folder = tmp_path / "keys"
    assert mode(folder) == 0o700
    assert mode(folder / ring.active.location) == 0o600
    assert ring.active.algorithm == "ecdsa-p256" and ring.active.valid_from == T0
    again = ServiceKeyring.load_or_create(tmp_path)
    assert again.active.keyid == ring.active.keyid
    assert verified_by_securesystemslib(again) == [ring.active.keyid]
    ed = ServiceKeyring.load_or_create(tmp_path / "ed", ServiceKeySettings(algorithm="ed25519"))
    assert ed.active.algorithm == "ed25519"


def test_keys_readable_by_others_are_refused(tmp_path: Path) -> None:
    ring = ServiceKeyring.load_or_create(tmp_path)
    key_file = tmp_path / "keys" / ring.active.location
    key_file.chmod(0o644)
    with pytest.raises(KeyPermissionError, match="chmod 600"):
        ServiceKeyring.load_or_create(tmp_path)
    key_file.chmod(0o600)
    (tmp_path / "keys").chmod(0o755)
    with pytest.raises(KeyPermissionError, match="chmod 700"):
        ServiceKeyring.load_or_create(tmp_path)


def _start(data_dir: str) -> str:
    return ServiceKeyring.load_or_create(Path(data_dir)).active.keyid


def test_workers_starting_together_share_one_key(tmp_path: Path) -> None:
    with ProcessPoolExecutor(4) as pool:
        keyids = list(pool.map(_start, [str(tmp_path)] * 8))
    assert len(set(keyids)) == 1
    assert len(read_keyring(tmp_path)) == 1


def test_rotation_retires_the_old_key_but_keeps_it_published(tmp_path: Path) -> None:
    ring = ServiceKeyring.load_or_create(tmp_path, clock=lambda: T0)
    old = ring.active
    new = ring.rotate("ed25519", clock=lambda: T0 + timedelta(days=90))
    assert new.algorithm == "ed25519" and ring.signer.public.keyid == new.keyid
    assert not (tmp_path / "keys" / old.location).exists()
    published = {k["keyid"]: k for k in ring.to_json(log_origin="zoll.example/log")["keys"]}
    assert published[old.keyid]["status"] == "retired"
    assert published[old.keyid]["validUntil"] == "2025-04-01T00:00:00Z"
    assert published[new.keyid]["validUntil"] is None
    vkey = published[old.keyid]["logVerifierKey"]
    assert NoteVerifier.from_vkey(vkey).public.keyid == old.keyid
    assert ring.key_for(old.keyid, T0 + timedelta(days=1)) is not None
    assert ring.key_for(old.keyid, T0 + timedelta(days=91)) is None
    reloaded = ServiceKeyring.load_or_create(tmp_path)
    assert reloaded.active.keyid == new.keyid
    assert [k.keyid for k in reloaded.public_keys()] == [old.keyid, new.keyid]


def test_an_operator_pem_file_replaces_the_generated_key(tmp_path: Path) -> None:
    generated = ServiceKeyring.load_or_create(tmp_path).active
    pem = tmp_path / "operator.pem"
    key = PrivateKey.generate("ecdsa-p256")
    pem.write_bytes(key.pem(b"secret"))
    settings = ServiceKeySettings(key_file=pem, key_password=b"secret")
    ring = ServiceKeyring.load_or_create(tmp_path, settings)
    assert ring.active.keyid == key.public.keyid and ring.active.source == "pem-file"
    assert ring.key_for(generated.keyid) is not None and not ring.key_for(generated.keyid).active  # type: ignore[union-attr]
    with pytest.raises(KeyringError, match="configuring a new key"):
        ring.rotate()
    # Dropping the setting generates a fresh key; the operator key, now retired, stays out.
    fresh = ServiceKeyring.load_or_create(tmp_path)
    assert fresh.active.source == "generated" and fresh.active.keyid != generated.keyid
    with pytest.raises(KeyringError, match="retired and is never used again"):
        ServiceKeyring.load_or_create(tmp_path, settings)
    pem.write_text("not a key")
    with pytest.raises(KeyringError, match=r"operator\.pem"):
        ServiceKeyring.load_or_create(tmp_path / "other", settings)


@pytest.mark.parametrize("obj", ["ec", "ed"])
def test_keys_in_softhsm_sign_attestations_and_checkpoints(
    tmp_path: Path, token: Token, obj: str
) -> None:
    ring = ServiceKeyring.load_or_create(tmp_path, ServiceKeySettings(pkcs11_uri=token.uri(obj)))
    try:
        assert ring.active.source == "pkcs11"
        assert ring.active.algorithm == ("ecdsa-p256" if obj == "ec" else "ed25519")
        assert "pin" not in ring.active.location and token.pin not in json.dumps(ring.to_json())
        assert verified_by_securesystemslib(ring) == [ring.active.keyid]
        signed = sign_checkpoint(Checkpoint("zoll.example/log", 0, EMPTY_ROOT), ring.signer)
        verifier = NoteVerifier.for_key("zoll.example/log", ring.active.public_key())
        assert verify_checkpoint(signed.to_text(), [verifier]).size == 0
        with pytest.raises(KeyringError, match="rotate it by configuring"):
            ring.rotate()
    finally:
        ring.close()


def test_pkcs11_errors_are_specific(token: Token, tmp_path: Path) -> None:
    with pytest.raises(Pkcs11Error, match="cannot open the token"):
        Pkcs11Signer(token.uri("ec", with_pin=False), pin="0000")
    with pytest.raises(Pkcs11Error, match="no usable key pair"):
        Pkcs11Signer(token.uri("missing"))
    pin_file = tmp_path / "pin"
    pin_file.write_text(token.pin + "\n")
    signer = Pkcs11Signer(token.uri("ec", with_pin=False) + f"&pin-source=file:{pin_file}")
    signer.close()
    with pytest.raises(Pkcs11Error, match="module"):
        Pkcs11Signer("pkcs11:token=x;object=y")
    for bad, reason in (
        ("file:///key.pem", "starts with"),
        ("pkcs11:token=a;object=b;type=public", "type=private"),
        ("pkcs11:token=a", "object"),
        ("pkcs11:object=a;object=b", "twice"),
        ("pkcs11:object=a;colour=red", "colour"),
    ):
        with pytest.raises(Pkcs11Error, match=reason):
            Pkcs11Uri.parse(bad)
    uri = Pkcs11Uri.parse("pkcs11:token=t;id=%01%ff;type=private?pin-value=1&module-path=/m.so")
    assert uri.id == b"\x01\xff" and uri.pin_value == "1"
    assert uri.redacted() == "pkcs11:token=t;id=%01%ff;type=private?module-path=/m.so"
    assert os.environ["SOFTHSM2_CONF"]
