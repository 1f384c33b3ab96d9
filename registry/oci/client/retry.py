"""When and how long to wait before trying a request again.

Upstreams rate-limit (Docker Hub answers 429 with `Retry-After`) and fail transiently
(502/503/504, reset connections). We retry with exponential backoff and jitter so many
mirrors do not retry in lockstep, wait at least what `Retry-After` asks, and give up after
a bounded number of attempts or when the registry asks for a longer wait than allowed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

RETRY_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})
"""Statuses that say "not now" rather than "no"."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries; `attempts` counts the first try."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0
    """The longest `Retry-After` we wait for; a longer request ends the retries at once."""
    max_resumes: int = 8
    """How often one blob download may continue after a dropped connection."""

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait after failed attempt number `attempt` (1-based): exponential, with
        "equal jitter" (half fixed, half random) so the wait never collapses to zero."""
        ceiling: float = min(self.max_delay, self.base_delay * 2.0 ** max(attempt - 1, 0))
        jitter: float = (rng or random).uniform(0, ceiling / 2)
        return ceiling / 2 + jitter

    def delay(
        self, attempt: int, retry_after: float | None, rng: random.Random | None = None
    ) -> float:
        """The wait before the next attempt: at least what the registry asked for."""
        wait = self.backoff(attempt, rng)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return wait


_RFC850: Final = "%A, %d-%b-%y %H:%M:%S GMT"


def parse_http_date(value: str, now: datetime | None = None) -> datetime | None:
    """An HTTP-date in any of the three forms RFC 9110 §5.6.7 requires recipients to read."""
    text = value.strip()
    try:
        parsed = datetime.strptime(text, _RFC850).replace(tzinfo=UTC)
    except ValueError:
        try:
            parsed = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if parsed.tzinfo is None:  # asctime form carries no zone: it is GMT
            parsed = parsed.replace(tzinfo=UTC)
        return parsed
    # RFC 850 has a two-digit year: one more than 50 years ahead is in the past century.
    current = now or datetime.now(UTC)
    if parsed.year > current.year + 50:
        parsed = parsed.replace(year=parsed.year - 100)
    return parsed


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` value (delay-seconds or HTTP-date); None when
    absent or unreadable, 0 for a date in the past."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    current = now or datetime.now(UTC)
    when = parse_http_date(text, current)
    if when is None:
        return None
    return max(0.0, (when - current).total_seconds())
