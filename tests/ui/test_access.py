"""Web pages and badges × callers: the exact answer, and the session's guarantees.

Pages are authorised by the same middleware and grants as the API (docs/ui.md): a
visitor who is not signed in is sent to the login page, a signed-in caller who may not
read a repository gets "not found" (as the API's 404), a registry-wide page the caller
may not see is 403. Badges of repositories the caller may not read are never served.
The matrix runs with Basic credentials (pages accept them like the API); the session
tests show the login cookie gives the same answers and what it promises (HttpOnly,
SameSite, Secure behind TLS, CSRF tokens, logout, a new password ends it).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from registry.auth import accounts
from registry.auth.passwords import Hasher
from registry.pipeline.runner import PipelineRunner
from tests.auth.conftest import FAST_KDF, Accounts
from tests.support.oci import Image, push_image
from tests.support.pipeline import drain
from tests.support.servers import LiveRegistry
from tests.ui.conftest import csrf_of, login, make_public

ZOLL_OVERRIDES = {"http": {"public_url": "https://zoll.example.org"}}
"""Behind a TLS proxy: session cookies must be Secure."""

CALLERS = ("none", "reader", "auditor", "stranger", "root")
GRANTS = {
    "reader": (("opendesk", "reader"),),
    "auditor": (("opendesk", "auditor"),),
    "stranger": (("other", "reader"),),
    "root": (("*", "admin"),),
}
PULL = (303, 200, 200, 404, 200)
"""Pages of one repository: login first; not found for those who may not read it."""
OPEN = (200,) * 5
BADGE = (404, 200, 200, 404, 200)
AUDIT = (303, 403, 200, 403, 200)
MIRROR = (303, 403, 403, 403, 200)
ADMIN = (303, 403, 403, 403, 200)


@dataclass
class World:
    url: str
    private: str
    public: str
    people: Accounts


@pytest.fixture(scope="module")
async def world(secured_module: LiveRegistry, people_module: Accounts) -> World:
    for name, grants in GRANTS.items():
        await people_module.user(name, *grants)
    await make_public(secured_module, "public")
    async with people_module.session("root") as root:
        private = await push_image(root, secured_module.url, "opendesk/app", Image.random(), "v1")
        public = await push_image(root, secured_module.url, "public/tool", Image.random(), "v1")
    await drain(PipelineRunner(secured_module.services))
    return World(secured_module.url, private, public, people_module)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """Cookies only where a test sends them (the Secure cookies would not be kept here)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


def matrix(w: World) -> list[tuple[str, str, str, tuple[int, ...]]]:
    image = f"opendesk/app@{w.private}"
    return [
        ("GET /", "GET", "/", (302,) * 5),
        ("GET /ui", "GET", "/ui", (302,) * 5),
        ("GET /ui/static/{file}", "GET", "/ui/static/zoll.css", OPEN),
        ("GET /ui/", "GET", "/ui/", OPEN),
        ("GET /ui/search", "GET", f"/ui/search?q={w.private}", OPEN),
        ("GET /ui/n/{ns}", "GET", "/ui/n/opendesk", (404, 200, 200, 404, 200)),
        ("GET /ui/r/{name}", "GET", "/ui/r/opendesk/app", PULL),
        ("GET /ui/r/{name}@{digest}", "GET", f"/ui/r/{image}", PULL),
        (
            "GET /ui/r/{name}@{digest}/attestations.json",
            "GET",
            f"/ui/r/{image}/attestations.json",
            PULL,
        ),
        ("GET /ui/log", "GET", "/ui/log", OPEN),
        ("GET /ui/log/entries/{index}", "GET", "/ui/log/entries/0", OPEN),
        ("GET /ui/mirror", "GET", "/ui/mirror", MIRROR),
        (
            "GET /ui/mirror/{name}/progress.json",
            "GET",
            "/ui/mirror/nothing/progress.json",
            (303, 403, 403, 403, 404),
        ),
        ("GET /ui/audit", "GET", "/ui/audit", AUDIT),
        ("GET /ui/people", "GET", "/ui/people", ADMIN),
        # Without a CSRF token every form is refused, whoever sends it.
        ("POST /ui/people/public", "POST", "/ui/people/public", (303, 403, 403, 403, 403)),
        ("GET /ui/login", "GET", "/ui/login", (200, 303, 303, 303, 303)),
        ("POST /ui/login", "POST", "/ui/login", (403,) * 5),
        ("POST /ui/logout", "POST", "/ui/logout", (303,) * 5),
        (
            "GET /badges/{name}/{ref}/{kind}.{ext}",
            "GET",
            "/badges/opendesk/app/v1/admission.svg",
            BADGE,
        ),
        (
            "GET /badges/{name}/{ref}/{kind}.{ext}",
            "GET",
            "/badges/public/tool/v1/signed.json",
            OPEN,
        ),
    ]


