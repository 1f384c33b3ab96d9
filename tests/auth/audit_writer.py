"""A separate process appending audit events concurrently (run by test_audit.py)."""

from __future__ import annotations

import asyncio
import sys

from registry.audit import Actor, record_now
from registry.db.pool import create_pool


async def main(dsn: str, count: int, who: str) -> None:
    pool = await create_pool(dsn, min_size=4, max_size=4)
    try:
        actor = Actor(who, "system", source="test")
        await asyncio.gather(
            *(
                record_now(pool, "test.write", target=f"{who}-{i}", detail={"i": i}, actor=actor)
                for i in range(count)
            )
        )
    finally:
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
