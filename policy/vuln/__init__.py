"""Vulnerability matching: OSV advisories and VEX statements against installed packages.

The registry calls:
- `await import_osv(pool, path, progress=None)` → `ImportSummary` (dir, zip or file)
- `await import_vex(pool, path)` → `VexImportSummary` (CSAF 2.0 VEX or OpenVEX)
- `VulnStore(pool)`: `await store.match(packages)` → `list[VulnFinding]`,
  `await store.fingerprint()` → `DataFingerprint` (record it with results)
- `await match_offline(packages, osv_path, vex_paths=())` without a database.
"""

from __future__ import annotations

from policy.vuln.errors import (
    ArchiveLimitError,
    OsvFormatError,
    SourceError,
    VexFormatError,
    VulnDataError,
)
from policy.vuln.fingerprint import DataFingerprint
from policy.vuln.offline import match_offline
from policy.vuln.source import Limits, Rejected
from policy.vuln.store import (
    ImportProgress,
    ImportSummary,
    VexImportSummary,
    VulnStore,
    import_osv,
    import_vex,
)

__all__ = [
    "ArchiveLimitError",
    "DataFingerprint",
    "ImportProgress",
    "ImportSummary",
    "Limits",
    "OsvFormatError",
    "Rejected",
    "SourceError",
    "VexFormatError",
    "VexImportSummary",
    "VulnDataError",
    "VulnStore",
    "import_osv",
    "import_vex",
    "match_offline",
]
