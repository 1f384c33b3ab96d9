"""Remember what a layer contained, so images sharing base layers analyse them once.

A mirror of twenty images built on the same runtime reads that runtime's layers twenty
times; the analysis of one layer does not depend on the others, only merging does. A
`LayerCache` keeps, per layer digest (and analyzer version and limits): the tar entries'
metadata, the facts parsed from its files (package databases, passwd, os-release, Go
build info, Java archives) and its secret findings. Replaying a cached layer applies the
entries to the merged tree again — so whiteouts, overrides and link escapes are judged
against the real lower layers — and keeps only the facts of paths that applied.

Bounded: least recently used layers are dropped beyond `max_entries` cached tar entries
(250,000 by default, some tens of MB); layers above 100,000 entries are never cached.
Thread-safe (layers are processed in worker threads).
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from dataclasses import dataclass

from policy.analyzer.model import Finding
from policy.analyzer.tarstream import TarEntry


@dataclass(frozen=True, slots=True)
class CachedFact:
    path: str
    kind: str
    value: object


@dataclass(frozen=True, slots=True)
class CachedLayer:
    entries: tuple[TarEntry, ...]
    facts: tuple[CachedFact, ...]
    secrets: tuple[tuple[str, Finding], ...]
    uncompressed_size: int


class LayerCache:
    def __init__(self, max_entries: int = 250_000) -> None:
        self.max_entries = max_entries
        self._layers: OrderedDict[str, CachedLayer] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()
        self._reading: dict[str, asyncio.Future[None]] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> CachedLayer | None:
        with self._lock:
            layer = self._layers.get(key)
            if layer is None:
                self.misses += 1
                return None
            self._layers.move_to_end(key)
            self.hits += 1
            return layer

    def claim(self, key: str) -> asyncio.Future[None] | None:
        """None: the caller reads the layer now (and must `release` it). Otherwise a future
        that is done once the current reader has finished: images sharing a base layer and
        judged at the same time read it once, not once each."""
        with self._lock:
            reading = self._reading.get(key)
            if reading is not None:
                return reading
            self._reading[key] = asyncio.get_running_loop().create_future()
            return None

    def release(self, key: str) -> None:
        with self._lock:
            reading = self._reading.pop(key, None)
        if reading is not None and not reading.done():
            reading.set_result(None)

    def put(self, key: str, layer: CachedLayer) -> None:
        size = len(layer.entries)
        if size > self.max_entries:
            return
        with self._lock:
            if key in self._layers:
                return
            self._layers[key] = layer
            self._held += size
            while self._held > self.max_entries:
                _, dropped = self._layers.popitem(last=False)
                self._held -= len(dropped.entries)
