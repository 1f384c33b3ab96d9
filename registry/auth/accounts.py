"""Principals (users, robots, anonymous) and their grants in PostgreSQL.

Every change is written to the audit log in the same transaction. Secrets never leave
this module except once, as the return value of the call that created them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Literal

import asyncpg

from registry import audit
from registry.auth.passwords import Hasher, new_secret
from registry.auth.roles import ANONYMOUS_ROLES, Grants, check_namespace, check_role
from registry.db.pool import Conn, Executor

Kind = Literal["user", "robot", "anonymous"]
ANONYMOUS = "anonymous"
ROBOT_PREFIX = "robot+"
MIN_PASSWORD = 12
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


class AccountError(ValueError):
    """A principal or grant change that cannot be made; the message says why."""


class NoSuchPrincipal(AccountError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no principal named {name!r}")


class PrincipalExists(AccountError):
    def __init__(self, name: str) -> None:
        super().__init__(f"a principal named {name!r} exists already")


@dataclass(frozen=True)
class Principal:
    id: int
    name: str
    kind: Kind
    secret_hash: str | None
    disabled: bool
    expires_at: datetime | None
    grants: Grants
    description: str = ""
    created_at: datetime | None = None
    created_by: str = "system"

    @cached_property
    def secret_version(self) -> str:
        """Changes whenever the secret does; tokens carry it, so a new secret ends them."""
        return hashlib.sha256((self.secret_hash or "").encode()).hexdigest()[:16]

    @property
    def is_anonymous(self) -> bool:
        return self.kind == "anonymous"

    def usable(self, now: datetime | None = None) -> bool:
        """Not disabled and not past its expiry."""
        moment = now or datetime.now(UTC)
        return not self.disabled and (self.expires_at is None or self.expires_at > moment)


def user_name(raw: str) -> str:
    if raw == ANONYMOUS or not _NAME.match(raw):
        raise AccountError(
            f"user name {raw[:80]!r}: use 1–63 of a-z 0-9 . _ - (starting with a letter or "
            "digit); 'anonymous' is reserved"
        )
    return raw


def robot_name(raw: str) -> str:
    """`ci` and `robot+ci` both name the robot `robot+ci`."""
    bare = raw.removeprefix(ROBOT_PREFIX)
    if not _NAME.match(bare):
        raise AccountError(f"robot name {raw[:80]!r}: use 1–63 of a-z 0-9 . _ -")
    return ROBOT_PREFIX + bare


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"passwords need at least {MIN_PASSWORD} characters")
    return password


_SELECT = """
    SELECT p.id, p.name, p.kind, p.secret_hash, p.disabled, p.expires_at, p.description,
           p.created_at, p.created_by,
           coalesce(array_agg(g.namespace ORDER BY g.namespace, g.role)
                    FILTER (WHERE g.role IS NOT NULL), '{}') AS namespaces,
           coalesce(array_agg(g.role ORDER BY g.namespace, g.role)
                    FILTER (WHERE g.role IS NOT NULL), '{}') AS roles
    FROM auth_principals p LEFT JOIN auth_grants g ON g.principal_id = p.id
