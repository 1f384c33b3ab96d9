"""Refused requests leave a trace in the audit log, without letting a flood fill it.

An auditor must see escalation attempts: a reader's DELETE, a push outside a grant, a
namespace admin reaching for registry-wide admin, a forged or `alg: none` token, logins
refused while throttled. Each is an `access.denied` event (actor, source address, what
was wanted, why it was refused). Refusals are grouped by (who, from where, why, what): the
first of a group is recorded at once, repeats within `auth.denial_window` seconds are
counted and recorded as one event with `repeated: N` when the window ends. At most
`auth.denial_events` groups per window get events of their own in each worker; beyond
that, refusals are only counted, into one overflow event per window, so a flood costs
the log a bounded number of rows per minute whatever it varies. The anonymous first
request of a client (401 with a challenge, before it fetches a token) is normal protocol,
not a refusal, and is not recorded. Failed logins are recorded as `login.failure` where
they are checked (and throttled: registry/auth/ratelimit.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiohttp import web

from registry import audit
from registry.audit import Actor
from registry.logs import get_logger

log = get_logger("zoll.audit")
ACTION = "access.denied"
OVERFLOW = ("*", "*", None, "overflow", "*")


@dataclass
class _Group:
    started: float
    repository: str | None
    detail: dict[str, Any]
    actor: Actor
    repeated: int = 0


@dataclass
class DenialLog:
    """One worker's refusals of the current window."""

    pool: asyncpg.Pool
    window: float
    events: int
    groups: dict[tuple[str, str, str | None, str, str], _Group] = field(default_factory=dict)
    recorded: int = 0
    window_started: float = field(default_factory=time.monotonic)

    async def refused(
        self,
        reason: str,
        wanted: str,
        *,
        repository: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Note one refusal by the current actor (see the module docstring)."""
        actor = audit.current_actor()
        key = (actor.name, actor.kind, actor.source, reason, wanted)
        now = time.monotonic()
        self._roll(now)
        group = self.groups.get(key)
        if group is not None:
            group.repeated += 1
            return
        if self.recorded >= self.events:
            overflow = self.groups.get(OVERFLOW)
            if overflow is None:
                self.groups[OVERFLOW] = _Group(
                    now, None, {"reason": "overflow"}, Actor("*", "system"), 1
                )
            else:
                overflow.repeated += 1
            return
        event = {"reason": reason, "wanted": wanted, **(detail or {})}
        self.groups[key] = _Group(now, repository, event, actor)
        self.recorded += 1
        await self._write(repository, event, actor)

    def _roll(self, now: float) -> None:
        if now - self.window_started >= self.window:
            self.window_started = now
            self.recorded = 0
            pending, self.groups = self.groups, {}
            for group in pending.values():
                if group.repeated:
                    task = asyncio.ensure_future(self._write_repeats(group))
                    _BACKGROUND.add(task)
                    task.add_done_callback(_BACKGROUND.discard)

    async def flush(self) -> None:
        """Record the repeats counted so far and start a new window."""
        self.window_started = -self.window
        self._roll(time.monotonic())
        await asyncio.gather(*_BACKGROUND, return_exceptions=True)

    async def _write_repeats(self, group: _Group) -> None:
        detail = {**group.detail, "repeated": group.repeated, "window_seconds": self.window}
        await self._write(group.repository, detail, group.actor)

    async def _write(self, repository: str | None, detail: dict[str, Any], actor: Actor) -> None:
        try:
            await audit.record_now(
                self.pool, ACTION, repository=repository, detail=detail, actor=actor
            )
        except (asyncpg.PostgresError, OSError) as exc:  # never turn a refusal into a 5xx
            log.warning("refusal not audited", error=str(exc), **detail)


_BACKGROUND: set[asyncio.Future[None]] = set()


def denial_flusher(denials: DenialLog) -> Any:
    """An aiohttp cleanup context: records repeats at the end of every window, and what
    is left when the worker stops."""

    async def run(_app: web.Application) -> AsyncIterator[None]:
        async def tick() -> None:
            while True:
                await asyncio.sleep(denials.window)
                denials._roll(time.monotonic())

        task = asyncio.create_task(tick())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await denials.flush()

    return run
