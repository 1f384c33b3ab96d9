"""A process-wide limit on upload bytes held in memory, so RSS stays bounded under load."""

from __future__ import annotations

import asyncio
from collections import deque

from registry import metrics
from registry.storage.base import StorageError


class BudgetExhausted(StorageError):
    """No memory for upload data within the wait limit: the service is overloaded (or
    storage is too slow to drain what it holds); the client should retry later."""


class ByteBudget:
    """An async counting semaphore measured in bytes, first come first served.

    Acquirers wait (which stops reading from their sockets) until enough bytes are free,
    at most `wait_limit` seconds, then BudgetExhausted. A single request larger than the
    whole budget is admitted alone so it cannot starve. `release` is synchronous so it
    can run from any cleanup path (a done-callback, a finally) and never be skipped.
    """

    def __init__(self, total: int, wait_limit: float = 30.0) -> None:
        self.total = total
        self.wait_limit = wait_limit
        self._used = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def used(self) -> int:
        return self._used

    def _fits(self, amount: int) -> bool:
        return self._used + amount <= self.total or self._used == 0

    def _take(self, amount: int) -> None:
        self._used += amount
        metrics.BUDGET_BYTES.set(self._used)

    async def acquire(self, amount: int) -> None:
        if not self._waiters and self._fits(amount):
            self._take(amount)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (amount, future)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(future), self.wait_limit)
        except BaseException as exc:
            if future.done() and not future.cancelled():
                self.release(amount)  # granted just as we gave up: hand it back
            else:
                future.cancel()
                if entry in self._waiters:
                    self._waiters.remove(entry)
                self._wake()
            if isinstance(exc, TimeoutError):
                raise BudgetExhausted(
                    f"no upload buffer free within {self.wait_limit:g} s "
                    f"({self._used} of {self.total} bytes in use)"
                ) from None
            raise

    def release(self, amount: int) -> None:
        self._used -= amount
        assert self._used >= 0, "released more upload buffer than was acquired"
        metrics.BUDGET_BYTES.set(self._used)
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            amount, future = self._waiters[0]
            if future.done():
                self._waiters.popleft()
                continue
            if not self._fits(amount):
                return
            self._waiters.popleft()
            self._take(amount)
            future.set_result(None)
