"""Token signing keys (rotation, several processes, permissions) and secret hashing."""

from __future__ import annotations

import asyncio
import itertools
import os
import stat
import time
from pathlib import Path

import jwt
import pytest

from attest.servicekeys import KeyPermissionError
from registry.auth.accounts import Principal
from registry.auth.keys import TokenKeyring
from registry.auth.passwords import Hasher, SecretHashError, hash_secret, verify_secret
from registry.auth.roles import Grant, GrantError, Grants, check_namespace, covers
from registry.auth.tokens import ResourceScope, ScopeError, TokenAuthority, TokenError, parse_scopes
from registry.http.access import Access


def ring(folder: Path, algorithm: str = "ES256", max_age: float = 3600.0) -> TokenKeyring:
    keyring = TokenKeyring(folder, algorithm, max_age, token_ttl=300)  # type: ignore[arg-type]
    keyring.load()
    return keyring


def authority(keyring: TokenKeyring) -> TokenAuthority:
    return TokenAuthority(keyring, issuer="zoll", service="zoll", ttl=300)


PULL = [ResourceScope("repository", "a/b", ("pull",))]


def test_keys_are_private_files_and_shared_by_processes(tmp_path: Path) -> None:
    first, second = ring(tmp_path), ring(tmp_path)
    assert first.signing_key().kid == second.signing_key().kid  # the second loaded, not made
    files = list((tmp_path / "token-keys").glob("token-*.pem"))
    assert len(files) == 1
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "token-keys").stat().st_mode) == 0o700
    token = authority(first).issue("alice", 1, PULL).token
    assert authority(second).verify(token).subject == "alice"


def test_readable_key_files_are_refused(tmp_path: Path) -> None:
    keyring = ring(tmp_path)
    os.chmod(keyring.signing_key().path, 0o644)
    with pytest.raises(KeyPermissionError, match="chmod 600"):
        ring(tmp_path)


def test_rotation_keeps_old_tokens_valid_and_other_processes_follow(tmp_path: Path) -> None:
    worker_a, worker_b = ring(tmp_path), ring(tmp_path)
    old_token = authority(worker_a).issue("alice", 1, PULL).token
    new_key = worker_b.rotate()
    assert worker_b.signing_key().kid == new_key.kid != jwt.get_unverified_header(old_token)["kid"]
    new_token = authority(worker_b).issue("alice", 1, PULL).token
    assert jwt.get_unverified_header(new_token)["kid"] == new_key.kid
    # worker A does not know the new kid yet: it rescans (as AuthService does) and then does
    a = authority(worker_a)
    with pytest.raises(TokenError, match="unknown key"):
        a.verify(new_token)
    worker_a.scan()
    assert a.verify(new_token).subject == "alice"
    assert authority(worker_b).verify(old_token).subject == "alice"


def test_retired_keys_are_deleted_only_after_their_tokens_expired(tmp_path: Path) -> None:
    keyring = ring(tmp_path)
    first = keyring.signing_key()
    keyring.rotate()
    assert first.path.exists()  # superseded just now: its tokens still live
    second = keyring.signing_key()
    keyring.retire_after = 1  # seconds a superseded key's tokens may still be in use
    time.sleep(2.1)
    keyring.rotate()
    assert not first.path.exists()  # superseded 2 s ago
    assert second.path.exists()  # superseded just now
    assert next(k.kid for k in keyring.all_keys()) == second.kid


def test_old_or_other_algorithm_keys_are_replaced_at_start(tmp_path: Path) -> None:
    es = ring(tmp_path).signing_key()
    ed = ring(tmp_path, "EdDSA").signing_key()
    assert (es.algorithm, ed.algorithm) == ("ES256", "EdDSA") and es.kid != ed.kid
    token = authority(ring(tmp_path, "EdDSA")).issue("bob", 2, PULL).token
    assert jwt.get_unverified_header(token)["alg"] == "EdDSA"
    time.sleep(2.1)  # creation times are whole seconds, kept strictly increasing
    aged = ring(tmp_path, "EdDSA", max_age=1).signing_key()
    assert aged.kid != ed.kid


