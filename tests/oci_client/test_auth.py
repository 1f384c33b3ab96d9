"""Authentication against docker-registry: htpasswd Basic, and token auth where
distribution verifies every JWT our issuer signs (x5c chain and libtrust kid)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from registry.oci import mediatypes as mt
from registry.oci.client import (
    AuthenticationError,
    Credentials,
    CredentialStore,
    RegistryClient,
    RegistryConfig,
    TokenError,
)
from registry.oci.digest import Digest
from tests.oci_client.conftest import FAST_RETRY, Images, layout_digest
from tests.oci_client.upstream import (
    Distribution,
    TokenIssuer,
    htpasswd_line,
    running_distribution,
)
from tests.support.tools import skopeo


def client_for(host: str, creds: Credentials | None = None, **config: bool) -> RegistryClient:
    return RegistryClient([RegistryConfig(host, creds, insecure=True, **config)], retry=FAST_RETRY)


@pytest.fixture(scope="module")
async def basic(
    tmp_path_factory: pytest.TempPathFactory, images: Images
) -> AsyncIterator[Distribution]:
    work = tmp_path_factory.mktemp("basic")
    (work / "htpasswd").write_text(htpasswd_line("alice", "s3cret") + "\n")
    auth = {"htpasswd": {"realm": "zoll-basic", "path": str(work / "htpasswd")}}
    async with running_distribution(work, auth) as registry:
        await skopeo(
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:s3cret",
            f"oci:{images.app_layout}:v1",
            f"docker://{registry.host}/team/app:v1",
        )
        yield registry


async def test_basic_auth_with_credentials(basic: Distribution, images: Images) -> None:
    async with client_for(basic.host, Credentials("alice", "s3cret")) as client:
        repo = client.repository(basic.host, "team/app")
        assert (await repo.resolve("v1")).digest == layout_digest(images.app_layout)
        assert "v1" in await repo.tags()
        blob = b"pushed with basic auth"
        pushed = await repo.push_blob(blob, Digest.of(blob), len(blob))
        assert pushed.how == "uploaded"
        assert await repo.read_blob(Digest.of(blob), 100) == blob


async def test_basic_auth_refuses_missing_or_wrong_credentials(basic: Distribution) -> None:
    async with client_for(basic.host) as anonymous:
        with pytest.raises(AuthenticationError) as err:
            await anonymous.repository(basic.host, "team/app").resolve("v1")
        assert err.value.status == 401 and "authentication required (basic)" in str(err.value)
        with pytest.raises(AuthenticationError) as err:
            await anonymous.repository(basic.host, "team/app").get_manifest("v1")
        assert "UNAUTHORIZED" in err.value.codes
    async with client_for(basic.host, Credentials("alice", "wrong")) as wrong:
        with pytest.raises(AuthenticationError):
            await wrong.repository(basic.host, "team/app").get_manifest("v1")


async def test_auth_json_credentials(basic: Distribution, tmp_path: Path) -> None:
    """The file `podman login` writes: base64 `user:password` under the host key."""
    auth_file = tmp_path / "auth.json"
    encoded = base64.b64encode(b"alice:s3cret").decode()
    auth_file.write_text(json.dumps({"auths": {f"http://{basic.host}": {"auth": encoded}}}))
    store = CredentialStore.from_files([tmp_path / "missing.json", auth_file])
    async with RegistryClient(
        [RegistryConfig(basic.host, insecure=True)], credentials=store, retry=FAST_RETRY
    ) as client:
        assert "v1" in await client.repository(basic.host, "team/app").tags()


@dataclass
class TokenSetup:
    registry: Distribution
    issuer: TokenIssuer


@pytest.fixture(scope="module", params=["x5c", "kid"])
async def token(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, images: Images
) -> AsyncIterator[TokenSetup]:
    work = tmp_path_factory.mktemp(f"token-{request.param}")
    issuer = TokenIssuer(
        work,
        users={"bob": "pw", "reader": "pw"},
        readers={"reader"},
        refresh_tokens={"refresh-123": "bob"},
        signing=request.param,
    )
    async with issuer.serving(), running_distribution(work, issuer.registry_auth()) as registry:
        for name in ("public/app", "private/app"):
            await skopeo(
                "copy",
                "--dest-tls-verify=false",
                "--dest-creds",
                "bob:pw",
                f"oci:{images.app_layout}:v1",
                f"docker://{registry.host}/{name}:v1",
            )
        yield TokenSetup(registry, issuer)


async def test_anonymous_token_for_public_pull(token: TokenSetup, images: Images) -> None:
    host = token.registry.host
    before = len(token.issuer.requests)
    async with client_for(host) as client:
        repo = client.repository(host, "public/app")
        fetched = await repo.get_manifest("v1")
        assert fetched.digest == layout_digest(images.app_layout)
        manifest = json.loads(fetched.raw)
        await repo.read_blob(Digest.parse(manifest["config"]["digest"]), 1 << 20)
        assert client.token_fetches == 1  # one token served the manifest and the blob
        with pytest.raises(AuthenticationError) as denied:
            await client.repository(host, "private/app").get_manifest("v1")
        assert denied.value.status == 401
    grants = [r.grant for r in token.issuer.requests[before:]]
    assert grants[0] == "anonymous"


async def test_password_via_get_and_cached_per_scope(token: TokenSetup) -> None:
    host = token.registry.host
    before = len(token.issuer.requests)
    async with client_for(host, Credentials("bob", "pw")) as client:
        repo = client.repository(host, "private/app")
        for _ in range(3):
            await repo.resolve("v1")
            await repo.tags()
        assert client.token_fetches == 1
        blob = b"a blob bob pushes"
        await repo.push_blob(blob, Digest.of(blob), len(blob))
        assert client.token_fetches == 2  # pull,push is a new scope set
        await repo.resolve("v1")
        assert client.token_fetches == 2  # the pull,push token covers pulls
    seen = token.issuer.requests[before:]
    assert {(r.method, r.grant, r.account) for r in seen} == {("GET", "basic", "bob")}
    assert seen[0].scopes == ["repository:private/app:pull"]
    assert seen[1].scopes == ["repository:private/app:pull,push"]


async def test_refresh_token_and_password_grant_use_oauth2_post(token: TokenSetup) -> None:
    host = token.registry.host
    before = len(token.issuer.requests)
    async with client_for(host, Credentials(identity_token="refresh-123")) as client:
        assert "v1" in await client.repository(host, "private/app").tags()
    async with client_for(host, Credentials("bob", "pw"), password_grant=True) as client:
        assert "v1" in await client.repository(host, "private/app").tags()
    grants = [(r.method, r.grant, r.account) for r in token.issuer.requests[before:]]
    assert grants == [("POST", "refresh_token", "bob"), ("POST", "password", "bob")]
    async with client_for(host, Credentials(identity_token="revoked")) as client:
        with pytest.raises(TokenError) as refused:
            await client.repository(host, "private/app").tags()
        assert refused.value.status == 401


async def test_password_grant_falls_back_to_get(token: TokenSetup) -> None:
    host = token.registry.host
    token.issuer.post_supported = False
    try:
        before = len(token.issuer.requests)
        async with client_for(host, Credentials("bob", "pw"), password_grant=True) as client:
            assert "v1" in await client.repository(host, "private/app").tags()
        assert [(r.method, r.grant) for r in token.issuer.requests[before:]] == [("GET", "basic")]
    finally:
        token.issuer.post_supported = True


async def test_insufficient_scope_and_wrong_password(token: TokenSetup) -> None:
    host = token.registry.host
    async with client_for(host, Credentials("reader", "pw")) as client:
        repo = client.repository(host, "private/app")
        assert "v1" in await repo.tags()
        blob = b"readers cannot push"
        with pytest.raises(AuthenticationError) as denied:
            await repo.push_blob(blob, Digest.of(blob), len(blob))
        assert "insufficient_scope" in str(denied.value)
    async with client_for(host, Credentials("bob", "nope")) as client:
        with pytest.raises(TokenError, match="refused the credentials"):
            await client.repository(host, "private/app").tags()


async def test_cross_repository_mount_asks_for_both_scopes(token: TokenSetup) -> None:
    host = token.registry.host
    async with client_for(host, Credentials("bob", "pw")) as client:
        source = client.repository(host, "private/app")
        manifest = json.loads((await source.get_manifest("v1")).raw)
        layer = manifest["layers"][0]
        target = client.repository(host, "private/copy")
        before = len(token.issuer.requests)
        pushed = await target.push_blob(
            b"unused: the mount must succeed",
            Digest.parse(layer["digest"]),
            layer["size"],
            mount_from=["private/app"],
        )
        assert pushed.how == "mounted"
        assert await target.stat_blob(Digest.parse(layer["digest"])) == layer["size"]
        scopes = [s for r in token.issuer.requests[before:] for s in r.scopes]
        assert "repository:private/app:pull" in scopes
        assert "repository:private/copy:pull,push" in scopes


async def test_tokens_are_refreshed_when_they_expire(token: TokenSetup) -> None:
    host = token.registry.host
    token.issuer.expires_in = 2
    try:
        async with client_for(host, Credentials("bob", "pw")) as client:
            repo = client.repository(host, "private/app")
            await repo.tags()
            await repo.tags()
            assert client.token_fetches == 1
            await asyncio.sleep(2.1)
            await repo.tags()
            assert client.token_fetches == 2
    finally:
        token.issuer.expires_in = 300


async def test_manifest_push_with_token(token: TokenSetup) -> None:
    host = token.registry.host
    async with client_for(host, Credentials("bob", "pw")) as client:
        repo = client.repository(host, "private/app")
        fetched = await repo.get_manifest("v1")
        digest = await repo.put_manifest(fetched.raw, fetched.media_type, "v2")
        assert digest == fetched.digest
        assert (await repo.resolve("v2")).digest == digest
        assert fetched.media_type == mt.OCI_MANIFEST
