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

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_owner = 0


def _executor() -> ThreadPoolExecutor:
    global _pool, _owner
    with _lock:
        if _pool is None or _owner != os.getpid():  # a forked worker starts a fresh pool
            _pool = ThreadPoolExecutor(
                max_workers=max(4, os.cpu_count() or 1), thread_name_prefix="oci-consumer"
            )
            _owner = os.getpid()
        return _pool


async def run_consumer(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run `fn`, which may block on chunks the running loop produces, off the loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor(), functools.partial(fn, *args, **kwargs))
