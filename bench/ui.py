"""Web pages with 100,000 images: server time of the catalogue and the image page.

Fills an embedded PostgreSQL through the database directly (repositories, manifests,
pipeline verdicts, tags, search terms; full documents — hardening report, verification
result, SBOM, findings, three logged attestations — for a sample of images), then serves
the pages in this process with authentication on and a logged-in session, and times each
request inside the server (a middleware around everything else), p50 and p95:

- `/ui/` (namespaces), `/ui/n/<ns>` (repositories with their images by state),
  `/ui/r/<repo>` first page and a later page (keyset cursor), a state filter;
- search by vulnerability id, by package name, by digest prefix;
- the image page of a fully documented image.

    PYTHONPATH=. .venv/bin/python -m bench ui [--images 100000] [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from attest.statements import statement, subject
from policy.report import SCHEMA as HARDENING_SCHEMA
from registry.audit import Actor, acting_as
from registry.auth import accounts
from registry.auth.passwords import Hasher
from registry.config import load_config
from registry.http.app import build_app
from registry.logs import configure_logging
from registry.oci.digest import Digest
from registry.pipeline.services import PipelineServices
from registry.service import close_registry, open_registry
from tests.support.postgres import fresh_database, running_postgres

NAMESPACES = 20
REPOS_PER_NAMESPACE = 50
PACKAGES = [f"lib{n}" for n in range(400)]


def hardening_report(digest: str, failing: bool) -> dict[str, Any]:
    results = [
        {
            "id": f"HC-{i:02d}",
            "title": f"criterion {i}",
            "rule": "a rule text",
            "severity": "high" if i % 3 == 0 else "medium",
            "status": "fail" if failing and i == 18 else "pass",
            "evidence": [f"evidence line {j} for criterion {i}" for j in range(2)],
        }
        for i in range(1, 33)
    ]
    passed = sum(1 for r in results if r["status"] == "pass")
    return {
        "schema": HARDENING_SCHEMA,
        "subject": {"digest": digest, "name": None},
        "catalog": {
            "name": "zoll-hardening",
            "version": "1.0.0",
            "digest": "sha256:0",
            "overrides": [],
        },
        "analyzer": "zoll-analyzer/1.1",
        "analysis_complete": True,
        "evaluated_at": datetime.now(UTC).isoformat(),
        "summary": {"pass": passed, "fail": 32 - passed, "not_applicable": 0},
        "results": results,
    }


def verification(digest: str) -> dict[str, Any]:
    return {
        "schema": "https://zoll.dev/verification-result/v1",
        "subject": digest,
        "policy": "supplier@sha256:0123456789abcdef",
        "passed": True,
        "requirements": [
            {
                "id": "signature",
                "description": "image signed by supplier",
                "passed": True,
                "satisfied_by": ["cosign:sig/0"],
                "problems": [],
            }
        ],
        "evidence": [
            {
                "id": "cosign:sig/0",
                "kind": "signature",
                "format": "cosign-simplesigning",
                "verified": True,
                "signer": {"kind": "key", "keyid": "ab" * 32, "matched": ["supplier"]},
            }
        ],
        "errors": [],
    }


def sbom(packages: list[str]) -> dict[str, Any]:
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "components": [
            {"type": "library", "name": p, "version": "1.0", "purl": f"pkg:deb/debian/{p}@1.0"}
            for p in packages
        ],
    }


def findings(packages: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "id": f"DEBIAN-CVE-2099-{i:04d}",
            "aliases": [f"CVE-2099-{i:04d}"],
            "severity": "medium",
            "summary": "",
            "package": {"name": p, "version": "1.0", "ecosystem": "Debian", "purl": ""},
            "cvss_score": 5.0,
            "fixed_versions": ["1.1"],
            "vex_status": None,
            "vex_justification": None,
            "suppressed": False,
            "undecided_reason": None,
        }
        for i, p in enumerate(packages[:20])
    ]


async def fill(dsn: str, images: int, documented: int) -> list[tuple[str, str]]:
    """Rows for `images` images in NAMESPACES × REPOS_PER_NAMESPACE repositories, in
    set-based statements (on a connection of its own: no statement timeout); returns
    the fully documented (repository, digest) pairs."""
    pool = await asyncpg.connect(dsn)
    await pool.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    try:
        return await _fill(pool, images, documented)
    finally:
        await pool.close()


async def _fill(pool: asyncpg.Connection, images: int, documented: int) -> list[tuple[str, str]]:
    repos = [f"ns{n:02d}/app{r:03d}" for n in range(NAMESPACES) for r in range(REPOS_PER_NAMESPACE)]
    await pool.execute("INSERT INTO repositories (name) SELECT unnest($1::text[])", repos)
    # One statement per table over generate_series: the image number i decides its
    # repository, digest, state, tag and packages.
    await pool.execute(
        """INSERT INTO manifests (repository_id, digest, media_type, content, size, created_at)
           SELECT r.id, 'sha256:' || encode(sha256(int8send(i)), 'hex'),
                  'application/vnd.oci.image.manifest.v1+json',
                  convert_to('{"schemaVersion":2,"layers":[]}', 'UTF8'), 32,
                  now() - make_interval(secs => i)
           FROM generate_series(0, $1 - 1) AS i
           JOIN repositories r ON r.id = (SELECT min(id) FROM repositories) + i % $2""",
        images,
        len(repos),
    )
    await pool.execute(
        """INSERT INTO image_status (repository_id, digest, kind, state, fingerprint,
                                     verification_passed, hardening, created_at, updated_at)
           SELECT m.repository_id, m.digest, 'image',
                  (ARRAY['admitted','admitted','admitted','admitted','admitted','admitted',
                         'admitted','quarantined','quarantined','rejected'])
                      [1 + abs(hashtext(m.digest)) % 10],
                  CASE WHEN abs(hashtext(m.digest)) % 50 = 0 THEN NULL ELSE 'fp' END,
                  abs(hashtext(m.digest)) % 10 < 8,
                  jsonb_build_object('summary', jsonb_build_object('pass', 30, 'fail', 2,
                                                                   'not_applicable', 0)),
                  m.created_at, m.created_at
           FROM manifests m"""
    )
    await pool.execute(
        """INSERT INTO tags (repository_id, name, manifest_digest)
           SELECT repository_id, 'v' || row_number() OVER (PARTITION BY repository_id), digest
           FROM manifests"""
    )
    await pool.execute(
        """INSERT INTO image_search_terms (kind, term, repository_id, digest)
           SELECT 'package', 'lib' || ((abs(hashtext(s.digest)) + k * 37) % 400),
                  s.repository_id, s.digest
           FROM image_status s, generate_series(0, 9) AS k
           ON CONFLICT DO NOTHING"""
    )
    await pool.execute(
        """INSERT INTO image_search_terms (kind, term, repository_id, digest)
           SELECT 'vulnerability',
                  'CVE-2099-' || lpad((abs(hashtext(s.digest)) % 500)::text, 4, '0'),
                  s.repository_id, s.digest
           FROM image_status s WHERE abs(hashtext(s.digest)) % 4 = 0"""
    )
    rows = await pool.fetch(
        """SELECT r.name, s.digest FROM image_status s JOIN repositories r
           ON r.id = s.repository_id ORDER BY s.digest LIMIT $1""",
        documented,
    )
    sample = [(r["name"], r["digest"]) for r in rows]
    for name, digest in sample:
        packages = random.sample(PACKAGES, 300)
        await pool.execute(
            """UPDATE image_status SET hardening = $3, verification = $4, sbom = $5,
                      vulnerabilities = $6, reasons = '[]'::jsonb
               WHERE repository_id = (SELECT id FROM repositories WHERE name = $1)
                 AND digest = $2""",
            name,
            digest,
            hardening_report(digest, False),
            verification(digest),
            sbom(packages),
            findings(packages),
        )
    await pool.execute("ANALYZE")
    return sample


def timer(samples: dict[str, list[float]]) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def timed(request: web.Request, handler: Any) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            return await handler(request)  # type: ignore[no-any-return]
        finally:
            samples[request.headers.get("X-Bench", request.path)].append(
                time.perf_counter() - started
            )

    return timed


async def run(images: int, requests: int, documented: int) -> None:
    with running_postgres() as admin, tempfile.TemporaryDirectory(prefix="zoll-ui-") as folder:
        dsn = await fresh_database(admin)
        config = load_config(
            environ={},
            overrides={
                "data_dir": folder,
                "database": {"dsn": dsn, "pool_min": 2, "pool_max": 10},
                "storage": {"driver": "filesystem"},
                "log": {"level": "warning", "format": "json"},
                "auth": {"enabled": True, "scrypt_log2_n": 12},
                "pipeline": {"synchronous_commit": True},
            },
        )
        configure_logging(config.log)
        registry = await open_registry(config)
        services = await PipelineServices.open(registry)
        started = time.monotonic()
        sample = await fill(dsn, images, documented)
        for name, digest in sample[:50]:
            statements = [
                statement([subject(name, Digest.parse(digest))], f"https://example.org/p{k}", {})
                for k in range(3)
            ]
            await services.ledger.sign_and_log_many(
                statements, services.keyring.signer, subject=Digest.parse(digest), repository=name
            )
        with acting_as(Actor("bench", "system")):
            await accounts.create_user(
                registry.pool, Hasher(12), "bench", "bench-password-1234", grants=(("*", "admin"),)
            )
        print(f"filled {images} images in {time.monotonic() - started:.1f} s", flush=True)

        samples: dict[str, list[float]] = defaultdict(list)
        app = build_app(registry, services)
        app.middlewares.insert(0, timer(samples))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        base = f"http://{host}:{port}"
        try:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                await login(http, base)
                first = await http.get(f"{base}/ui/r/ns03/app007")
                page = await first.text()
                found = page.split('rel="next" href="', 1)
                cursor = found[1].split('"', 1)[0].replace("&amp;", "&") if len(found) > 1 else ""
                cases = {
                    "/ui/ (namespaces)": "/ui/",
                    "/ui/n/<ns> (50 repositories, counts by state)": "/ui/n/ns07",
                    "/ui/r/<repo> (first 50 images)": "/ui/r/ns03/app007",
                    "/ui/r/<repo> (a later page)": cursor or "/ui/r/ns03/app007",
                    "/ui/r/<repo>?state=quarantined": "/ui/r/ns05/app011?state=quarantined",
                    "search: vulnerability id": "/ui/search?q=CVE-2099-0042",
                    "search: package": "/ui/search?q=lib123",
                    "search: digest prefix": f"/ui/search?q={sample[3][1][:19]}",
                    "image page (documented, 3 attestations)": "/ui/r/{}@{}".format(*sample[0]),
                }
                for label, path in cases.items():
                    for _ in range(requests):
                        async with http.get(base + path, headers={"X-Bench": label}) as r:
                            assert r.status == 200, (label, r.status, await r.text())
                            await r.read()
        finally:
            await runner.cleanup()
            await services.aclose()
            await close_registry(registry)
        print(f"\n{images} images; server time per request ({requests} requests each):\n")
        print("| page | p50 ms | p95 ms |")
        print("| --- | ---: | ---: |")
        for label in cases:
            values = sorted(samples[label])
            p50 = statistics.median(values) * 1000
            p95 = values[int(len(values) * 0.95) - 1] * 1000
            print(f"| {label} | {p50:.1f} | {p95:.1f} |")


async def login(http: aiohttp.ClientSession, base: str) -> None:
    async with http.get(f"{base}/ui/login") as r:
        text = await r.text()
    token = text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    async with http.post(
        f"{base}/ui/login",
        data={"csrf": token, "username": "bench", "password": "bench-password-1234"},
    ) as r:
        assert r.status == 200 and "Signed in as" in await r.text(), r.status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--documented", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(run(args.images, args.requests, args.documented))


if __name__ == "__main__":
    main()
