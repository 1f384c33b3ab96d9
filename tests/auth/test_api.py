"""The admin and audit API: accounts with secrets shown once, public namespaces,
audit filters, paging and per-namespace visibility, the OpenAPI security scheme."""

from __future__ import annotations

from typing import Any

import aiohttp
from openapi_spec_validator import validate

from tests.auth.conftest import Accounts, basic, token_for
from tests.support.oci import Image, push_image
from tests.support.servers import LiveRegistry


async def test_robot_secret_is_shown_once_and_works(
    secured: LiveRegistry, people: Accounts, http: aiohttp.ClientSession
) -> None:
    await people.user("root", ("*", "admin"))
    root = people.header("root")
    async with http.post(
        f"{secured.url}/api/v1/admin/robots",
        json={"name": "ci", "grants": [{"namespace": "opendesk", "role": "pusher"}]},
        headers=root,
    ) as r:
        assert r.status == 201
        assert r.headers["Cache-Control"] == "no-store"
        created = await r.json()
    assert created["principal"]["name"] == "robot+ci"
    secret = created["secret"]
    assert len(secret) >= 40
    async with http.get(f"{secured.url}/api/v1/admin/principals", headers=root) as r:
        listing = await r.text()
    assert secret not in listing and "scrypt" not in listing
    stored = await secured.registry.pool.fetchval(
        "SELECT secret_hash FROM auth_principals WHERE name = 'robot+ci'"
    )
    assert stored.startswith("scrypt$") and secret not in stored
    # the robot pushes with its secret
    async with aiohttp.ClientSession(headers={"Authorization": basic("robot+ci", secret)}) as ci:
        await push_image(ci, secured.url, "opendesk/app", Image.random(), "1.0")
    # a reset invalidates the old secret
    async with http.post(
        f"{secured.url}/api/v1/admin/principals/robot+ci/secret", json={}, headers=root
    ) as r:
        assert r.status == 200
        fresh = (await r.json())["secret"]
    assert fresh != secret
    async with http.get(
        f"{secured.url}/v2/opendesk/app/tags/list",
        headers={"Authorization": basic("robot+ci", secret)},
    ) as r:
        assert r.status == 401
    async with http.get(
        f"{secured.url}/v2/opendesk/app/tags/list",
        headers={"Authorization": basic("robot+ci", fresh)},
    ) as r:
        assert r.status == 200


async def test_admin_api_refuses_bad_input(
    secured: LiveRegistry, people: Accounts, http: aiohttp.ClientSession
) -> None:
    await people.user("root", ("*", "admin"))
    root = people.header("root")
    cases: list[tuple[str, str, Any, int, str]] = [
        ("POST", "/api/v1/admin/users", {"name": "Bad Name"}, 400, "user name"),
        ("POST", "/api/v1/admin/users", {"name": "bob", "password": "short"}, 400, "12"),
        ("POST", "/api/v1/admin/users", {"name": "root"}, 409, "exists"),
        ("POST", "/api/v1/admin/users", {"name": "anonymous"}, 400, "reserved"),
        ("POST", "/api/v1/admin/users", {"nom": "x"}, 400, "name: Field required"),
        (
            "POST",
            "/api/v1/admin/principals/anonymous/grants",
            {"namespace": "public", "role": "pusher"},
            400,
            "anonymous callers may only be given: reader",
        ),
        (
            "POST",
            "/api/v1/admin/principals/root/grants",
            {"namespace": "../etc", "role": "reader"},
            400,
            "neither '*' nor",
        ),
        (
            "POST",
            "/api/v1/admin/principals/root/grants",
            {"namespace": "x", "role": "overlord"},
            400,
            "unknown role",
        ),
        ("DELETE", "/api/v1/admin/principals/ghost", None, 404, "no principal"),
        ("DELETE", "/api/v1/admin/principals/anonymous", None, 400, "cannot be removed"),
        (
            "POST",
            "/api/v1/admin/robots",
            "x" * (2 * 1024 * 1024),
            413,
            "",
        ),
    ]
    for method, path, body, status, text in cases:
        kwargs: dict[str, Any] = {"json": body} if not isinstance(body, str) else {"data": body}
        async with http.request(method, secured.url + path, headers=root, **kwargs) as r:
            answer = await r.text()
            assert r.status == status, (path, body if not isinstance(body, str) else "big", answer)
            assert text in answer, (path, answer)
            assert r.content_type == "application/problem+json"


