"""What can be checked without a registry: Docker Hub names, challenges, Retry-After,
auth files, token responses, scopes."""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from registry.oci.client import (
    AuthFileError,
    Credentials,
    CredentialStore,
    RegistryClient,
    RegistryConfig,
    RetryPolicy,
    TokenError,
    UnknownHost,
    api_host,
    default_auth_files,
    parse_challenges,
    parse_retry_after,
)
from registry.oci.client.auth import parse_token_response
from registry.oci.client.challenge import preferred
from registry.oci.client.scopes import Scope, covers, merge
from registry.oci.client.transport import Directory
from registry.oci.reference import Reference


@pytest.mark.parametrize(
    ("text", "host", "name", "ref"),
    [
        ("nginx", "registry-1.docker.io", "library/nginx", "latest"),
        ("docker.io/nginx:1.27", "registry-1.docker.io", "library/nginx", "1.27"),
        ("index.docker.io/bitnami/os-shell:12", "registry-1.docker.io", "bitnami/os-shell", "12"),
        ("clamav/clamav:1.5.2_base", "registry-1.docker.io", "clamav/clamav", "1.5.2_base"),
        (
            "registry.opencode.de/bmi/opendesk/components/x:1.0",
            "registry.opencode.de",
            "bmi/opendesk/components/x",
            "1.0",
        ),
        ("localhost:5000/app", "localhost:5000", "app", "latest"),
        (
            "ghcr.io/nordeck/jitsi@sha256:" + "a" * 64,
            "ghcr.io",
            "nordeck/jitsi",
            "sha256:" + "a" * 64,
        ),
    ],
)
def test_reference_normalisation(text: str, host: str, name: str, ref: str) -> None:
    client = RegistryClient()
    repo, reference = client.for_reference(text)
    assert (repo.registry, repo.name, reference) == (host, name, ref)


def test_docker_hub_aliases_share_config_and_credentials() -> None:
    hub = Credentials("user", "pw")
    directory = Directory([RegistryConfig("docker.io", hub)])
    for alias in ("docker.io", "registry-1.docker.io", "index.docker.io"):
        assert directory.credentials(alias, "library/nginx") is hub
        assert directory.config(alias).host == "registry-1.docker.io"
    assert api_host("Docker.IO") == "registry-1.docker.io"
    assert str(Reference.parse("nginx")) == "docker.io/library/nginx:latest"


def test_docker_hub_challenge() -> None:
    header = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/nginx:pull"'
    )
    (challenge,) = parse_challenges(header)
    assert challenge.scheme == "bearer"
    assert challenge.realm == "https://auth.docker.io/token"
    assert challenge.service == "registry.docker.io"
    assert challenge.scopes == ("repository:library/nginx:pull",)


def test_challenge_edge_cases() -> None:
    # Quoted commas and spaces (two scopes, one with two actions) stay in one value.
    (one,) = parse_challenges(
        'Bearer realm="https://r/t?a=1,b=2",scope="repository:a:pull,push repository:b:pull"'
    )
    assert one.realm == "https://r/t?a=1,b=2"
    assert one.scopes == ("repository:a:pull,push", "repository:b:pull")
    # Several challenges in one header, BWS around '=', escapes, case-insensitive names.
    many = parse_challenges(
        'Basic realm="x, y", BEARER Realm = y , service="s\\"q",error=insufficient_scope'
    )
    assert [c.scheme for c in many] == ["basic", "bearer"]
    assert many[0].realm == "x, y"
    assert many[1].realm == "y" and many[1].service == 's"q'
    assert many[1].error == "insufficient_scope"
    # Several header lines, a token68 challenge, and a bare scheme.
    lines = parse_challenges(["Negotiate abc==, Basic realm=r", "Bearer"])
    assert [(c.scheme, c.token68) for c in lines] == [
        ("negotiate", "abc=="),
        ("basic", None),
        ("bearer", None),
    ]
    assert preferred(lines) is lines[2]  # Bearer wins over Basic
    assert parse_challenges("") == [] and parse_challenges(",,") == []
    # A broken quoted string keeps what came before it.
    assert [c.scheme for c in parse_challenges('Basic realm="a", Bearer realm="open')] == [
        "basic",
        "bearer",
    ]


