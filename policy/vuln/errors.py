"""Errors for vulnerability data: each says which input and what is wrong with it."""

from __future__ import annotations


class VulnDataError(Exception):
    """Base class: vulnerability or VEX data that Zoll cannot use."""


class OsvFormatError(VulnDataError):
    """One OSV record is not valid JSON or breaks the OSV schema."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class ArchiveLimitError(VulnDataError):
    """An export exceeds a safety limit (zip bomb, oversized entry, too many entries)."""


class SourceError(VulnDataError):
    """The path given is neither a directory, a JSON file nor a readable zip archive."""


class VexFormatError(VulnDataError):
    """A VEX document that is neither valid CSAF 2.0 VEX nor OpenVEX."""
