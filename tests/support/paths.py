"""Where the tests find things outside the repository."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("ZOLL_SHARED", REPO.parent / "shared"))
"""`../shared` beside the checkout (fixtures, research), as CI lays it out."""
FIXTURES = SHARED / "fixtures"
