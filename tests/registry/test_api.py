"""The /api/v1 API: self-describing, every route access-controlled, answers match the document."""

from __future__ import annotations

from typing import Any

import aiohttp
import jsonschema
import pytest
from openapi_spec_validator import validate

from registry.http.access import ACCESS_ATTR
from registry.http.app import build_app
from tests.support.oci import Image, push_image, push_manifest
from tests.support.servers import LiveRegistry


def test_every_route_declares_what_it_needs(zoll_config_registry: Any) -> None:
    app = build_app(zoll_config_registry)
    undeclared = [
        f"{route.method} {route.resource.canonical if route.resource else '?'}"
        for route in app.router.routes()
        if route.method != "HEAD" and getattr(route.handler, ACCESS_ATTR, None) is None
    ]
    assert undeclared == []


@pytest.fixture
def zoll_config_registry(zoll: LiveRegistry) -> Any:
    return zoll.registry


async def openapi(http: aiohttp.ClientSession, zoll: LiveRegistry) -> dict[str, Any]:
    async with http.get(f"{zoll.url}/api/v1/openapi.json") as r:
        assert r.status == 200
        doc: dict[str, Any] = await r.json()
    return doc


def check(doc: dict[str, Any], path: str, body: Any) -> None:
    """Validate a response body against the schema the document promises for `path`."""
    ref = doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    schema = {"$ref": ref["$ref"], "components": doc["components"]}
    jsonschema.validate(body, schema)


async def test_openapi_document_is_valid_and_complete(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    doc = await openapi(http, zoll)
    validate(doc)
    app_paths = {
        route.resource.canonical
        for route in build_app(zoll.registry).router.routes()
        if route.resource
        and route.resource.canonical.startswith("/api/v1/")
        and route.resource.canonical != "/api/v1/openapi.json"
    }
    assert app_paths == set(doc["paths"])


async def test_repositories_images_and_tag_history(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    doc = await openapi(http, zoll)
    first, second = Image.random(), Image.random()
    await push_image(http, zoll.url, "opendesk/collabora", first, "25.04")
    await push_image(http, zoll.url, "opendesk/collabora", second, "25.04")  # tag moves
    r = await push_manifest(
        http, zoll.url, "opendesk/collabora", "stable", second.manifest(), second.media_type
    )
    assert r.status == 201
    await push_image(http, zoll.url, "opendesk/element", Image.random(), "v1")

    async with http.get(f"{zoll.url}/api/v1/repositories?limit=1") as r:
        body = await r.json()
        check(doc, "/api/v1/repositories", body)
        assert [x["name"] for x in body["repositories"]] == ["opendesk/collabora"]
        assert body["repositories"][0]["tags"] == 2
        assert body["repositories"][0]["manifests"] == 2
        assert body["next"] == "opendesk/collabora"
    async with http.get(f"{zoll.url}/api/v1/repositories?after=opendesk/collabora") as r:
        assert [x["name"] for x in (await r.json())["repositories"]] == ["opendesk/element"]

    async with http.get(f"{zoll.url}/api/v1/repositories/opendesk/collabora/images") as r:
        body = await r.json()
        check(doc, "/api/v1/repositories/{name}/images", body)
        tags = {i["digest"]: i["tags"] for i in body["images"]}
        assert tags == {first.digest: [], second.digest: ["25.04", "stable"]}

    async with http.get(
        f"{zoll.url}/api/v1/repositories/opendesk/collabora/tag-history?tag=25.04"
    ) as r:
        body = await r.json()
        check(doc, "/api/v1/repositories/{name}/tag-history", body)
        moves = [(m["previous_digest"], m["digest"]) for m in body["moves"]]
        assert moves == [(first.digest, second.digest), (None, first.digest)]
        assert all(m["request_id"] for m in body["moves"])


async def test_image_detail(zoll: LiveRegistry, http: aiohttp.ClientSession) -> None:
    doc = await openapi(http, zoll)
    image = Image.random()
    await push_image(http, zoll.url, "app", image, "v1")
    async with http.get(f"{zoll.url}/api/v1/images/app@{image.digest}") as r:
        body = await r.json()
        check(doc, "/api/v1/images/{name}@{digest}", body)
        assert body["tags"] == ["v1"]
        assert [layer["size"] for layer in body["layers"]] == [len(x) for x in image.layers]
        assert body["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
        assert body["referrers"] == []


async def test_image_pages_carry_exactly_their_own_tags(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    """Paged two at a time, every image comes once with its own repository's tags: the
    same manifests tagged differently in a second repository lend none of theirs."""
    images = [Image.random() for _ in range(5)]
    expected: dict[str, list[str]] = {}
    for n, image in enumerate(images):
        names = [f"v{n}.{k}" for k in range(n % 3)]  # untagged, one tag, two tags
        await push_image(http, zoll.url, "pages/app", image, names[0] if names else "tmp")
        for name in names[1:]:
            await push_manifest(
                http, zoll.url, "pages/app", name, image.manifest(), image.media_type
            )
        await push_image(http, zoll.url, "pages/other", image, f"other-{n}")
        expected[image.digest] = names
    async with http.delete(f"{zoll.url}/v2/pages/app/manifests/tmp") as r:
        assert r.status == 202
    listed: dict[str, list[str]] = {}
    after = ""
    while True:
        url = f"{zoll.url}/api/v1/repositories/pages/app/images?limit=2"
        async with http.get(url + (f"&after={after}" if after else "")) as r:
            body = await r.json()
        assert len(body["images"]) <= 2
        listed.update((i["digest"], i["tags"]) for i in body["images"])
        if body["next"] is None:
            break
        after = body["next"]
    assert listed == expected


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/images/app@sha256:" + "0" * 64, 404),
        ("/api/v1/images/app@sha256:zz", 400),
        ("/api/v1/images/BAD@sha256:" + "0" * 64, 400),
        ("/api/v1/repositories/nope/images", 404),
        ("/api/v1/repositories?limit=0", 400),
        ("/api/v1/no-such-endpoint", 404),
    ],
)
async def test_errors_are_problem_documents(
    zoll: LiveRegistry, http: aiohttp.ClientSession, path: str, status: int
) -> None:
    async with http.get(f"{zoll.url}{path}") as r:
        assert r.status == status
        assert r.content_type == "application/problem+json"
        body = await r.json(content_type=None)
        assert body["status"] == status and body["title"]
