"""Real upstreams for the client tests: CNCF distribution 2.8 (Debian `docker-registry`)
anonymous, behind htpasswd Basic auth, or behind token auth with a token issuer run here.

The issuer signs JWTs the way distribution 2.8 verifies them (registry/auth/token):
ES256, `iss`/`aud` (a string)/`exp`/`nbf`, `access` entries, and the signing key named
either by an `x5c` chain up to the `rootcertbundle` or by `kid`, the libtrust fingerprint
of a key whose certificate is in the bundle. Distribution checks every token itself.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import json
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from registry.embedded.ports import free_port

SERVICE = "zoll-upstream-test"
ISSUER = "zoll-test-issuer"


@dataclass
class Distribution:
    host: str
    url: str
    proc: subprocess.Popen[bytes]
    root: Path


def htpasswd_line(user: str, password: str) -> str:
    """A bcrypt htpasswd entry made by Debian's `htpasswd` (apache2-utils)."""
    out = subprocess.run(
        ["htpasswd", "-Bbn", user, password], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


async def _wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited with {proc.returncode}")
            try:
                async with http.get(f"{url}/v2/") as resp:
                    if resp.status in (200, 401):
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"docker-registry at {url} did not come up")


@asynccontextmanager
async def running_distribution(
    work: Path, auth: dict[str, Any] | None = None
) -> AsyncIterator[Distribution]:
    """docker-registry on a free loopback port with filesystem storage under `work`."""
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(work / "data")},
            "delete": {"enabled": True},
        },
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    if auth:
        config["auth"] = auth
    path = work / "config.yml"
    path.write_text(json.dumps(config))
    log = (work / "registry.log").open("wb")
    proc = subprocess.Popen(["docker-registry", "serve", str(path)], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_up(url, proc)
        yield Distribution(f"127.0.0.1:{port}", url, proc, work)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def libtrust_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The libtrust fingerprint distribution 2.8 uses as `kid`: SHA-256 of the DER
    SubjectPublicKeyInfo, first 240 bits, base32, in groups of four joined by ':'."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    ca: bool,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class TokenRequest:
    method: str
    grant: str
    account: str | None
    scopes: list[str]


@dataclass
class TokenIssuer:
    """A token server: users with passwords, refresh tokens, anonymous pull on `public/`.

    `readers` may only pull. `post_supported=False` answers the OAuth2 POST with 404, as
    token servers without it do. Every request is recorded in `requests`.
    """

    work: Path
    users: dict[str, str] = field(default_factory=dict)
    readers: set[str] = field(default_factory=set)
    refresh_tokens: dict[str, str] = field(default_factory=dict)
    signing: str = "x5c"
    expires_in: int = 300
    post_supported: bool = True
    requests: list[TokenRequest] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca_cert = _certificate("zoll test token CA", self.ca_key, None, self.ca_key, True)
        self.leaf_key = ec.generate_private_key(ec.SECP256R1())
        self.leaf_cert = _certificate(
            "zoll test token signer", self.leaf_key, self.ca_cert, self.ca_key, False
        )
        self.bundle = self.work / "token-bundle.pem"
        self.bundle.write_bytes(self.ca_cert.public_bytes(serialization.Encoding.PEM))

    @property
    def realm(self) -> str:
        return f"{self.url}/token"

    def registry_auth(self) -> dict[str, Any]:
        return {
            "token": {
                "realm": self.realm,
                "service": SERVICE,
                "issuer": ISSUER,
                "rootcertbundle": str(self.bundle),
            }
        }

    def _grant(self, account: str | None, scope: str) -> dict[str, Any] | None:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        wanted = [a for a in actions.split(",") if a]
        if account is None:
            allowed = [a for a in wanted if a == "pull"] if name.startswith("public/") else []
        elif account in self.readers:
            allowed = [a for a in wanted if a == "pull"]
        else:
            allowed = wanted
        return {"type": kind, "name": name, "actions": allowed} if allowed else None

    def issue(self, account: str | None, scopes: list[str]) -> dict[str, Any]:
        now = int(time.time())
        access = [g for g in (self._grant(account, s) for s in scopes) if g]
        claims = {
            "iss": ISSUER,
            "sub": account or "",
            "aud": SERVICE,
            "exp": now + self.expires_in,
            "nbf": now - 5,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        if self.signing == "x5c":
            der = self.leaf_cert.public_bytes(serialization.Encoding.DER)
            headers: dict[str, Any] = {"x5c": [base64.b64encode(der).decode()]}
            key = self.leaf_key
        else:
            headers = {"kid": libtrust_key_id(self.ca_key.public_key())}
            key = self.ca_key
        token = jwt.encode(claims, key, algorithm="ES256", headers=headers)
        return {
            "token": token,
            "access_token": token,
            "expires_in": self.expires_in,
            "issued_at": datetime.datetime.fromtimestamp(now, datetime.UTC).isoformat(),
        }

    async def _get(self, request: web.Request) -> web.Response:
        account: str | None = None
        header = request.headers.get("Authorization")
        if header:
            try:
                auth = aiohttp.BasicAuth.decode(header)
            except ValueError:
                return web.Response(status=400)
            if self.users.get(auth.login) != auth.password:
                return web.json_response({"details": "bad credentials"}, status=401)
            account = auth.login
        scopes = request.query.getall("scope", [])
        self.requests.append(
            TokenRequest("GET", "basic" if account else "anonymous", account, scopes)
        )
        return web.json_response(self.issue(account, scopes))

    async def _post(self, request: web.Request) -> web.Response:
        if not self.post_supported:
            return web.Response(status=404)
        form = await request.post()
        grant = str(form.get("grant_type", ""))
        scopes = str(form.get("scope", "")).split()
        if grant == "password":
            account = str(form.get("username", ""))
            if self.users.get(account) != form.get("password"):
                return web.json_response({"error": "invalid_grant"}, status=401)
        elif grant == "refresh_token":
            found = self.refresh_tokens.get(str(form.get("refresh_token", "")))
            if found is None:
                return web.json_response({"error": "invalid_grant"}, status=401)
            account = found
        else:
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        self.requests.append(TokenRequest("POST", grant, account, scopes))
        return web.json_response(self.issue(account, scopes))

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[TokenIssuer]:
        app = web.Application()
        app.router.add_get("/token", self._get)
        app.router.add_post("/token", self._post)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        try:
            yield self
        finally:
            await runner.cleanup()
