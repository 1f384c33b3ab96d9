"""Three `zoll serve` processes on one PostgreSQL database and one S3 bucket, as behind a
load balancer: each has its own data folder (serve.lock, the token keys it made), and
they share what docs/deploy.md says must be shared (the attestation and witness key files,
the database, the bucket). A round-robin client sends each request to the next instance.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from attest.keys import PrivateKey
from tests.auth.conftest import FAST_KDF, basic
from tests.support.postgres import fresh_database
from tests.support.served import Served
from tests.support.servers import S3Server

INSTANCES = 3
LOG_ORIGIN = "zoll.scaleout.test/log"
GC_GRACE = 20
"""Seconds the collecting instance protects fresh content (pushes here take less)."""
GC_ON: list[dict[str, str]] = [
    {
        "ZOLL_GC__ENABLED": "true",
        "ZOLL_GC__INTERVAL": "1",
        "ZOLL_GC__GRACE_PERIOD": str(GC_GRACE),
    },
    {},
    {},
]
"""The first instance collects garbage every second while the others take pushes."""


@dataclass
class Cluster:
    """The instances, what they share, and the admin's credentials."""

    dsn: str
    instances: list[Served]
    admin: str
    """An `Authorization: Basic …` header of the bootstrap admin."""
    key: PrivateKey
    """The attestation key every instance signs with (and the log's checkpoints)."""
    env: dict[str, str]
    """The configuration the instances share."""
    folder: Path

    @property
    def urls(self) -> list[str]:
        return [f"http://{s.host}" for s in self.instances]

    def output(self) -> str:
        return "\n".join("".join(s.output[-30:]) for s in self.instances)


def instance_env(
    dsn: str, s3: S3Server, prefix: str, key_file: Path, witness_file: Path
) -> dict[str, str]:
    """The configuration every instance gets (the same for all, as a deployment's)."""
    return {
        "ZOLL_DATABASE__DSN": dsn,
        "ZOLL_DATABASE__POOL_MIN": "1",
        "ZOLL_DATABASE__POOL_MAX": "6",
        "ZOLL_STORAGE__DRIVER": "s3",
        "ZOLL_STORAGE__S3__ENDPOINT": s3.endpoint,
        "ZOLL_STORAGE__S3__ACCESS_KEY": s3.access_key,
        "ZOLL_STORAGE__S3__SECRET_KEY": s3.secret_key,
        "ZOLL_STORAGE__S3__BUCKET": "zoll-tests",
        "ZOLL_STORAGE__S3__PREFIX": prefix,
        "ZOLL_STORAGE__S3__PART_SIZE": str(5 * 1024 * 1024),
        "ZOLL_ATTEST__KEY__FILE": str(key_file),
        "ZOLL_FEDERATION__WITNESS_KEY_FILE": str(witness_file),
        "ZOLL_ATTEST__LOG_ORIGIN": LOG_ORIGIN,
        "ZOLL_AUTH__SCRYPT_LOG2_N": str(FAST_KDF),
        "ZOLL_AUTH__PRINCIPAL_CACHE": "0",
        # Three failures of one name lock it out for a second (the last test does it).
        "ZOLL_AUTH__LIMITS__FAILED_LOGINS": "3",
        "ZOLL_AUTH__LIMITS__LOCKOUT": "1",
        # The protocol flows stay out of the pipeline (its attestations add tags).
        "ZOLL_NAMESPACES": '[{prefix: "flows/", evaluate: false}]',
        "ZOLL_PIPELINE__CONCURRENCY": "1",
        "ZOLL_PIPELINE__POLL_SECONDS": "0.5",
        "ZOLL_GC__ENABLED": "false",
        "ZOLL_LOG__LEVEL": "warning",
    }


@pytest.fixture(scope="module")
async def cluster(
    pg_admin_dsn: str, s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Cluster]:
    """Three instances started at once on a database none of them migrated yet."""
    tmp = tmp_path_factory.mktemp("scaleout")
    dsn = await fresh_database(pg_admin_dsn, migrated=False)
    key_file = tmp / "attestation-key.pem"
    key = PrivateKey.generate("ecdsa-p256")
    key_file.write_bytes(key.pem())
    key_file.chmod(0o600)
    witness_file = tmp / "witness-key.pem"
    witness_file.write_bytes(PrivateKey.generate("ed25519").pem())
    witness_file.chmod(0o600)
    env = instance_env(dsn, s3_server, f"{uuid.uuid4().hex[:12]}/", key_file, witness_file)
    started = await asyncio.gather(
        *(
            asyncio.to_thread(
                Served, tmp / f"instance-{n}", "--workers", "1", env={**env, **GC_ON[n]}
            )
            for n in range(INSTANCES)
        ),
        return_exceptions=True,
    )
    instances = [s for s in started if isinstance(s, Served)]
    try:
        failed = [s for s in started if not isinstance(s, Served)]
        if failed:
            raise failed[0]
        passwords = {s.admin_password() for s in instances} - {None}
        assert len(passwords) == 1, "exactly one instance creates the admin"
        yield Cluster(dsn, instances, basic("admin", str(passwords.pop())), key, env, tmp)
    finally:
        codes = await asyncio.gather(*(asyncio.to_thread(s.stop) for s in instances))
        for served, code in zip(instances, codes, strict=True):
            assert code == 0, "".join(served.output[-40:])


@dataclass
class RoundRobin:
    """An OCI client behind a round-robin load balancer: every request (token requests
    included) goes to the next instance. Tokens are fetched per scope as clients do and
    used on whichever instance the next request lands."""

    http: aiohttp.ClientSession
    urls: list[str]
    auth: str
    _next: Iterator[str] = field(init=False)
    _tokens: dict[str, str] = field(default_factory=dict)
    landed: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._next = itertools.cycle(self.urls)

    def url(self) -> str:
        url = next(self._next)
        self.landed.append(url)
        return url

    async def token(self, scope: str) -> str:
        if scope not in self._tokens:
            params = [("service", "zoll"), *(("scope", s) for s in scope.split())]
            async with self.http.get(
                f"{self.url()}/token", params=params, headers={"Authorization": self.auth}
            ) as r:
                assert r.status == 200, await r.text()
                self._tokens[scope] = str((await r.json())["token"])
        return self._tokens[scope]

    async def request(
        self, method: str, path: str, *, scope: str | None = None, **kwargs: Any
    ) -> tuple[int, dict[str, str], bytes]:
        """`method path` on the next instance; the token covers `scope` (default: pull,
        push and delete on the repository named in `path`)."""
        if scope is None:
            scope = f"repository:{_repository(path)}:pull,push,delete"
        headers = {
            **kwargs.pop("headers", {}),
            "Authorization": f"Bearer {await self.token(scope)}",
        }
        async with self.http.request(
            method, self.url() + path, headers=headers, allow_redirects=False, **kwargs
        ) as r:
            return r.status, dict(r.headers), await r.read()


def _repository(path: str) -> str:
    """`/v2/<name>/(blobs|manifests|tags|referrers)/…` → name."""
    parts = path.split("?")[0].removeprefix("/v2/").split("/")
    for n, part in enumerate(parts):
        if part in ("blobs", "manifests", "tags", "referrers") and n:
            return "/".join(parts[:n])
    raise AssertionError(f"no repository in {path}")


@pytest.fixture
async def rr(cluster: Cluster) -> AsyncIterator[RoundRobin]:
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        yield RoundRobin(http, cluster.urls, cluster.admin)
