"""Per-principal storage quotas per namespace (`quotas:` in the configuration).

A user's or robot's usage in a namespace is the size of every blob it pushed into a
repository under the rule's prefix and that is still linked there (a blob pushed into
two repositories counts twice; one GC removed counts no more). Uploads are checked when
they start and while their bytes arrive, so an upload over the quota is refused before
it is stored, not after. Concurrent uploads of one principal can overshoot by what they
carry at once. Mounts and the service's own uploads (mirrors, the pipeline) count for
nobody.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from registry.config import Config
from registry.oci.errors import ErrorCode, RegistryError


@dataclass(frozen=True, slots=True)
class Allowance:
    """What `principal` may still push under `prefix`."""

    principal: str
    prefix: str
    limit: int
    used: int

    @property
    def remaining(self) -> int:
        return max(self.limit - self.used, 0)

    def exceeded(self, adding: int) -> RegistryError:
        where = f"namespace {self.prefix!r}" if self.prefix else "this registry"
        return RegistryError(
            ErrorCode.DENIED,
            f"storage quota exceeded: {self.principal!r} may push {self.limit} bytes into "
            f"{where} and has pushed {self.used}; this upload adds {adding}",
            detail={"quota": self.limit, "used": self.used, "namespace": self.prefix},
        )


async def allowance(
    pool: asyncpg.Pool, config: Config, principal: str | None, repository: str
) -> Allowance | None:
    """None when no quota applies (no rule for the repository, or not a user or robot)."""
    rule = config.quota(repository)
    if rule is None or principal is None:
        return None
    used = await pool.fetchval(
        """SELECT coalesce(sum(b.size), 0) FROM repository_blobs rb
           JOIN blobs b ON b.digest = rb.digest
           JOIN repositories r ON r.id = rb.repository_id
           WHERE rb.pushed_by = $1 AND starts_with(r.name, $2)""",
        principal,
        rule.prefix,
    )
    return Allowance(principal, rule.prefix, rule.bytes_per_principal, int(used))
