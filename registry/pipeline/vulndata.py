"""Whether known vulnerabilities were checked at all, and against how old data.

Without imported data the vulnerability criterion (HC-12) does not apply and images pass
with no CVE check; that must never be silent. Every scan without data says so in the
image's status, `/readyz` and `/metrics` show the data's size and age, `zoll serve`
warns at start, and a namespace with `vuln_max_age_days` admits nothing judged without
data or with data older than that (docs/vulnerability-data.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from policy.vuln import VulnStore
from registry.config import NamespaceRule

NOT_CHECKED: Final = (
    "no vulnerability data: known vulnerabilities (HC-12) were not checked "
    "(load OSV data with zoll vulndb import)"
)


@dataclass(frozen=True)
class VulnData:
    records: int
    imported_at: datetime | None
    """When the last OSV import finished without error."""

    def age_days(self, now: datetime | None = None) -> float | None:
        if self.imported_at is None:
            return None
        return ((now or datetime.now(UTC)) - self.imported_at).total_seconds() / 86400

    def age_seconds(self, now: datetime | None = None) -> float:
        """For the metric: +Inf when there is no data, so one alert rule catches both."""
        days = self.age_days(now)
        return math.inf if days is None or not self.records else days * 86400

    @property
    def missing(self) -> bool:
        return self.records == 0

    def problem(self, max_age_days: int | None, now: datetime | None = None) -> str | None:
        """Why data of this age is not good enough for a namespace, or None."""
        if max_age_days is None:
            return None
        wanted = f"the namespace requires data at most {max_age_days} days old"
        if self.missing:
            return f"{NOT_CHECKED}; {wanted}"
        age = self.age_days(now)
        if age is None or age > max_age_days:
            when = "never" if self.imported_at is None else self.imported_at.date().isoformat()
            shown = "of unknown age" if age is None else f"{int(age)} days old"
            return f"vulnerability data is {shown} (last import {when}); {wanted}"
        return None

    def warnings(self, rules: Iterable[NamespaceRule], now: datetime | None = None) -> list[str]:
        if self.missing:
            return [NOT_CHECKED]
        strictest = min((r.vuln_max_age_days for r in rules if r.vuln_max_age_days), default=None)
        problem = self.problem(strictest, now)
        return [problem] if problem else []

    def to_json(self, now: datetime | None = None) -> dict[str, Any]:
        age = self.age_days(now)
        return {
            "records": self.records,
            "imported_at": self.imported_at.isoformat() if self.imported_at else None,
            "age_days": None if age is None else round(age, 2),
        }


async def vuln_data(store: VulnStore) -> VulnData:
    records = (await store.fingerprint()).records
    return VulnData(records, await store.last_import())
