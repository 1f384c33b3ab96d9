"""What an `attester` may push: attestation material about an image, nothing else.

Build systems sign and attest what they built; the principal doing it should not be
able to move an image tag or push an image. A manifest is attestation material when it
is not runnable (`registry.pipeline.classify.runnable`) and is attached to an image:
through its `subject` (OCI 1.1 referrers), or through cosign's tags `sha256-<hex>.sig`,
`.att`, `.sbom` (and the referrers tag scheme's `sha256-<hex>`) naming a manifest of the
repository. Every tag it is pushed under must be such a tag. Blobs need only `attest`.
"""

from __future__ import annotations

import re
from typing import Final

import asyncpg

from registry.db import manifests as manifest_rows
from registry.oci.digest import Digest, DigestError
from registry.oci.manifest import Manifest
from registry.pipeline.classify import runnable

ATTACHED_TAG: Final = re.compile(
    r"^(sha256|sha512)-([0-9a-f]{64}|[0-9a-f]{128})(\.sig|\.att|\.sbom)?$"
)


async def attestation_problem(
    pool: asyncpg.Pool, repository: str, manifest: Manifest, tags: list[str]
) -> str | None:
    """None when `manifest` pushed under `tags` is attestation material, else why not."""
    if runnable(manifest):
        return "it is a runnable image, not a signature, attestation or SBOM"
    for tag in tags:
        m = ATTACHED_TAG.match(tag)
        if m is None:
            return f"tag {tag!r} is not a sha256-<digest>.sig/.att/.sbom tag"
        try:
            named = Digest.parse(f"{m.group(1)}:{m.group(2)}")
        except DigestError:
            return f"tag {tag!r} names no valid digest"
        if await manifest_rows.image(pool, repository, named) is None:
            return f"tag {tag!r} names {named}, which is not in {repository}"
    if not tags and manifest.subject is None:
        return "it has no subject and no .sig/.att/.sbom tag, so it is attached to no image"
    return None
