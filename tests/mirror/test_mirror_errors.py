"""Mirror failures as an operator meets them: an upstream that does not exist, refuses
us, or does not answer. Each entry's first failure is told at once, in one line with the
upstream's own words; what cannot heal fails at the first attempt; retries say which
attempt failed and when the next one runs; `--wait` exits non-zero whoever queued the
failing work; `status` keeps the last error of each entry; the server log tells the
same in one line, without a traceback."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from registry.embedded.ports import free_port
from tests.mirror.test_mirror_api import zoll
from tests.oci_client.upstream import Distribution, htpasswd_line, running_distribution
from tests.support.served import Served

pytestmark = pytest.mark.slow
MAX_ATTEMPTS = 2


@pytest.fixture(scope="module")
async def service(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Served, Path]]:
    data_dir = tmp_path_factory.mktemp("errors") / "zoll-data"
    env = {"ZOLL_AUTH__ENABLED": "false", "ZOLL_PIPELINE__MAX_ATTEMPTS": str(MAX_ATTEMPTS)}
    served = await asyncio.to_thread(
        Served, data_dir, "--workers", "2", "--storage", "filesystem", env=env
    )
    try:
        yield served, data_dir
    finally:
        await asyncio.to_thread(served.stop)
        log = served.rest_of_output()
        # The service's own account of the failures: one line each, no traceback.
        events = [json.loads(line) for line in log if line.startswith("{")]
        failures = [e for e in events if e["event"].startswith("job failed")]
        assert failures, "\n".join(log[-20:])
        for event in failures:
            assert "exception" not in event and "\n" not in event["error"], event
        assert "Traceback" not in "\n".join(log)


@pytest.fixture(scope="module")
async def empty(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Distribution]:
    """A real upstream that has none of the repositories asked for."""
    async with running_distribution(tmp_path_factory.mktemp("empty")) as upstream:
        yield upstream


@pytest.fixture(scope="module")
async def locked(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Distribution]:
    """A real upstream behind Basic auth, asked without credentials."""
    work = tmp_path_factory.mktemp("locked")
    (work / "htpasswd").write_text(htpasswd_line("someone", "secret") + "\n")
    auth = {"htpasswd": {"realm": "upstream", "path": str(work / "htpasswd")}}
    async with running_distribution(work, auth) as upstream:
        yield upstream


def write_set(folder: Path, name: str, mirrors: list[dict[str, Any]]) -> Path:
    path = folder / f"{name}.yaml"
    for mirror in mirrors:
        mirror.setdefault("target", f"{name}/{mirror['name']}")
    path.write_text(yaml.safe_dump({"version": 1, "name": name, "mirrors": mirrors}))
    return path


def entries(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["entry"]: e for e in report["entries"]}


async def test_what_cannot_heal_fails_at_once_and_says_why(
    service: tuple[Served, Path], empty: Distribution, locked: Distribution, tmp_path: Path
) -> None:
    _, data_dir = service
    the_set = write_set(
        tmp_path,
        "broken",
        [
            {"name": "dns", "source": "upstream.invalid/team/app", "tags": ["1.0", "1.1"]},
            {
                "name": "missing",
                "source": f"{empty.host}/team/nothing",
                "insecure": True,
                "tags": ["1.0"],
            },
            {
                "name": "locked",
                "source": f"{locked.host}/team/app",
                "insecure": True,
                "tags": ["1.0"],
            },
        ],
    )
    started = time.monotonic()
    code, out, err = await zoll(
        "mirror", "apply", str(the_set), "--wait", "--json", "--data-dir", str(data_dir)
    )
    elapsed = time.monotonic() - started
    assert code == 1, (out, err)
    report = json.loads(out)
    assert report["finished"] is True
    found = entries(report)
    expected = {
        "dns": "upstream.invalid",
        "missing": "404",
        "locked": "401",
    }
    for name, words in expected.items():
        entry = found[name]
        assert entry["state"] == "failed", entry
        assert words in entry["error"] and "\n" not in entry["error"], entry
        assert entry["attempt"] == 1, entry  # no retry for what retrying cannot fix
        assert entry["next_try_at"] is None, entry
    assert "Name or service not known" in found["dns"]["error"]
    assert elapsed < 30, elapsed

    # A person watching: one line per entry, naming the upstream's error (on stderr).
    code, out, err = await zoll(
        "mirror", "apply", str(the_set), "--wait", "--data-dir", str(data_dir)
    )
    assert code == 1, (out, err)
    for name, words in expected.items():
        [line] = [ln for ln in err.splitlines() if ln.startswith(f"{name}:")]
        assert words in line and "failed" in line, err

    # `status` keeps the last error of each entry.
    code, out, err = await zoll("mirror", "status", "--json", "--data-dir", str(data_dir))
    assert code == 0, err
    status = {e["name"]: e for e in json.loads(out)["entries"] if e["set_name"] == "broken"}
    for name, words in expected.items():
        assert words in (status[name]["last_error"] or ""), status[name]


async def test_retries_are_told_and_a_second_apply_follows_the_first(
    service: tuple[Served, Path], tmp_path: Path
) -> None:
    """An upstream that refuses connections may come back: the entry is retried, and each
    failed attempt is told with the time of the next one. A second `apply --wait` while
    the first one's work is still running waits for that work and reports its failure."""
    _, data_dir = service
    the_set = write_set(
        tmp_path,
        "flaky",
        [
            {
                "name": "refused",
                "source": f"127.0.0.1:{free_port()}/team/app",
                "insecure": True,
                "tags": ["1.0"],
            }
        ],
    )
    code, _, err = await zoll("mirror", "apply", str(the_set), "--data-dir", str(data_dir))
    assert code == 0, err
    code, out, err = await zoll(
        "mirror", "apply", str(the_set), "--wait", "--data-dir", str(data_dir)
    )
    assert code == 1, (out, err)
    lines = [ln for ln in err.splitlines() if ln.startswith("refused:")]  # people: stderr
    assert any(f"attempt 1 of {MAX_ATTEMPTS}" in ln and "next try at" in ln for ln in lines), err
    assert any("failed" in ln and "Connect call failed" in ln for ln in lines), err

    code, out, err = await zoll("mirror", "status", "--json", "--data-dir", str(data_dir))
    [entry] = [e for e in json.loads(out)["entries"] if e["set_name"] == "flaky"]
    assert "Connect call failed" in entry["last_error"], entry
