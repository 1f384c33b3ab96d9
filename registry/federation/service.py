"""The federation services of one worker process: identity, peers, witness, cosigning."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass

import aiohttp
import asyncpg

from attest.servicekeys import ServiceKeyring
from attest.tlog.store import TransparencyLog
from registry.config import Config
from registry.federation import peers as peer_rows
from registry.federation import tiles
from registry.federation.cosigning import Cosigning
from registry.federation.identity import NodeIdentity
from registry.federation.peers import Peer
from registry.storage.base import BlobDriver


@dataclass
class Federation:
    config: Config
    pool: asyncpg.Pool
    identity: NodeIdentity
    log: TransparencyLog
    session: aiohttp.ClientSession
    cosigning: Cosigning

    @classmethod
    async def open(
        cls,
        config: Config,
        pool: asyncpg.Pool,
        keyring: ServiceKeyring,
        log: TransparencyLog,
        driver: BlobDriver,
    ) -> Federation:
        """`driver` holds the log's published tiles."""
        identity = await asyncio.to_thread(NodeIdentity.load, config, keyring, log.origin)
        session = aiohttp.ClientSession(headers={"User-Agent": f"zoll-federation/{identity.name}"})
        federation = config.federation
        cosigning = Cosigning(log, pool, session, federation.witness_timeout)
        opened = cls(config, pool, identity, log, session, cosigning)
        cosigning.publish = functools.partial(tiles.publish, opened, driver)
        return opened

    async def peers(self) -> list[Peer]:
        return await peer_rows.all_peers(self.pool, self.config)

    async def aclose(self) -> None:
        await self.session.close()