async def test_anonymous_pull_is_configurable_per_namespace(
    secured: LiveRegistry, people: Accounts, http: aiohttp.ClientSession
) -> None:
    await people.user("root", ("*", "admin"))
    await people.user("alice", ("opendesk", "reader"))
    async with people.session("root") as root:
        await push_image(root, secured.url, "public/tools", Image.random(), "1.0")
        await push_image(root, secured.url, "opendesk/app", Image.random(), "1.0")
    tags = f"{secured.url}/v2/public/tools/tags/list"
    async with http.get(tags) as r:
        assert r.status == 401  # default: off
    async with http.post(
        f"{secured.url}/api/v1/admin/principals/anonymous/grants",
        json={"namespace": "public", "role": "reader"},
        headers=people.header("root"),
    ) as r:
        assert r.status == 200
    async with http.get(tags) as r:
        assert r.status == 200
    token = await token_for(http, secured, "repository:public/tools:pull,push")
    async with http.get(tags, headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200
    async with http.post(
        f"{secured.url}/v2/public/tools/blobs/uploads/",
        headers={"Authorization": f"Bearer {token}"},
    ) as r:
        assert r.status == 401  # reading is all anonymous callers may do
    async with http.get(f"{secured.url}/v2/opendesk/app/tags/list") as r:
        assert r.status == 401
    # a signed-in user may read public namespaces too, on top of their own grants
    async with http.get(tags, headers=people.header("alice")) as r:
        assert r.status == 200


async def test_audit_api_filters_pages_and_limits_to_namespaces(
    secured: LiveRegistry, people: Accounts, http: aiohttp.ClientSession
) -> None:
    await people.user("root", ("*", "admin"))
    await people.user("nsauditor", ("opendesk", "auditor"))
    async with people.session("root") as root:
        for n in range(3):
            await push_image(root, secured.url, "opendesk/app", Image.random(layers=1), f"v{n}")
        await push_image(root, secured.url, "secret/app", Image.random(layers=1), "v1")
        await push_image(root, secured.url, "opendesk-evil/app", Image.random(layers=1), "v1")
    url = f"{secured.url}/api/v1/audit"

    async def page(who: str, **query: Any) -> dict[str, Any]:
        async with http.get(url, params=query, headers=people.header(who)) as r:
            assert r.status == 200, await r.text()
            result: dict[str, Any] = await r.json()
            return result

    everything = await page("root", limit=1000)
    repos = {e["repository"] for e in everything["events"]}
    assert repos == {"opendesk/app", "secret/app", "opendesk-evil/app", None}
    seqs = [e["seq"] for e in everything["events"]]
    assert seqs == sorted(seqs, reverse=True) and everything["head"]["seq"] == seqs[0]

    mine = await page("nsauditor", limit=1000)
    assert {e["repository"] for e in mine["events"]} == {"opendesk/app"}

    tag_moves = await page("root", action="tag.move", repository="opendesk")
    assert [e["target"] for e in tag_moves["events"]] == ["v2", "v1", "v0"]
    pushes = await page("root", action="manifest.", actor="root", limit=2)
    assert len(pushes["events"]) == 2 and pushes["next"] is not None
    rest = await page("root", action="manifest.", actor="root", before=pushes["next"])
    assert len(rest["events"]) == 3 and rest["next"] is None
    one = tag_moves["events"][0]
    by_request = await page("root", request_id=one["request_id"])
    assert {e["action"] for e in by_request["events"]} == {"manifest.push", "tag.move"}
    future = await page("root", since="2999-01-01T00:00:00Z")
    assert future["events"] == []
    async with http.get(url, params={"since": "yesterday"}, headers=people.header("root")) as r:
        assert r.status == 400
    async with http.get(f"{url}/head", headers=people.header("nsauditor")) as r:
        head = await r.json()
    assert head == everything["head"]


async def test_openapi_documents_security(
    secured: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{secured.url}/api/v1/openapi.json") as r:
        doc = await r.json()
    validate(doc)
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "basic"}
    assert doc["security"] == [{"bearer": []}, {"basic": []}]
    audit = doc["paths"]["/api/v1/audit"]["get"]
    assert {"401", "403"} <= set(audit["responses"])
    create = doc["paths"]["/api/v1/admin/robots"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "NewRobot"
    )