"""


def _principal(row: asyncpg.Record) -> Principal:
    return Principal(
        int(row["id"]),
        row["name"],
        row["kind"],
        row["secret_hash"],
        bool(row["disabled"]),
        row["expires_at"],
        Grants.of(zip(row["namespaces"], row["roles"], strict=True)),
        row["description"],
        row["created_at"],
        row["created_by"],
    )


async def load(conn: Executor, name: str) -> Principal | None:
    row = await conn.fetchrow(_SELECT + " WHERE p.name = $1 GROUP BY p.id", name)
    return None if row is None else _principal(row)


async def load_all(conn: Executor, kind: Kind | None = None) -> list[Principal]:
    rows = await conn.fetch(
        _SELECT + " WHERE $1::text IS NULL OR p.kind = $1 GROUP BY p.id ORDER BY p.name", kind
    )
    return [_principal(r) for r in rows]


async def count_with_secrets(conn: Executor) -> int:
    count = await conn.fetchval("SELECT count(*) FROM auth_principals WHERE kind <> 'anonymous'")
    return int(count)


async def _id_of(conn: Conn, name: str) -> tuple[int, Kind]:
    row = await conn.fetchrow(
        "SELECT id, kind FROM auth_principals WHERE name = $1 FOR UPDATE", name
    )
    if row is None:
        raise NoSuchPrincipal(name)
    return int(row["id"]), row["kind"]


async def create(
    pool: asyncpg.Pool,
    name: str,
    kind: Kind,
    secret_hash: str,
    *,
    description: str = "",
    expires_at: datetime | None = None,
    grants: tuple[tuple[str, str], ...] = (),
) -> Principal:
    """Insert a user or robot (name already checked) with its first grants."""
    creator = audit.current_actor().name
    checked = [(check_namespace(ns), check_role(role)) for ns, role in grants]
    changes = [
        audit.Change(
            "principal.create",
            target=name,
            detail={
                "kind": kind,
                "description": description,
                "expires_at": expires_at.isoformat() if expires_at else None,
            },
        )
    ]
    async with pool.acquire() as conn, conn.transaction():
        try:
            pid = await conn.fetchval(
                """INSERT INTO auth_principals (name, kind, secret_hash, description, expires_at,
                       created_by) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""",
                name,
                kind,
                secret_hash,
                description,
                expires_at,
                creator,
            )
        except asyncpg.UniqueViolationError:
            raise PrincipalExists(name) from None
        for ns, role in checked:
            await conn.execute(
                """INSERT INTO auth_grants (principal_id, namespace, role, created_by)
                   VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING""",
                pid,
                ns,
                role,
                creator,
            )
            changes.append(
                audit.Change("grant.add", target=name, detail={"namespace": ns, "role": role})
            )
        await audit.record_all(conn, changes)
        found = await load(conn, name)
    assert found is not None
    return found


async def remove(pool: asyncpg.Pool, name: str) -> None:
    if name == ANONYMOUS:
        raise AccountError("the anonymous principal cannot be removed (revoke its grants)")
    async with pool.acquire() as conn, conn.transaction():
        pid, kind = await _id_of(conn, name)
        await conn.execute("DELETE FROM auth_principals WHERE id = $1", pid)
        await audit.record(conn, "principal.delete", target=name, detail={"kind": kind})


async def set_secret(pool: asyncpg.Pool, name: str, secret_hash: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        pid, kind = await _id_of(conn, name)
        if kind == "anonymous":
            raise AccountError("the anonymous principal has no secret")
        await conn.execute(
            "UPDATE auth_principals SET secret_hash = $2 WHERE id = $1", pid, secret_hash
        )
        await audit.record(conn, "principal.secret", target=name, detail={"kind": kind})


async def set_disabled(pool: asyncpg.Pool, name: str, disabled: bool) -> bool:
    """Disable or enable; False if it already was."""
    async with pool.acquire() as conn, conn.transaction():
        pid, kind = await _id_of(conn, name)
        if kind == "anonymous":
            raise AccountError("the anonymous principal cannot be disabled (revoke its grants)")
        status = await conn.execute(
            "UPDATE auth_principals SET disabled = $2 WHERE id = $1 AND disabled <> $2",
            pid,
            disabled,
        )
        if status == "UPDATE 0":
            return False
        action = "principal.disable" if disabled else "principal.enable"
        await audit.record(conn, action, target=name, detail={"kind": kind})
        return True


async def add_grant(pool: asyncpg.Pool, name: str, namespace: str, role: str) -> bool:
    """Grant `role` on `namespace`; False if the principal had it already."""
    ns, checked_role = check_namespace(namespace), check_role(role)
    async with pool.acquire() as conn, conn.transaction():
        pid, kind = await _id_of(conn, name)
        if kind == "anonymous" and checked_role not in ANONYMOUS_ROLES:
            raise AccountError(
                "anonymous callers may only be given: " + ", ".join(sorted(ANONYMOUS_ROLES))
            )
        status = await conn.execute(
            """INSERT INTO auth_grants (principal_id, namespace, role, created_by)
               VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING""",
            pid,
            ns,
            checked_role,
            audit.current_actor().name,
        )
        if status == "INSERT 0 0":
            return False
        await audit.record(
            conn, "grant.add", target=name, detail={"namespace": ns, "role": checked_role}
        )
        return True


async def remove_grant(pool: asyncpg.Pool, name: str, namespace: str, role: str) -> bool:
    """Revoke; False if the principal did not have it."""
    ns, checked_role = check_namespace(namespace), check_role(role)
    async with pool.acquire() as conn, conn.transaction():
        pid, _ = await _id_of(conn, name)
        status = await conn.execute(
            "DELETE FROM auth_grants WHERE principal_id = $1 AND namespace = $2 AND role = $3",
            pid,
            ns,
            checked_role,
        )
        if status == "DELETE 0":
            return False
        await audit.record(
            conn, "grant.remove", target=name, detail={"namespace": ns, "role": checked_role}
        )
        return True


async def create_user(
    pool: asyncpg.Pool,
    hasher: Hasher,
    name: str,
    password: str | None = None,
    *,
    grants: tuple[tuple[str, str], ...] = (),
    description: str = "",
) -> tuple[Principal, str | None]:
    """A person's account. Without a password one is generated and returned (once)."""
    checked = user_name(name)
    generated = None if password is not None else new_secret()
    secret = check_password(password) if password is not None else generated
    assert secret is not None
    principal = await create(
        pool, checked, "user", await hasher.hash(secret), description=description, grants=grants
    )
    return principal, generated


async def create_robot(
    pool: asyncpg.Pool,
    hasher: Hasher,
    name: str,
    *,
    grants: tuple[tuple[str, str], ...] = (),
    description: str = "",
    expires_at: datetime | None = None,
) -> tuple[Principal, str]:
    """A build system's account; its secret is generated and returned only here."""
    checked = robot_name(name)
    secret = new_secret()
    principal = await create(
        pool,
        checked,
        "robot",
        await hasher.hash(secret),
        description=description,
        expires_at=expires_at,
        grants=grants,
    )
    return principal, secret


async def reset_secret(
    pool: asyncpg.Pool, hasher: Hasher, name: str, password: str | None = None
) -> str | None:
    """New password (users may choose one) or new robot secret; generated ones are returned."""
    existing = await load(pool, name)
    if existing is None:
        raise NoSuchPrincipal(name)
    if password is not None and existing.kind == "robot":
        raise AccountError("robot secrets are always generated")
    generated = None if password is not None else new_secret()
    secret = check_password(password) if password is not None else generated
    assert secret is not None
    await set_secret(pool, name, await hasher.hash(secret))
    return generated
