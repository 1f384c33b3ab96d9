"""A process-wide limit on upload bytes held in memory, so RSS stays bounded under load."""

from __future__ import annotations

import asyncio


class ByteBudget:
    """An async counting semaphore measured in bytes.

    Acquirers wait (which stops reading from their sockets) until enough bytes are free.
    A single request larger than the whole budget is admitted alone so it cannot starve.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self._used = 0
        self._cond = asyncio.Condition()

    @property
    def used(self) -> int:
        return self._used

    async def acquire(self, amount: int) -> None:
        async with self._cond:
            await self._cond.wait_for(lambda: self._used + amount <= self.total or self._used == 0)
            self._used += amount

    async def release(self, amount: int) -> None:
        async with self._cond:
            self._used -= amount
            self._cond.notify_all()
