"""An instance that starts (and so checks and repairs the transparency log) while the
other instances keep appending to it: what a rolling restart behind a load balancer
does. The check must see one state of the log, not a head from before an append and
leaves from after it."""

from __future__ import annotations

import asyncio

import asyncpg

from attest.keys import PrivateKey
from attest.tlog.store import TransparencyLog
from tests.attest_sign.test_log_store import ORIGIN, admission


async def test_check_and_repair_while_two_other_instances_append(pg_dsn: str) -> None:
    key = PrivateKey.generate("ecdsa-p256")
    pools = [await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2) for _ in range(3)]
    try:
        busy, starting = (
            [TransparencyLog(p, key, ORIGIN) for p in pools[:2]],
            TransparencyLog(pools[2], key, ORIGIN),
        )
        await busy[0].append([admission(0)])
        stop = asyncio.Event()
        appended = 0

        async def keep_appending(log: TransparencyLog) -> None:
            nonlocal appended
            while not stop.is_set():
                await log.append([admission(appended), admission(appended + 1)])
                appended += 2

        writers = [asyncio.create_task(keep_appending(log)) for log in busy]
        try:
            for _ in range(150):
                await starting.check()
                await starting.repair()
                assert not any(w.done() for w in writers)
        finally:
            stop.set()
            await asyncio.gather(*writers)
        assert await starting.check() == 1 + appended
    finally:
        for p in pools:
            await p.close()
