"""Vulnerability matching: OSV advisories and VEX statements against installed packages.

The registry calls:
- `await import_osv(pool, path, progress=None)` → `ImportSummary` (dir, zip or file)
- `await import_vex(pool, path)` → `VexImportSummary` (CSAF 2.0 VEX or OpenVEX)
- `VulnStore(pool)`: `await store.match(packages)` → `list[VulnFinding]`,
  `await store.fingerprint()` → `DataFingerprint` (record it with results)
- `await match_offline(packages, osv_path, vex_paths=())` without a database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from policy.lazy import exports

if TYPE_CHECKING:
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

# Loaded on first use (policy.lazy): the mirror CLI's version parser must not load every
# analyzer and the database code.
_PROVIDERS = {
    "ArchiveLimitError": "policy.vuln.errors",
    "OsvFormatError": "policy.vuln.errors",
    "SourceError": "policy.vuln.errors",
    "VexFormatError": "policy.vuln.errors",
    "VulnDataError": "policy.vuln.errors",
    "DataFingerprint": "policy.vuln.fingerprint",
    "match_offline": "policy.vuln.offline",
    "Limits": "policy.vuln.source",
    "Rejected": "policy.vuln.source",
    "ImportProgress": "policy.vuln.store",
    "ImportSummary": "policy.vuln.store",
    "VexImportSummary": "policy.vuln.store",
    "VulnStore": "policy.vuln.store",
    "import_osv": "policy.vuln.store",
    "import_vex": "policy.vuln.store",
}


__getattr__ = exports(__name__, _PROVIDERS)

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
