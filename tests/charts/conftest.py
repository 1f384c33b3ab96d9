"""Chart fixtures: an enforcing Zoll that knows itself as `zoll.test`, the pipeline's
supplier key and trust policy, and the image builder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.pipeline.conftest import Supplier, builder, supplier
from tests.support.servers import LiveRegistry, live_registry, registry_config

__all__ = ["builder", "supplier"]
REGISTRY_NAME = "zoll.test"
"""How clusters would name this Zoll; charts name their images under it."""


@pytest.fixture
async def chart_zoll(
    pg_dsn: str, tmp_path: Path, supplier: Supplier
) -> AsyncIterator[LiveRegistry]:
    config = registry_config(
        pg_dsn,
        tmp_path / "data",
        "filesystem",
        None,
        attest={"trust_policy": str(supplier.policy)},
        charts={"registry_names": [REGISTRY_NAME]},
        namespaces=[
            {"prefix": "opendesk/", "admission": "enforce"},
            {
                "prefix": "tools/",
                "admission": "enforce",
                "allow_artifact_types": ["application/vnd.example.notes.*"],
            },
        ],
    )
    async with live_registry(config) as live:
        yield live
