"""Where the tests find their material: all of it inside the repository, so `make test`
passes in a clone with nothing beside it."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
"""Third-party signed material (Sigstore, in-toto), copied with its README on origin."""
