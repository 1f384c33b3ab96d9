"""Every `/api/v1` path the documentation shows exists: in the OpenAPI document (with the
query parameters the docs use) and on a running service, where each documented GET
answers 200 for real values."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from attest.keys import PrivateKey
from registry.pipeline.runner import PipelineRunner
from tests.support.oci import Image, push_image
from tests.support.pipeline import drain
from tests.support.postgres import fresh_database
from tests.support.servers import LiveRegistry, live_registry, registry_config

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MENTION = re.compile(
    r"(?:\b(GET|POST|PUT|PATCH|DELETE)(?:/[A-Z]+)* )?(?:https?://[^/\s`]+)?(/api/v1/[^\s`)|,;\"']*)"
)
PLACEHOLDER = re.compile(r"\{[^}/]*\}|\$[A-Z_]+")
SPEC = "/api/v1/openapi.json"
"""The OpenAPI document itself, which it does not list."""
REPO = "docs/app"
MIRROR_SET = "docs-set"


@dataclass(frozen=True)
class Mention:
    where: str
    method: str | None
    path: str
    query: tuple[str, ...]
    prefix: bool
    """The docs abbreviate (`/api/v1/admin/…`): only a prefix of real paths."""


def mentions() -> list[Mention]:
    found = []
    for doc in DOCUMENTS:
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            for m in MENTION.finditer(line):
                raw = m.group(2).rstrip(".:")
                path, _, query = raw.partition("?")
                prefix = "…" in path
                path = path.split("…", 1)[0]
                names = tuple(p.split("=", 1)[0] for p in query.split("&") if p)
                where = f"{doc.relative_to(ROOT)}:{number}"
                found.append(Mention(where, m.group(1), path, names, prefix))
    return found


def template_regex(template: str) -> re.Pattern[str]:
    """An OpenAPI path template as a regex ({name} may hold slashes, like repositories)."""
    out = ""
    for part in re.split(r"(\{[^}]+\})", template):
        if part == "{name}":
            out += r".+"
        elif part.startswith("{"):
            out += r"[^/]+"
        else:
            out += re.escape(part)
    return re.compile(out)


def operations_for(spec: dict[str, Any], mention: Mention) -> list[tuple[str, str, dict[str, Any]]]:
    """(template, method, operation) of every OpenAPI operation the mention can mean."""
    sample = PLACEHOLDER.sub("P", mention.path)
    out = []
    for template, methods in spec["paths"].items():
        if mention.prefix:
            if not template.startswith(mention.path):
                continue
        elif not template_regex(template).fullmatch(sample):
            continue
        for method, op in methods.items():
            if mention.method is None or method.upper() == mention.method:
                out.append((template, method, op))
    return out


def test_the_documentation_mentions_the_api() -> None:
    found = mentions()
    assert len(found) > 20
    assert any(m.path == "/api/v1/log/proof/inclusion/{index}" for m in found)


@pytest.fixture(scope="module")
async def served(
    pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[LiveRegistry, str]]:
    dsn = await fresh_database(pg_admin_dsn)
    folder = tmp_path_factory.mktemp("policy")
    (folder / "ci.pub").write_text(PrivateKey.generate().public.pem())
    (folder / "trust.yaml").write_text("signers: {ci: {key: ci.pub}}\nrequire: {signature: true}\n")
    config = registry_config(
        dsn,
        tmp_path_factory.mktemp("data"),
        "filesystem",
        None,
        attest={"trust_policy": str(folder / "trust.yaml")},
    )
    async with live_registry(config) as live, aiohttp.ClientSession() as http:
        digest = await push_image(http, live.url, REPO, Image.random(layers=1, size=256), "v1")
        await drain(PipelineRunner(live.services))
        entry = {"name": "app", "source": "oci:/nowhere", "target": REPO, "tags": ["1"]}
        async with http.post(
            f"{live.url}/api/v1/mirror/sets",
            json={"version": 1, "name": MIRROR_SET, "mirrors": [entry]},
        ) as r:
            assert r.status == 200, await r.text()  # its jobs are never run here
        yield live, digest


def concrete(live: LiveRegistry, template: str, digest: str, size: int) -> str:
    if template.startswith("/api/v1/trust-policies/"):
        digest = f"sha256:{live.services.trust_policy_sha256}"
    values = {"digest": digest, "index": "0", "size": str(size)}
    name = MIRROR_SET if template.startswith("/api/v1/mirror/") else REPO
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), name), template)


QUERY_VALUES = {"start": "0", "limit": "5", "old": "1", "index": "0", "wait": "0"}


async def test_every_documented_path_is_in_the_openapi_document_and_served(
    served: tuple[LiveRegistry, str], http: aiohttp.ClientSession
) -> None:
    live, digest = served
    async with http.get(f"{live.url}/api/v1/openapi.json") as r:
        spec = await r.json()
    size = await live.services.log.size()
    wrong: list[str] = []
    for mention in mentions():
        if mention.path == SPEC:
            continue  # fetched above
        ops = operations_for(spec, mention)
        if not ops:
            what = f"{mention.method or ''} {mention.path}".strip()
            wrong.append(f"{mention.where}: {what} is not an API path")
            continue
        for template, method, op in ops:
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
            unknown = set(mention.query) - declared
            if unknown:
                wrong.append(f"{mention.where}: {template} takes no {sorted(unknown)}")
            if method != "get" or mention.prefix:
                continue
            query = {q: QUERY_VALUES.get(q, str(size)) for q in mention.query}
            if "size" in query or "new" in query:
                query |= {k: str(size) for k in ("size", "new") if k in query}
            url = live.url + concrete(live, template, digest, size)
            async with http.get(url, params=query) as r:
                if r.status != 200:
                    wrong.append(f"{mention.where}: GET {r.url} answers {r.status}")
    assert wrong == [], "\n".join(wrong)
