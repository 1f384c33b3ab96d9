"""The web pages in a real browser (Debian's chromium driven by Playwright), on a Zoll
that judged real images: a supplier-signed image with packages and known
vulnerabilities (one cleared by VEX), one that breaks a hardening criterion, a public
namespace, a mirror set with one good and one broken entry.

Shown here: log in, find an image by CVE id, open its page, verify Zoll's attestation in
the browser (WebCrypto + the inclusion proof against the signed checkpoint) and see it
pass, tamper with it and see it fail, log out; an anonymous visitor sees only public
namespaces; a badge renders and changes when the verdict changes. The screenshots in
docs/ui/ are taken here.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, Route

from attest.keys import PrivateKey
from attest.signing import sign_statement
from attest.tlog.checkpoint import Checkpoint, sign_checkpoint
from attest.tlog.entries import attestation_record
from attest.tlog.note import NoteVerifier
from policy.packages import Package
from policy.vuln.store import import_osv, import_vex
from registry.mirror.sets import MirrorSet
from registry.mirror.store import apply_set, entry_job
from registry.oci.digest import Digest
from registry.pipeline.runner import PipelineRunner
from tests.attest_sign import naive_merkle
from tests.attest_verify.cosign_writer import CosignWriter
from tests.auth.conftest import Accounts
from tests.pipeline.conftest import SUPPLIER_POLICY, containerfile
from tests.policy_vuln.scenario import csaf_vex, record
from tests.support.buildah import Builder
from tests.support.pipeline import RegistrySink, drain
from tests.support.servers import LiveRegistry
from tests.support.tools import layout_index, skopeo
from tests.ui.browser import DESKTOP, PHONE, chromium, shot, shot_of
from tests.ui.conftest import make_public

pytestmark = pytest.mark.slow

OPENSSL = "3.0.11-1~deb12u2"
MEDIUM = "CVSS:3.1/AV:N/AC:H/PR:L/UI:R/S:U/C:L/I:L/A:N"
HIGH = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"
CVE_OPEN = "CVE-2099-4242"
CVE_VEX = "CVE-2099-4343"
DEBIAN_FILES = {
    "rootfs/etc/os-release": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n'
    'VERSION_ID="12"\nVERSION_CODENAME=bookworm\n',
    "rootfs/var/lib/dpkg/status": f"Package: openssl\nStatus: install ok installed\n"
    f"Priority: optional\nArchitecture: amd64\nVersion: {OPENSSL}\n"
    "Description: Secure Sockets Layer toolkit\n\n",
}


WIDER_THAN_SCREEN = """() => Array.from(document.querySelectorAll('body *'))
  .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1
                 && !(e.parentElement && e.parentElement.closest('.scroll'))
                 && e.getClientRects().length)
  .map((e) => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))
  .slice(0, 8)"""
"""Elements that stick out on the right, outside the horizontally scrolling tables."""


def _config(folder: Path) -> dict[str, Any]:
    return {
        "attest": {"trust_policy": str(folder / "trust.yaml")},
        "namespaces": [
            {"prefix": "opendesk/", "admission": "enforce"},
            {"prefix": "public/", "admission": "enforce", "require_verification": False},
        ],
        "pipeline": {"max_attempts": 1},
    }


@dataclass
class World:
    live: LiveRegistry
    people: Accounts
    app: Digest
    rootapp: Digest
    later: Digest
    supplier: PrivateKey
    layout: Path

    @property
    def url(self) -> str:
        return self.live.url


@pytest.fixture(scope="module")
def trust_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PrivateKey]:
    folder = tmp_path_factory.mktemp("trust")
    key = PrivateKey.generate()
    (folder / "supplier.pub").write_text(key.public.pem())
    (folder / "trust.yaml").write_text(SUPPLIER_POLICY)
    return folder, key


@pytest.fixture(scope="module")
async def secured_module(
    module_dsn: str,
    tmp_path_factory: pytest.TempPathFactory,
    trust_folder: tuple[Path, PrivateKey],
) -> AsyncIterator[LiveRegistry]:
    from tests.support.servers import live_registry
    from tests.ui.conftest import secured_config

    config = secured_config(
        module_dsn, tmp_path_factory.mktemp("zoll") / "data", **_config(trust_folder[0])
    )
    async with live_registry(config) as live:
        yield live


async def _push(
    world_live: LiveRegistry, builder: Builder, tmp: Path, name: str, spec: str, auth: str
) -> tuple[Digest, Path]:
    image = await asyncio.to_thread(builder.build, name.replace("/", "-"), spec, files=DEBIAN_FILES)
    layout = await asyncio.to_thread(
        builder.push_oci_layout, image, tmp / name.replace("/", "_"), "1.0.0"
    )
    await skopeo(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        auth,
        f"oci:{layout}:1.0.0",
        f"docker://{world_live.host}/{name}:1.0.0",
    )
    return Digest.parse(layout_index(layout)["manifests"][0]["digest"]), layout


async def _sign(
    w: LiveRegistry, name: str, digest: Digest, key: PrivateKey, auth: tuple[str, str]
) -> None:
    writer = CosignWriter(RegistrySink(w.url, name, auth))
    await asyncio.to_thread(writer.sign, digest, key)
    for predicate, body in (
        ("https://cyclonedx.org/bom", {"bomFormat": "CycloneDX", "specVersion": "1.6"}),
        (
            "https://slsa.dev/provenance/v1",
            {
                "buildDefinition": {
                    "buildType": "https://example.org/build",
                    "resolvedDependencies": [
                        {
                            "uri": "git+https://code.example.org/app@refs/heads/main",
                            "digest": {"gitCommit": "4f1c2d9e8b7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d"},
                        }
                    ],
                },
                "runDetails": {"builder": {"id": "https://ci.example.org/runner"}},
            },
        ),
    ):
        await asyncio.to_thread(writer.attest, digest, key, predicate, body)


@pytest.fixture(scope="module")
async def world(
    secured_module: LiveRegistry,
    people_module: Accounts,
    trust_folder: tuple[Path, PrivateKey],
    tmp_path_factory: pytest.TempPathFactory,
) -> World:
    live, key = secured_module, trust_folder[1]
    tmp = tmp_path_factory.mktemp("images")
    pool = live.registry.pool
    password = await people_module.user("alice", ("*", "admin"))
    await people_module.user("rita", ("public", "reader"))
    await make_public(live, "public")
    advisories = {
        f"DEBIAN-{CVE_OPEN}": record(
            f"DEBIAN-{CVE_OPEN}",
            "openssl",
            "12",
            [{"introduced": "0"}, {"fixed": "3.0.15-1"}],
            severity=[{"type": "CVSS_V3", "score": MEDIUM}],
        ),
        f"DEBIAN-{CVE_VEX}": record(
            f"DEBIAN-{CVE_VEX}",
            "openssl",
            "12",
            [{"introduced": "0"}],
            severity=[{"type": "CVSS_V3", "score": HIGH}],
        ),
    }
    osv = tmp / "osv"
    osv.mkdir()
    for rid, data in advisories.items():
        (osv / f"{rid}.json").write_text(json.dumps(data))
    await import_osv(pool, osv)
    vex = tmp / "vex.json"
    package = Package("Debian", "openssl", OPENSSL, f"pkg:deb/debian/openssl@{OPENSSL}")
    vex.write_text(json.dumps(csaf_vex(package, CVE_VEX)))
    await import_vex(pool, vex)

    builder = Builder(tmp / "buildah")
    creds = f"alice:{password}"
    app, _ = await _push(live, builder, tmp, "opendesk/app", containerfile(marker="app"), creds)
    rootapp, _ = await _push(
        live, builder, tmp, "opendesk/rootapp", containerfile(user="0", marker="root"), creds
    )
    later, _ = await _push(
        live, builder, tmp, "opendesk/later", containerfile(marker="later"), creds
    )
    _, layout = await _push(live, builder, tmp, "public/tool", containerfile(marker="tool"), creds)
    for name, digest in (("opendesk/app", app), ("opendesk/rootapp", rootapp)):
        await _sign(live, name, digest, key, ("alice", password))
    mirror_set = f"""version: 1
