"""Real backends that the fault tests stop, pause, kill and restart: each module gets
its own SeaweedFS (never the session's shared one, which other tests rely on)."""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.embedded.seaweedfs import EmbeddedSeaweed
from tests.support.servers import S3Server


class FaultySeaweed:
    """A SeaweedFS whose process the test controls; restarts keep its ports."""

    def __init__(self, folder: Path) -> None:
        self.weed = EmbeddedSeaweed(folder)

    @property
    def server(self) -> S3Server:
        return S3Server(self.weed.endpoint, self.weed.access_key, self.weed.secret_key)

    def _signal(self, sig: signal.Signals) -> None:
        assert self.weed.pid is not None, "SeaweedFS is not running"
        os.killpg(self.weed.pid, sig)

    def pause(self) -> None:
        """SIGSTOP: the store stalls — connections open, nothing answers."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: connections are refused until `restart`."""
        self._signal(signal.SIGKILL)
        self.weed.stop()

    def restart(self) -> None:
        self.weed.stop()
        self.weed.start()

    def ensure_running(self) -> None:
        """Undo whatever the last test did to the store."""
        if self.weed.pid is not None:
            try:
                os.killpg(self.weed.pid, signal.SIGCONT)
            except ProcessLookupError:
                self.weed.stop()
        if self.weed.pid is None:
            self.weed.start()


@pytest.fixture(scope="module")
def faulty_s3() -> Iterator[FaultySeaweed]:
    with tempfile.TemporaryDirectory(prefix="zoll-faulty-s3-") as folder:
        store = FaultySeaweed(Path(folder))
        store.weed.start()
        try:
            yield store
        finally:
            store.ensure_running()
            store.weed.stop()


@pytest.fixture
def s3_fault(faulty_s3: FaultySeaweed) -> Iterator[FaultySeaweed]:
    """The module's store, running at the start of each test and afterwards."""
    faulty_s3.ensure_running()
    yield faulty_s3
    faulty_s3.ensure_running()
