"""`WWW-Authenticate` challenges (RFC 9110 §11.6.1) as registries send them.

Registries send `Bearer realm="…",service="…",scope="…"` (token auth) or
`Basic realm="…"`; some send several challenges in one header or in several headers, and
scope values contain commas (`repository:a:pull,push`) and spaces (several scopes), so a
naive split on commas is wrong. This parser follows the RFC grammar: a challenge is an
auth-scheme followed by either a token68 or comma-separated `name=value` parameters
whose values are tokens or quoted strings with backslash escapes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN68: Final = re.compile(r"[A-Za-z0-9\-._~+/]+=*(?=[ \t]*(?:,|$))")
_WS: Final = " \t"


@dataclass(frozen=True, slots=True)
class Challenge:
    """One challenge; `scheme` and parameter names are lower case."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)
    token68: str | None = None

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scopes(self) -> tuple[str, ...]:
        """The scopes the registry asks for (space separated in one parameter)."""
        return tuple(self.params.get("scope", "").split())

    @property
    def error(self) -> str | None:
        """`invalid_token`, `insufficient_scope`, … when the registry says why."""
        return self.params.get("error")


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip(self, chars: str) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in chars:
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def token(self) -> str | None:
        match = _TOKEN.match(self.text, self.pos)
        if match is None:
            return None
        self.pos = match.end()
        return match.group(0)

    def quoted(self) -> str | None:
        """A quoted string after the opening quote; None when it never closes."""
        out: list[str] = []
        self.pos += 1
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            if char == '"':
                self.pos += 1
                return "".join(out)
            out.append(char)
            self.pos += 1
        return None


def _param(scanner: _Scanner) -> tuple[str, str] | None:
    """`name = value` at the scanner; None (position restored) when something else is."""
    start = scanner.pos
    name = scanner.token()
    if name is not None:
        scanner.skip(_WS)
        if scanner.peek() == "=":
            scanner.pos += 1
            scanner.skip(_WS)
            value = scanner.quoted() if scanner.peek() == '"' else scanner.token()
            if value is not None:
                return name.lower(), value
    scanner.pos = start
    return None


def parse_challenges(headers: str | Iterable[str]) -> list[Challenge]:
    """Every challenge in one header value or in several; malformed parts end the parse.

    What was parsed before a malformed part is kept: a registry that appends junk after a
    valid `Bearer` challenge still gets authenticated.
    """
    values = [headers] if isinstance(headers, str) else list(headers)
    out: list[Challenge] = []
    for value in values:
        out.extend(_parse_one(value))
    return out


def _parse_one(text: str) -> list[Challenge]:
    scanner = _Scanner(text)
    out: list[Challenge] = []
    while True:
        scanner.skip(_WS + ",")
        if scanner.pos >= len(text):
            return out
        scheme = scanner.token()
        if scheme is None:
            return out
        scanner.skip(_WS)
        token68 = _TOKEN68.match(text, scanner.pos)
        start = scanner.pos
        starts_with_param = _param(scanner) is not None
        scanner.pos = start
        if token68 is not None and not starts_with_param:
            scanner.pos = token68.end()
            out.append(Challenge(scheme.lower(), {}, token68.group(0)))
            continue
        params: dict[str, str] = {}
        while True:
            param = _param(scanner)
            if param is None:
                break
            params.setdefault(*param)
            scanner.skip(_WS)
            if scanner.peek() != ",":
                break
            # Either the next parameter of this challenge or the start of the next one.
            after_comma = scanner.pos
            scanner.skip(_WS + ",")
            if _param(scanner) is None:
                scanner.pos = after_comma
                break
            scanner.pos = after_comma
            scanner.skip(_WS + ",")
        out.append(Challenge(scheme.lower(), params))
        scanner.skip(_WS)
        if scanner.pos < len(text) and scanner.peek() != ",":
            return out


def preferred(challenges: Iterable[Challenge]) -> Challenge | None:
    """The challenge to answer: Bearer (token auth) over Basic; others are not supported."""
    by_scheme = {c.scheme: c for c in reversed(list(challenges))}
    return by_scheme.get("bearer") or by_scheme.get("basic")
