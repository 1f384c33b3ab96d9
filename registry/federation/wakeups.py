"""Wake the federation's rounds now instead of at their next interval.

Polling alone makes a follower lag by up to `poll_seconds` and a node's tiles by up to
`witness_seconds` (10 s each by default). Three events are worth acting on at once, and
each is a PostgreSQL NOTIFY that reaches every worker process of every instance on the
database (the rounds' cluster-wide locks keep one of them doing the work):

- `follow`: a peer was pinned, or a peer just asked this node to witness a larger
  checkpoint of its log — its tiles up to that size are already published, since a node
  publishes its tiles before it asks its witnesses (the witness protocol doubles as the
  change notice between nodes);
- `publish`: this node logged an admission, or pinned a peer — publish the tiles and
  collect cosignatures.
"""

from __future__ import annotations

from typing import Final, Literal

import asyncpg

CHANNEL: Final = "zoll_federation"
Wakeup = Literal["follow", "publish"]


async def wake(pool: asyncpg.Pool, what: Wakeup) -> None:
    await pool.execute("SELECT pg_notify($1, $2)", CHANNEL, what)
