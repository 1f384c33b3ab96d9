"""Why a version could not be compared: the matcher reports this, it never guesses."""

from __future__ import annotations


class VersionError(ValueError):
    """A version string that the ecosystem's version grammar does not accept."""

    def __init__(self, scheme: str, version: str, reason: str) -> None:
        super().__init__(f"{scheme} version {version!r}: {reason}")
        self.scheme = scheme
        self.version = version
        self.reason = reason
