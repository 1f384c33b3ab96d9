"""`zoll mirror apply|status` starts in a fraction of a second because it loads only what
queueing work for the service needs: no object-store client, no embedded-server
launcher, no analyzer or sigstore, no structlog or rich until something is logged or shown
(each cost the command tens of milliseconds)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = (
    "pgserver",
    "registry.storage.s3",
    "aiohttp",
    "sigstore",
    "policy.analyzer",
    "structlog",
    "rich",
)


def test_the_mirror_command_loads_no_heavy_library() -> None:
    probe = (
        "import sys, registry.cli.main, registry.cli.commands.mirror\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
