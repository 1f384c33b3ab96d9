"""First start: with nobody able to log in, create `admin` (admin on `*`) with a random
password that is printed once. Without it a fresh registry with authentication on
(the default) could not be used at all; with it nobody ever runs with a known default
password. Lost it? `zoll users passwd admin` on the server resets it."""

from __future__ import annotations

import asyncpg

from registry.audit import Actor, acting_as
from registry.auth import accounts
from registry.auth.passwords import Hasher

ADMIN = "admin"


async def ensure_admin(pool: asyncpg.Pool, log2_n: int) -> str | None:
    """The new admin's password, or None when users or robots exist already."""
    if await accounts.count_with_secrets(pool):
        return None
    with acting_as(Actor("zoll-serve", "system")):
        try:
            _, password = await accounts.create_user(
                pool,
                Hasher(log2_n),
                ADMIN,
                grants=(("*", "admin"),),
                description="created on first start",
            )
        except accounts.PrincipalExists:  # another node or supervisor was first
            return None
    return password
