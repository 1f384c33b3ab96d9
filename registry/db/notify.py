"""A connection that hears PostgreSQL NOTIFY on a few channels, and comes back.

asyncpg delivers notifications only on a connection of its own, outside any pool. When
PostgreSQL restarts or fails over, that connection is gone for good: the listener sees it
end, opens a new one as soon as the database answers again (every `RETRY_SECONDS`), and
then calls `on_reconnect` — notifications sent meanwhile were lost, so the owner runs
what they would have started. The owners' intervals still run throughout: a wake-up only
makes work happen sooner.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Final

import asyncpg

from registry.logs import get_logger

log = get_logger("zoll.db")
RETRY_SECONDS: Final = 1.0
Callback = Callable[[str], None]
"""Called with the notification's payload."""


class Listener:
    def __init__(
        self,
        dsn: str | None,
        channels: Mapping[str, Callback],
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        self.dsn = dsn
        self.channels = dict(channels)
        self.on_reconnect = on_reconnect
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self._retry: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def listening(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def start(self) -> None:
        """Listen now, or keep trying in the background while the database is away."""
        if not await self._connect():
            self._lost(None)

    async def _connect(self) -> bool:
        async with self._lock:
            if self.listening or self._closed:
                return True
            try:
                conn = await asyncpg.connect(self.dsn)
                for channel, callback in self.channels.items():
                    await conn.add_listener(channel, _deliver(callback))
            except (OSError, asyncpg.PostgresError) as exc:
                log.debug("notifications not heard yet", error=str(exc))
                return False
            conn.add_termination_listener(self._lost)
            self._conn = conn
            return True

    def _lost(self, _conn: object) -> None:
        if self._closed or (self._retry is not None and not self._retry.done()):
            return
        log.warning("notifications lost with the database connection; reconnecting")
        self._retry = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        while not self._closed:
            await asyncio.sleep(RETRY_SECONDS)
            if await self._connect():
                break
        if not self._closed:
            log.info("notifications heard again", channels=list(self.channels))
            if self.on_reconnect is not None:
                self.on_reconnect()

    async def close(self) -> None:
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None


def _deliver(callback: Callback) -> Callable[[object, int, str, object], None]:
    def deliver(_conn: object, _pid: int, _channel: str, payload: object) -> None:
        callback(payload if isinstance(payload, str) else "")

    return deliver
