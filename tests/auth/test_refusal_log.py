"""A refused request's log line names who was refused and what they asked for, even when
the answer hides the repository (404 NAME_UNKNOWN, by design)."""

from __future__ import annotations

import aiohttp
import pytest
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from registry.config import LogConfig
from registry.http import middleware
from registry.logs import configure_logging, get_logger
from tests.auth.conftest import Accounts, basic
from tests.support.servers import LiveRegistry


async def test_the_log_names_who_was_refused(
    secured: LiveRegistry,
    people: Accounts,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Info level, whatever an earlier test of this process configured (an in-process CLI
    # logs warnings only), and a fresh access logger: the service's own is cached with the
    # processors of its first use and would bypass the capture.
    configure_logging(LogConfig(level="info", format="json"))
    monkeypatch.setattr(middleware, "log", get_logger("zoll.access"))
    name, secret = await people.robot("ci", ("demo", "pusher"))
    auth = {"Authorization": basic(name, secret)}
    with capture_logs(processors=[merge_contextvars]) as logs:
        async with http.post(f"{secured.url}/v2/other/app/blobs/uploads/", headers=auth) as r:
            assert r.status == 404
            assert (await r.json())["errors"][0]["code"] == "NAME_UNKNOWN"
        async with http.post(f"{secured.url}/v2/demo/app/blobs/uploads/", headers=auth) as r:
            assert r.status == 202  # the same connection, allowed: nothing of the refusal stays
    # only this test's two requests: the shared service may log others meanwhile
    ours = ("/v2/other/app/blobs/uploads/", "/v2/demo/app/blobs/uploads/")
    refused, allowed = [e for e in logs if e["event"] == "request" and e["path"] in ours]
    assert refused["principal"] == "robot+ci" and refused["status"] == 404, refused
    # an upload needs at least `attest` there (attesters upload blobs too)
    assert refused["refused"] == "repository other/app: attest", refused
    assert allowed["principal"] == "robot+ci" and "refused" not in allowed, allowed