def test_matrix_covers_every_page(secured_module: LiveRegistry) -> None:
    from registry.http.app import build_app

    routes = {
        f"{route.method} {route.resource.canonical}"
        for route in build_app(secured_module.registry).router.routes()
        if route.method != "HEAD"
        and route.resource is not None
        and route.resource.canonical.startswith(("/ui", "/badges/", "/"))
        and not route.resource.canonical.startswith(
            ("/v2", "/api/", "/token", "/healthz", "/tlog/", "/witness/")
        )
        and route.resource.canonical not in ("/readyz", "/metrics")
    }
    w = World("", "sha256:0", "sha256:0", Accounts(secured_module))
    missing = sorted(routes - {key for key, *_ in matrix(w)})
    assert missing == [], f"add these pages to the matrix: {missing}"


async def test_every_page_every_caller(world: World, http: aiohttp.ClientSession) -> None:
    wrong = []
    for key, method, path, expected in matrix(world):
        for caller, status in zip(CALLERS, expected, strict=True):
            headers = {} if caller == "none" else world.people.header(caller)
            async with http.request(
                method, world.url + path, headers=headers, allow_redirects=False
            ) as r:
                body = await r.read()
                if r.status != status:
                    wrong.append(f"{key} as {caller}: {r.status}, expected {status}")
                if r.status == 303 and caller == "none" and path.startswith("/ui/r/"):
                    assert r.headers["Location"].startswith("/ui/login?next=/ui/r/")
                if r.status in (403, 404) and path.startswith("/ui/"):
                    assert b"<!doctype html>" in body  # an error page, not a JSON document
    assert wrong == []


async def test_not_found_pages_do_not_leak_names(world: World, http: aiohttp.ClientSession) -> None:
    """A stranger learns nothing from a private repository's page: it is answered exactly
    as a repository that does not exist."""
    headers = world.people.header("stranger")
    bodies = []
    for name in ("opendesk/app", "opendesk/ghost"):
        async with http.get(f"{world.url}/ui/r/{name}", headers=headers) as r:
            assert r.status == 404
            text = (await r.text()).replace(r.headers["X-Request-Id"], "ID")
            bodies.append(re.sub(r'name="csrf" value="[^"]+"', "CSRF", text))
    assert bodies[0] == bodies[1]
    assert "opendesk" not in bodies[0].split("<main", 1)[1]