def test_retry_after_forms() -> None:
    now = datetime(1994, 11, 6, 8, 49, 30, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now) == 7  # IMF-fixdate
    assert parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now) == 7  # RFC 850
    assert parse_retry_after("Sun Nov  6 08:49:37 1994", now) == 7  # asctime
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now) == 0  # in the past
    for bad in (None, "", "soon", "-5", "1.5"):
        assert parse_retry_after(bad, now) is None


def test_backoff_is_exponential_jittered_and_bounded() -> None:
    policy = RetryPolicy(base_delay=1, max_delay=8)
    rng = random.Random(7)
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (4, 8), (9, 8)]:
        waits = [policy.backoff(attempt, rng) for _ in range(200)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert len({round(w, 6) for w in waits}) > 100  # jittered, not lockstep
    assert policy.delay(1, 5.0, rng) == 5.0  # Retry-After wins when longer


def test_auth_file_formats(tmp_path: Path) -> None:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    path = tmp_path / "auth.json"
    path.write_text(
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": b64("hubuser:hubpw")},
                    "registry.opencode.de": {"auth": b64("od:pw:with:colons")},
                    "registry.opencode.de/bmi/opendesk": {"auth": b64("team:pw")},
                    "ghcr.io": {"auth": b64("ignored:"), "identitytoken": "refresh"},
                    "quay.io": {},
                }
            }
        )
    )
    store = CredentialStore.from_auth_file(path)
    hub = store.find("registry-1.docker.io", "library/nginx")
    assert hub is not None and (hub.username, hub.password) == ("hubuser", "hubpw")
    generic = store.find("registry.opencode.de", "other/x")
    assert generic is not None and generic.password == "pw:with:colons"
    scoped = store.find("registry.opencode.de", "bmi/opendesk/components/x")
    assert scoped is not None and scoped.username == "team"
    ghcr = store.find("ghcr.io", "org/app")
    assert ghcr is not None and ghcr.identity_token == "refresh" and ghcr.password is None
    assert store.find("quay.io") is None and store.find("example.org") is None
    assert "hubpw" not in repr(hub)

    path.write_text(json.dumps({"auths": {"h": {"auth": "%%%"}}}))
    with pytest.raises(AuthFileError, match="not base64"):
        CredentialStore.from_auth_file(path)
    path.write_text("{")
    with pytest.raises(AuthFileError, match="cannot read"):
        CredentialStore.from_auth_file(path)


def test_default_auth_file_order() -> None:
    env = {"REGISTRY_AUTH_FILE": "/a.json", "XDG_RUNTIME_DIR": "/run/u", "HOME": "/h"}
    assert default_auth_files(env) == [
        Path("/a.json"),
        Path("/run/u/containers/auth.json"),
        Path("/h/.config/containers/auth.json"),
        Path("/h/.docker/config.json"),
    ]


def test_token_responses() -> None:
    hub = parse_token_response(
        b'{"token":"t","access_token":"t","expires_in":300,"issued_at":"2024-01-01T00:00:00Z"}',
        "r",
    )
    assert (hub.token, hub.expires_in) == ("t", 300)
    oauth = parse_token_response(b'{"access_token":"a","refresh_token":"n"}', "r")
    assert (oauth.token, oauth.expires_in, oauth.refresh_token) == ("a", 60, "n")
    for bad in (b"[]", b"{}", b"not json", b'{"token":""}'):
        with pytest.raises(TokenError):
            parse_token_response(bad, "r")


def test_scopes() -> None:
    parsed = Scope.parse("repository:host:5000/app:push,pull")
    assert parsed == Scope("repository", "host:5000/app", ("pull", "push"))
    assert Scope.parse("nonsense") is None
    merged = merge([Scope.parse("repository:a:pull"), Scope.parse("repository:a:push")])  # type: ignore[list-item]
    assert [str(s) for s in merged] == ["repository:a:pull,push"]
    assert covers(merged, [Scope("repository", "a", ("pull",))])
    assert not covers(merged, [Scope("repository", "b", ("pull",))])


async def test_a_host_that_does_not_exist_fails_at_once() -> None:
    """`.invalid` never resolves (RFC 6761): no backoff for a name that is not there."""
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    async with RegistryClient([RegistryConfig("upstream.invalid")]) as client:
        client.transport.sleep = sleep
        repo, ref = client.for_reference("upstream.invalid/team/app:1.0")
        with pytest.raises(UnknownHost) as raised:
            await repo.resolve(ref)
    assert raised.value.attempts == 1 and slept == []
    assert "unknown host upstream.invalid" in str(raised.value)
