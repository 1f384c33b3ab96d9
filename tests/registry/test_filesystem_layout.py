"""The filesystem driver's layout across versions: an upload an older Zoll started (in its
own `uploads/<id>/data` folder) is continued, finished or cancelled after an upgrade."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.oci import sha256
from tests.support.servers import LiveRegistry, live_registry, registry_config


@pytest.fixture
async def fs_zoll(pg_dsn: str, tmp_path: Path) -> AsyncIterator[LiveRegistry]:
    async with live_registry(registry_config(pg_dsn, tmp_path / "data", "filesystem", None)) as z:
        yield z


def _as_older_version(uploads: Path, location: str) -> None:
    """Move an upload's file to where versions before 2026-11 kept it."""
    upload_id = location.rstrip("/").rsplit("/", 1)[1].split("?")[0]
    data = uploads / upload_id
    assert data.is_file(), "an upload is one file"
    data.rename(uploads / f"{upload_id}.tmp")
    data.mkdir()
    (uploads / f"{upload_id}.tmp").rename(data / "data")


async def _begin(http: aiohttp.ClientSession, zoll: LiveRegistry, first: bytes) -> str:
    async with http.post(f"{zoll.url}/v2/app/blobs/uploads/") as r:
        location = f"{zoll.url}{r.headers['Location']}"
    headers = {"Content-Range": f"0-{len(first) - 1}", "Content-Type": "application/octet-stream"}
    async with http.patch(location, data=first, headers=headers) as r:
        assert r.status == 202, await r.text()
        return f"{zoll.url}{r.headers['Location']}"


async def test_an_upload_begun_by_an_older_version_is_finished(
    fs_zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    uploads = Path(fs_zoll.registry.driver.inner.root) / "uploads"  # type: ignore[attr-defined]
    data = os.urandom(300_000)
    location = await _begin(http, fs_zoll, data[:100_000])
    _as_older_version(uploads, location)

    headers = {"Content-Range": f"100000-{len(data) - 1}"}
    async with http.patch(location, data=data[100_000:], headers=headers) as r:
        assert r.status == 202, await r.text()
        assert r.headers["Range"] == f"0-{len(data) - 1}"
        location = f"{fs_zoll.url}{r.headers['Location']}"
    async with http.put(location, params={"digest": sha256(data)}) as r:
        assert r.status == 201, await r.text()
    async with http.get(f"{fs_zoll.url}/v2/app/blobs/{sha256(data)}") as r:
        assert await r.read() == data
    assert list(uploads.iterdir()) == [], "the old folder is gone with the upload"


async def test_an_upload_begun_by_an_older_version_can_be_cancelled(
    fs_zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    uploads = Path(fs_zoll.registry.driver.inner.root) / "uploads"  # type: ignore[attr-defined]
    location = await _begin(http, fs_zoll, b"half of a layer")
    _as_older_version(uploads, location)

    async with http.delete(location) as r:
        assert r.status == 204
    async with http.get(location) as r:
        assert r.status == 404
    assert list(uploads.iterdir()) == []
    assert (uploads.parent / "blobs").is_dir(), "cancelling removes the upload, nothing else"
