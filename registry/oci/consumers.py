"""Blocking parsers of streamed OCI content run on threads of their own.

A layer is read by the event loop and parsed by a thread that waits for the loop's
chunks. Readers often need a thread themselves (file drivers and OCI layouts read with
`asyncio.to_thread`). If the parsers came from that same default executor, enough of
them at once would hold every thread while the reads they wait for queue behind them:
a deadlock that appears only under load. So parsers get this separate pool; readers
never wait on it, so it may be small and bounded.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class ProcessThreadPool:
    """A thread pool made on first use in each process: a forked worker never inherits
    its parent's (dead) threads. Shared with other blocking work that must not queue
    behind the loop's default executor (registry/http/sendfile.py)."""

    def __init__(self, max_workers: int, name: str) -> None:
        self.max_workers, self.name = max_workers, name
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._owner = 0

    def get(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None or self._owner != os.getpid():
                self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix=self.name)
                self._owner = os.getpid()
            return self._pool


_CONSUMERS = ProcessThreadPool(max(4, os.cpu_count() or 1), "oci-consumer")


async def run_consumer(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run `fn`, which may block on chunks the running loop produces, off the loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_CONSUMERS.get(), functools.partial(fn, *args, **kwargs))