async def test_pages_carry_security_headers(world: World, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{world.url}/ui/") as r:
        assert "script-src 'self'" in r.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        assert r.headers["X-Content-Type-Options"] == "nosniff"


async def test_session_login_and_logout(world: World, http: aiohttp.ClientSession) -> None:
    password = world.people.passwords["reader"]
    async with http.get(f"{world.url}/ui/login") as r:
        set_cookie = r.headers["Set-Cookie"]
        assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
        assert "Secure" in set_cookie  # http.public_url is https: the browser talks TLS
        token = csrf_of(await r.text())
        login_cookie = r.cookies["zoll_login_csrf"].value

    # A login form without the token from the login page is refused.
    async with http.post(
        f"{world.url}/ui/login",
        data={"csrf": "forged", "username": "reader", "password": password},
        headers={"Cookie": f"zoll_login_csrf={login_cookie}"},
        allow_redirects=False,
    ) as r:
        assert r.status == 403
    async with http.post(
        f"{world.url}/ui/login",
        data={"csrf": token, "username": "reader", "password": "wrong-password-123"},
        headers={"Cookie": f"zoll_login_csrf={login_cookie}"},
        allow_redirects=False,
    ) as r:
        assert r.status == 401
        assert "Wrong user name or password" in await r.text()
    async with http.post(
        f"{world.url}/ui/login",
        data={"csrf": token, "username": "reader", "password": password, "next": "//evil.example"},
        headers={"Cookie": f"zoll_login_csrf={login_cookie}"},
        allow_redirects=False,
    ) as r:
        assert r.status == 303
        assert r.headers["Location"] == "/ui/"  # never a redirect to another site
        cookie = r.headers.getall("Set-Cookie")
        session_line = next(c for c in cookie if c.startswith("zoll_session="))
        for flag in ("HttpOnly", "SameSite=Lax", "Secure", "Path=/"):
            assert flag in session_line, session_line
        session = r.cookies["zoll_session"].value
    jar = {"Cookie": f"zoll_session={session}"}

    # The session reads what the reader may read, and nothing through the API.
    async with http.get(f"{world.url}/ui/r/opendesk/app", headers=jar, allow_redirects=False) as r:
        assert r.status == 200
        page = await r.text()
        assert "Signed in as <strong>reader</strong>" in page
    async with http.get(f"{world.url}/ui/audit", headers=jar, allow_redirects=False) as r:
        assert r.status == 403
    async with http.get(
        f"{world.url}/api/v1/images/opendesk/app@{world.private}", headers=jar
    ) as r:
        assert r.status == 401  # the cookie never authenticates the API

    # Logging out needs the session's token; afterwards the cookie is worthless.
    async with http.post(
        f"{world.url}/ui/logout", data={"csrf": "forged"}, headers=jar, allow_redirects=False
    ) as r:
        assert r.status == 403
    async with http.post(
        f"{world.url}/ui/logout", data={"csrf": csrf_of(page)}, headers=jar, allow_redirects=False
    ) as r:
        assert r.status == 303
        assert 'zoll_session=""' in r.headers["Set-Cookie"]
    async with http.get(f"{world.url}/ui/r/opendesk/app", headers=jar, allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"].startswith("/ui/login")


async def test_new_password_ends_sessions(world: World, http: aiohttp.ClientSession) -> None:
    await world.people.user("carol", ("opendesk", "reader"))
    session = await login(http, world.url, "carol", world.people.passwords["carol"])
    jar = {"Cookie": f"zoll_session={session}"}
    async with http.get(f"{world.url}/ui/r/opendesk/app", headers=jar, allow_redirects=False) as r:
        assert r.status == 200
    pool = world.people.live.registry.pool
    await accounts.reset_secret(pool, Hasher(FAST_KDF), "carol", "carol-new-password-99")
    world.people.live.registry.auth.forget("carol")  # type: ignore[union-attr]
    async with http.get(f"{world.url}/ui/r/opendesk/app", headers=jar, allow_redirects=False) as r:
        assert r.status == 303


async def test_admin_makes_a_namespace_public(world: World, http: aiohttp.ClientSession) -> None:
    """The people page's form is the anonymous reader grant, CSRF-protected and audited."""
    async with people_http(world, "root") as (session, jar):
        async with session.get(f"{world.url}/ui/people", headers=jar) as r:
            token = csrf_of(await r.text())
        async with session.get(f"{world.url}/ui/n/opendesk", allow_redirects=False) as r:
            assert r.status == 404  # anonymous: not public yet
        async with session.post(
            f"{world.url}/ui/people/public",
            data={"csrf": token, "namespace": "opendesk", "public": "yes"},
            headers=jar,
            allow_redirects=False,
        ) as r:
            assert r.status == 303
        async with session.get(f"{world.url}/ui/n/opendesk", allow_redirects=False) as r:
            assert r.status == 200
        async with session.get(
            f"{world.url}/badges/opendesk/app/v1/admission.svg", allow_redirects=False
        ) as r:
            assert r.status == 200 and r.headers["Cache-Control"].startswith("public")
        async with session.post(
            f"{world.url}/ui/people/public",
            data={"csrf": token, "namespace": "opendesk", "public": "no"},
            headers=jar,
            allow_redirects=False,
        ) as r:
            assert r.status == 303
        async with session.get(f"{world.url}/ui/audit?action=grant.", headers=jar) as r:
            text = await r.text()
            assert "grant.add" in text and "grant.remove" in text
    async with http.get(f"{world.url}/ui/n/opendesk", allow_redirects=False) as r:
        assert r.status == 404


class people_http:
    """A cookie-less client with `name`'s session cookie to send explicitly."""

    def __init__(self, world: World, name: str) -> None:
        self.world, self.name = world, name

    async def __aenter__(self) -> tuple[aiohttp.ClientSession, dict[str, str]]:
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        value = await login(
            self.session, self.world.url, self.name, self.world.people.passwords[self.name]
        )
        return self.session, {"Cookie": f"zoll_session={value}"}

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()


async def test_badges_cache_and_endpoint_json(world: World, http: aiohttp.ClientSession) -> None:
    url = f"{world.url}/badges/public/tool/v1/admission"
    async with http.get(url + ".svg") as r:
        assert r.status == 200 and r.content_type == "image/svg+xml"
        etag = r.headers["ETag"]
        assert r.headers["Cache-Control"] == "public, max-age=60, must-revalidate"
        svg = await r.text()
        assert svg.startswith("<svg") and "admission:" in svg
    async with http.get(url + ".svg", headers={"If-None-Match": etag}) as r:
        assert r.status == 304
    async with http.get(f"{world.url}/badges/public/tool/{world.public}/admission.json") as r:
        body = await r.json()
        assert body["schemaVersion"] == 1 and body["label"] == "admission"
        assert r.headers["Access-Control-Allow-Origin"] == "*"
    headers = world.people.header("reader")
    async with http.get(f"{world.url}/badges/opendesk/app/v1/hardening.svg", headers=headers) as r:
        assert r.status == 200 and r.headers["Cache-Control"].startswith("private")
    for bad in ("/badges/public/tool/v1/nonsense.svg", "/badges/public/tool/v9/signed.svg"):
        async with http.get(world.url + bad) as r:
            assert r.status == 404, bad


async def test_search_finds_by_digest_and_hides_private(
    world: World, http: aiohttp.ClientSession
) -> None:
    short = world.private[: len("sha256:") + 10]
    async with http.get(f"{world.url}/ui/search", params={"q": short}) as r:
        assert world.private not in await r.text()  # anonymous may not read opendesk
    headers = world.people.header("reader")
    async with http.get(f"{world.url}/ui/search", params={"q": short}, headers=headers) as r:
        assert f"/ui/r/opendesk/app@{world.private}" in await r.text()
    async with http.get(f"{world.url}/ui/search", params={"q": "tool"}) as r:
        assert "/ui/r/public/tool" in await r.text()  # by repository name
