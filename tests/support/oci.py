"""Raw OCI Distribution API calls for protocol tests (what a client library would do)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from registry.oci import mediatypes as mt


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Image:
    """A small synthetic image: a config, some layers, and its manifest."""

    config: bytes
    layers: list[bytes]
    media_type: str = mt.OCI_MANIFEST
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def random(
        cls, layers: int = 2, size: int = 2048, media_type: str = mt.OCI_MANIFEST, **extra: Any
    ) -> Image:
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers"},
                "nonce": os.urandom(8).hex(),
            }
        ).encode()
        return cls(config, [os.urandom(size) for _ in range(layers)], media_type, extra)

    def manifest(self) -> bytes:
        docker = self.media_type == mt.DOCKER_MANIFEST
        body: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "config": {
                "mediaType": mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG,
                "digest": sha256(self.config),
                "size": len(self.config),
            },
            "layers": [
                {
                    "mediaType": mt.DOCKER_LAYER_GZIP if docker else mt.OCI_LAYER_GZIP,
                    "digest": sha256(layer),
                    "size": len(layer),
                }
                for layer in self.layers
            ],
            **self.extra,
        }
        return json.dumps(body).encode()

    @property
    def digest(self) -> str:
        return sha256(self.manifest())

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.manifest())}


async def push_blob(http: aiohttp.ClientSession, base: str, name: str, data: bytes) -> str:
    digest = sha256(data)
    async with http.post(f"{base}/v2/{name}/blobs/uploads/?digest={digest}", data=data) as r:
        assert r.status == 201, await r.text()
        assert r.headers["Docker-Content-Digest"] == digest
    return digest


async def push_manifest(
    http: aiohttp.ClientSession, base: str, name: str, ref: str, body: bytes, media_type: str
) -> aiohttp.ClientResponse:
    async with http.put(
        f"{base}/v2/{name}/manifests/{ref}", data=body, headers={"Content-Type": media_type}
    ) as r:
        await r.read()
        return r


async def push_image(
    http: aiohttp.ClientSession, base: str, name: str, image: Image, tag: str
) -> str:
    for blob in (image.config, *image.layers):
        await push_blob(http, base, name, blob)
    r = await push_manifest(http, base, name, tag, image.manifest(), image.media_type)
    assert r.status == 201, r.status
    return image.digest


async def error_codes(resp: aiohttp.ClientResponse) -> list[str]:
    body = await resp.json(content_type=None)
    return [e["code"] for e in body["errors"]]
