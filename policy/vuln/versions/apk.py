"""Alpine package versions as apk orders them.

Grammar: `digit{.digit}...{letter}{_suffix{number}}...{~hash}{-rN}`. Pre-release
suffixes (`_alpha` < `_beta` < `_pre` < `_rc`) sort before the bare version, the
others (`_cvs`, `_svn`, `_git`, `_hg`, `_p`) after it; a dotted component with a
leading zero compares as a string (Gentoo's rule), everything else numerically.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum

from policy.vuln.versions.errors import VersionError


class _Kind(IntEnum):
    INITIAL_DIGIT = 0
    DIGIT = 1
    LETTER = 2
    SUFFIX = 3
    SUFFIX_NO = 4
    COMMIT_HASH = 5
    REVISION_NO = 6
    END = 7


_SUFFIXES = {
    "alpha": 1,
    "beta": 2,
    "pre": 3,
    "rc": 4,
    "cvs": 6,
    "svn": 7,
    "git": 8,
    "hg": 9,
    "p": 10,
}
_NO_SUFFIX = 5
_DIGITS = re.compile(r"[0-9]+")
_LOWER = re.compile(r"[a-z]*")
_HEX = re.compile(r"[0-9a-fA-F]+")


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _Kind
    text: str
    number: int = 0


def tokens(version: str) -> list[_Token]:
    """Split a version into apk's tokens; refuse anything apk would call invalid."""
    match = _DIGITS.match(version)
    if not match:
        raise VersionError("apk", version, "must start with a digit")
    out = [_Token(_Kind.INITIAL_DIGIT, match.group(), int(match.group()))]
    pos = match.end()
    while pos < len(version):
        prev = out[-1].kind
        c = version[pos]
        if "a" <= c <= "z" and prev <= _Kind.DIGIT:
            out.append(_Token(_Kind.LETTER, c))
            pos += 1
        elif (c == "." and prev <= _Kind.DIGIT) or (c.isdigit() and prev == _Kind.SUFFIX):
            start = pos + 1 if c == "." else pos
            digits = _DIGITS.match(version, start)
            if not digits:
                raise VersionError("apk", version, f"expected digits at position {start}")
            kind = _Kind.DIGIT if c == "." else _Kind.SUFFIX_NO
            out.append(_Token(kind, digits.group(), int(digits.group())))
            pos = digits.end()
        elif c == "_" and prev <= _Kind.SUFFIX_NO:
            name = _LOWER.match(version, pos + 1)
            text = name.group() if name else ""
            if text not in _SUFFIXES:
                raise VersionError("apk", version, f"unknown suffix _{text}")
            out.append(_Token(_Kind.SUFFIX, text, _SUFFIXES[text]))
            pos += 1 + len(text)
        elif c == "~" and prev < _Kind.COMMIT_HASH:
            digits = _HEX.match(version, pos + 1)
            if not digits:
                raise VersionError("apk", version, "empty commit hash after ~")
            out.append(_Token(_Kind.COMMIT_HASH, digits.group()))
            pos = digits.end()
        elif version.startswith("-r", pos) and prev < _Kind.REVISION_NO:
            digits = _DIGITS.match(version, pos + 2)
            if not digits:
                raise VersionError("apk", version, "revision -r needs a number")
            out.append(_Token(_Kind.REVISION_NO, digits.group(), int(digits.group())))
            pos = digits.end()
        else:
            raise VersionError("apk", version, f"unexpected {c!r} at position {pos}")
    return out


def _cmp_int(a: int, b: int) -> int:
    return (a > b) - (a < b)


def _cmp_str(a: str, b: str) -> int:
    return (a > b) - (a < b)


def _token_cmp(a: _Token, b: _Token) -> int:
    if a.kind == _Kind.DIGIT and (a.text.startswith("0") or b.text.startswith("0")):
        return _cmp_str(a.text, b.text)
    if a.kind in (_Kind.LETTER, _Kind.COMMIT_HASH):
        return _cmp_str(a.text, b.text)
    return _cmp_int(a.number, b.number)


def compare(a: str, b: str) -> int:
    """-1, 0 or 1 as `apk version -t a b` would order `a` and `b`."""
    ta, tb = tokens(a), tokens(b)
    end = _Token(_Kind.END, "")
    for i in range(max(len(ta), len(tb))):
        x = ta[i] if i < len(ta) else end
        y = tb[i] if i < len(tb) else end
        if x.kind != y.kind:
            if x.kind == _Kind.SUFFIX and x.number < _NO_SUFFIX:
                return -1
            if y.kind == _Kind.SUFFIX and y.number < _NO_SUFFIX:
                return 1
            return -1 if x.kind > y.kind else 1
        if x.kind == _Kind.END:
            return 0
        r = _token_cmp(x, y)
        if r:
            return r
    return 0