name: public-tools
mirrors:
  - name: tool
    source: oci:{layout}
    target: public/mirrored-tool
    tags: ["1.0.0"]
  - name: broken
    source: oci:{tmp}/no-such-layout
    target: public/broken
    tags: ["1.0.0"]
"""
    parsed, sha = MirrorSet.parse(mirror_set.encode(), "public-tools.yaml")
    names = await apply_set(pool, parsed, sha)
    # Through the service's queue (pipeline.max_attempts 1): the broken entry fails once.
    await live.services.jobs.enqueue_many([entry_job(parsed.name, n) for n in names])
    await drain(PipelineRunner(live.services), timeout=600)
    return World(live, people_module, app, rootapp, later, key, layout)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as found:
        yield found


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport=DESKTOP)
    try:
        yield await context.new_page()
    finally:
        await context.close()


async def log_in(page: Page, w: World, name: str = "alice") -> None:
    await page.goto(f"{w.url}/ui/login")
    await page.get_by_label("User name").fill(name)
    await page.get_by_label("Password").fill(w.people.passwords[name])
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(f"{w.url}/ui/")


async def test_find_by_cve_verify_in_browser_and_log_out(world: World, page: Page) -> None:
    w = world
    await log_in(page, w)
    assert await page.get_by_text("Signed in as").count() == 1
    assert await page.get_by_role("link", name="opendesk").count() == 1
    await shot(page, "catalogue")

    # Find the image by a CVE id (an alias of the Debian advisory).
    await page.get_by_label("Search by repository name").fill(CVE_OPEN.lower())
    await page.get_by_role("button", name="Search").click()
    await page.wait_for_url("**/ui/search?q=*")
    results = page.locator("table tbody tr")
    assert await results.count() == 5  # every test image has this openssl (Debian 12)
    await shot(page, "search")
    await (
        results.filter(has_text="opendesk/app")
        .get_by_role("link", name=f"sha256:{w.app.encoded[:12]}")
        .click()
    )
    await page.wait_for_url(f"**/ui/r/opendesk/app@{w.app}")

    # The image page: verdict, criteria with evidence, provenance, vulnerabilities + VEX.
    verdict = await page.locator(".verdict").inner_text()
    assert verdict.startswith("Admitted"), verdict
    criteria = await page.locator("table.criteria").inner_text()
    assert "HC-18" in criteria and "met" in criteria
    provenance = await page.locator("#provenance").inner_text()
    assert "https://ci.example.org/runner" in provenance  # SLSA builder
    assert "4f1c2d9e8b7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d" in provenance  # source commit
    vulns = await page.locator("#vulnerabilities").inner_text()
    assert CVE_OPEN in vulns and "no statement" in vulns
    assert CVE_VEX in vulns and "not affected" in vulns
    sbom = page.locator("#sbom-table tbody tr")
    await page.get_by_label("Filter packages").fill("openssl")
    assert await sbom.filter(visible=True).count() == 1
    await page.get_by_label("Filter packages").fill("")
    await shot(page, "image")

    # Verify Zoll's VSA in this browser: it must pass, and say what it checked.
    card = page.locator("li.card", has_text="verification_summary")
    await card.get_by_role("button", name="Verify in this browser").click()
    result = card.locator(".verify-result")
    await page.wait_for_function(
        "el => el.dataset.result !== undefined", arg=await result.element_handle()
    )
    text = await result.inner_text()
    assert await result.get_attribute("data-result") == "pass", text
    for checked in (
        "DSSE signature over PAE(application/vnd.in-toto+json, payload) verifies",
        "ECDSA P-256",
        "names this image",
        "inclusion proof",
        "the checkpoint's root",
        "is signed by log key",
    ):
        assert checked in text, (checked, text)
    await card.scroll_into_view_if_needed()
    await shot(page, "verify-pass", full_page=False)

    # Tamper with what the server sends (one character of the statement): it must fail.
    async def tamper(route: Route) -> None:
        response = await route.fetch()
        body = await response.json()
        for att in body["attestations"]:
            payload = json.loads(base64.b64decode(att["envelope"]["payload"]))
            payload["predicate"]["verificationResult"] = "PASSED "
            att["envelope"]["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
        await route.fulfill(response=response, json=body)

    await page.route("**/attestations.json", tamper)
    await card.get_by_role("button", name="Verify in this browser").click()
    await page.wait_for_function(
        "el => el.dataset.result === 'fail'", arg=await result.element_handle()
    )
    text = await result.inner_text()
    assert "Verification FAILED" in text and "does NOT verify" in text, text
    await shot(page, "verify-fail", full_page=False)
    await page.unroute("**/attestations.json")

    # Log out: the image page asks for a login again.
    await page.get_by_role("button", name="Log out").click()
    await page.wait_for_url(f"{w.url}/ui/")
    assert await page.get_by_role("link", name="Log in").count() == 1
    await page.goto(f"{w.url}/ui/r/opendesk/app@{w.app}")
    assert "/ui/login?next=" in page.url


async def test_a_quarantined_image_says_why_with_evidence(world: World, page: Page) -> None:
    await log_in(page, world)
    await page.goto(f"{world.url}/ui/r/opendesk/rootapp@{world.rootapp}")
    reasons = await page.locator("ul.reasons").inner_text()
    assert "HC-18" in reasons
    assert "found:" in reasons and "0" in reasons  # the user the image runs as
    await shot(page, "image-quarantined", full_page=False)


async def test_anonymous_sees_only_public_namespaces(world: World, page: Page) -> None:
    await page.goto(f"{world.url}/ui/")
    links = await page.locator("ul.cards a").all_inner_texts()
    assert links == ["public"]
    await shot(page, "catalogue-anonymous")
    await page.goto(f"{world.url}/ui/search?q=openssl")
    found = await page.locator("table tbody").inner_text()
    assert "public/tool" in found and "opendesk" not in found
    response = await page.goto(f"{world.url}/ui/n/opendesk")
    assert response is not None and response.status == 404
    response = await page.goto(f"{world.url}/badges/opendesk/app/1.0.0/admission.svg")
    assert response is not None and response.status == 404


async def test_badge_renders_and_follows_the_verdict(world: World, page: Page) -> None:
    await log_in(page, world)
    badge = f"{world.url}/badges/opendesk/later/1.0.0/admission.svg"
    await page.goto(f"{world.url}/ui/r/opendesk/later@{world.later}")
    image = page.locator("img[alt='admission badge']")
    first_src = await image.get_attribute("src")  # carries the verdict's time: never stale
    await page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=await image.element_handle()
    )
    async with aiohttp.ClientSession() as http:
        headers = world.people.header("alice")
        async with http.get(badge, headers=headers) as r:
            before, etag = await r.text(), r.headers["ETag"]
        assert "admission: quarantined" in before
        await _sign(
            world.live,
            "opendesk/later",
            world.later,
            world.supplier,
            ("alice", world.people.passwords["alice"]),
        )
        await drain(PipelineRunner(world.live.services))
        async with http.get(badge, headers={**headers, "If-None-Match": etag}) as r:
            assert r.status == 200, "the verdict changed: the old ETag must not match"
            after = await r.text()
        assert "admission: admitted" in after
        async with http.get(badge.replace(".svg", ".json"), headers=headers) as r:
            assert (await r.json())["message"] == "admitted"
    await page.reload()  # the page as it is now (same URL: goto would only scroll)
    badges = page.locator("p.badges img")
    for n in range(await badges.count()):
        await page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=await badges.nth(n).element_handle()
        )
    assert await page.locator("img[alt='admission badge']").get_attribute("src") != first_src
    await shot_of(page, "#badges", "badge")


async def test_log_mirror_audit_and_people_pages(world: World, page: Page) -> None:
    await log_in(page, world)
    await page.goto(f"{world.url}/ui/log")
    assert "Latest checkpoint" in await page.locator("main").inner_text()
    assert await page.locator("table tbody tr").count() > 5
    await shot(page, "log")
    await page.goto(f"{world.url}/ui/mirror")
    section = page.locator("section[data-set='public-tools']")
    await page.wait_for_function(
        "el => el.textContent.includes('finished')",
        arg=await section.locator("[data-field=live]").element_handle(),
    )
    text = await section.inner_text()
    assert "public/mirrored-tool" in text
    assert "no-such-layout" in text  # the broken entry's error
    await shot(page, "mirror")
    await page.goto(f"{world.url}/ui/audit")
    assert "manifest.push" in await page.locator("table").inner_text()
    await shot(page, "audit", full_page=False)
    await page.goto(f"{world.url}/ui/people")
    assert "alice" in await page.locator("main").inner_text()
    await shot(page, "people")


async def test_phone_width_and_keyboard(world: World, browser: Browser) -> None:
    context = await browser.new_context(viewport=PHONE, is_mobile=True)
    try:
        phone = await context.new_page()
        await phone.goto(f"{world.url}/ui/login")
        # Keyboard only: the skip link first, then the form.
        await phone.keyboard.press("Tab")
        assert await phone.evaluate("document.activeElement.textContent") == "Skip to content"
        await phone.get_by_label("User name").focus()
        await phone.keyboard.type("alice")
        await phone.keyboard.press("Tab")
        await phone.keyboard.type(world.people.passwords["alice"])
        await phone.keyboard.press("Enter")
        await phone.wait_for_url(f"{world.url}/ui/")
        await phone.goto(f"{world.url}/ui/r/opendesk/app@{world.app}")
        width = await phone.evaluate("document.documentElement.scrollWidth")
        wide = await phone.evaluate(WIDER_THAN_SCREEN)
        assert width <= PHONE["width"], f"the page must not scroll sideways on a phone: {wide}"
        await shot(phone, "image-phone", full_page=False)
    finally:
        await context.close()


def _ed25519_case(digest: Digest) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """An attestation, its inclusion proof and a checkpoint, all signed with an Ed25519
    key (the verifier must handle both of Zoll's key types), built with independent code."""
    key = PrivateKey.generate("ed25519")
    origin = "ed25519.example/log"
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "opendesk/app", "digest": {"sha256": digest.encoded}}],
        "predicateType": "https://slsa.dev/verification_summary/v1",
        "predicate": {"verificationResult": "PASSED"},
    }
    envelope = sign_statement(statement, key)
    leaves = [naive_merkle.leaf(bytes([i])) for i in range(6)]
    leaves[3] = attestation_record(envelope).leaf_hash()
    signed = sign_checkpoint(Checkpoint(origin, len(leaves), naive_merkle.mth(leaves)), key)
    attestation = {
        "id": 1,
        "log_index": 3,
        "envelope": envelope.to_json(),
        "inclusion_proof": {
            "logIndex": 3,
            "treeSize": len(leaves),
            "hashes": [base64.b64encode(h).decode() for h in naive_merkle.path(3, leaves)],
        },
    }
    keys = {
        "keys": [
            {
                "keyid": key.public.keyid,
                "algorithm": "ed25519",
                "publicKey": key.public.pem(),
                "status": "active",
                "logVerifierKey": NoteVerifier.for_key(origin, key.public).vkey(),
            }
        ]
    }
    return attestation, signed.to_text(), keys


async def test_ed25519_keys_verify_in_the_browser(world: World, page: Page) -> None:
    await page.goto(f"{world.url}/ui/login")  # any page of the site: WebCrypto needs its origin
    await page.add_script_tag(url=f"{world.url}/ui/static/verify.js")
    attestation, checkpoint, keys = _ed25519_case(world.app)
    verify = "([a, c, k, d]) => window.zollVerify.verifyAttestation(a, c, k, d)"
    result = await page.evaluate(verify, [attestation, checkpoint, keys, str(world.app)])
    steps = "\n".join(s["text"] for s in result["steps"])
    assert result["ok"], steps
    assert "with Ed25519 key" in steps and "(Ed25519)" in steps

    # A checkpoint whose text was changed after signing (another size) is refused.
    forged = checkpoint.replace("\n6\n", "\n7\n", 1)
    result = await page.evaluate(verify, [attestation, forged, keys, str(world.app)])
    assert not result["ok"]
    # … and so is an attestation about another image.
    other = Digest.parse("sha256:" + "ab" * 32)
    result = await page.evaluate(verify, [attestation, checkpoint, keys, str(other)])
    assert not result["ok"]
    assert "it does NOT" in result["steps"][-1]["text"]
