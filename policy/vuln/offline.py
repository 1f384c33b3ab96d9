"""Matching without a database: stream an export and keep only what concerns the packages.

For the CLI and auditors: the export is read record by record in a worker thread;
only records naming one of the packages' (ecosystem, name) are kept, newest copy per
id, so memory follows the number of relevant records, not the export's size.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable, Sequence

from policy.packages import Package, VulnFinding
from policy.vuln.matching import match_advisories
from policy.vuln.osv import Advisory, normalize_name
from policy.vuln.source import Limits, Record, Rejected, iter_records
from policy.vuln.vex import apply_vex, load_vex


def relevant_advisories(
    packages: Sequence[Package],
    osv_path: str | os.PathLike[str],
    *,
    limits: Limits | None = None,
    on_rejected: Callable[[Rejected], None] | None = None,
) -> list[Advisory]:
    """The current copy of every record that names one of `packages` (blocking)."""
    keys = {(p.ecosystem, normalize_name(p.ecosystem, p.advisory_name)) for p in packages}
    kept: dict[str, Advisory] = {}
    withdrawn: dict[str, Advisory] = {}
    for item in iter_records(osv_path, limits):
        if isinstance(item, Rejected):
            if on_rejected is not None:
                on_rejected(item)
            continue
        assert isinstance(item, Record)
        advisory = item.advisory
        if advisory.withdrawn is not None:
            seen = withdrawn.get(advisory.id)
            if seen is None or advisory.modified > seen.modified:
                withdrawn[advisory.id] = advisory
            continue
        if not any((a.ecosystem, a.key_name) in keys for a in advisory.affected):
            continue
        current = kept.get(advisory.id)
        if current is None or advisory.modified > current.modified:
            kept[advisory.id] = advisory
    return [
        adv
        for rid, adv in sorted(kept.items())
        if rid not in withdrawn or withdrawn[rid].modified < adv.modified
    ]


async def match_offline(
    packages: Sequence[Package],
    osv_path: str | os.PathLike[str],
    vex_paths: Iterable[str | os.PathLike[str]] = (),
    *,
    limits: Limits | None = None,
    on_rejected: Callable[[Rejected], None] | None = None,
) -> list[VulnFinding]:
    """Findings for `packages` from an export on disk, VEX files applied in order."""
    vex_list = list(vex_paths)

    def run() -> list[VulnFinding]:
        advisories = relevant_advisories(packages, osv_path, limits=limits, on_rejected=on_rejected)
        findings = match_advisories(advisories, packages)
        statements = [s for path in vex_list for s in load_vex(os.fspath(path)).statements]
        return apply_vex(findings, statements)

    return await asyncio.to_thread(run)