def test_scopes_parse_and_merge() -> None:
    scopes = parse_scopes(
        [
            "repository:a/b:pull",
            "repository:a/b:push repository(plugin):c:pull",
            "registry:catalog:*",
        ]
    )
    assert scopes == [
        ResourceScope("repository", "a/b", ("pull", "push")),
        ResourceScope("repository", "c", ("pull",)),
        ResourceScope("registry", "catalog", ("*",)),
    ]
    for bad in ("repository", "repository:Upper/Case:pull", ":x:pull", "repository::pull"):
        with pytest.raises(ScopeError):
            parse_scopes([bad])
    with pytest.raises(ScopeError, match="at most"):
        parse_scopes(["repository:a:pull"] * 65)


def test_namespaces_match_whole_path_segments() -> None:
    assert covers("opendesk", "opendesk") and covers("opendesk", "opendesk/app/x")
    assert not covers("opendesk", "opendesk-evil/app") and not covers("opendesk/app", "opendesk")
    assert covers("*", "anything/at/all")
    assert check_namespace("opendesk/") == "opendesk"
    for bad in ("Opendesk", "../x", "a//b", ""):
        with pytest.raises(GrantError):
            check_namespace(bad)
    grants = Grants((Grant("opendesk", "pusher"), Grant("*", "monitor")))
    assert grants.allows(Access("repository", "opendesk/app", "push"))
    assert not grants.allows(Access("repository", "opendesk/app", "delete"))
    assert not grants.allows(Access("repository", "other/app", "pull"))
    assert grants.allows(Access("registry", "*", "metrics"))
    assert not grants.allows(Access("registry", "catalog", "catalog"))
    assert Grants((Grant("opendesk", "auditor"),)).audit_namespaces() == ("opendesk",)
    assert Grants((Grant("*", "admin"),)).audit_namespaces() is None


def test_secret_hashes() -> None:
    stored = hash_secret("correct horse battery", 12)
    assert stored.startswith("scrypt$12$8$1$")
    assert verify_secret("correct horse battery", stored)
    assert not verify_secret("correct horse batterY", stored)
    assert hash_secret("correct horse battery", 12) != stored  # salted
    for bad in ("", "bcrypt$x", "scrypt$99$8$1$AAAA$AAAA", "scrypt$12$8$1$!!$AAAA"):
        with pytest.raises(SecretHashError):
            verify_secret("x", bad)


async def test_hashing_runs_off_the_event_loop() -> None:
    """While a slow hash runs, the loop keeps serving other work: ticks keep coming
    during it (a hash on the loop would leave one gap as long as the hash). Gaps, not
    a tick count, so a busy machine that delays every tick does not fail it."""
    hasher = Hasher(log2_n=16, concurrency=1)
    ticks: list[float] = []

    async def tick() -> None:
        while True:
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.002)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    started = time.perf_counter()
    stored = await hasher.hash("a secret for the loop test")
    ended = time.perf_counter()
    ticker.cancel()
    assert await hasher.verify("a secret for the loop test", stored)
    assert not await hasher.verify("wrong", None)
    during = [t for t in ticks if started <= t <= ended]
    edges = [started, *during, ended]
    longest_gap = max(b - a for a, b in itertools.pairwise(edges))
    assert len(during) >= 3
    assert longest_gap < (ended - started) / 2


def test_principal_usability() -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    base = Principal(1, "robot+ci", "robot", "x", False, None, Grants())
    assert base.usable(now)
    assert not Principal(1, "robot+ci", "robot", "x", True, None, Grants()).usable(now)
    expired = Principal(1, "robot+ci", "robot", "x", False, now - timedelta(seconds=1), Grants())
    assert not expired.usable(now)
