"""Maven versions ordered like Maven 3.8's `ComparableVersion`.

A version is a list of items: numbers, qualifiers and sub-lists (a `-` or a
letter/digit change opens a sub-list). Known qualifiers order
alpha < beta < milestone < rc = cr < snapshot < "" = ga = final = release < sp,
unknown ones come after them alphabetically; trailing zeros and release qualifiers
are dropped, so `1.0.0` == `1` == `1-ga`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from policy.vuln.versions.errors import VersionError

_QUALIFIERS = ("alpha", "beta", "milestone", "rc", "snapshot", "", "sp")
_ALIASES = {"ga": "", "final": "", "release": "", "cr": "rc"}
_RELEASE_INDEX = str(_QUALIFIERS.index(""))
_MAX_LENGTH = 256


@dataclass(frozen=True, slots=True)
class _Int:
    value: int

    def is_null(self) -> bool:
        return self.value == 0


@dataclass(frozen=True, slots=True)
class _Str:
    value: str

    def is_null(self) -> bool:
        return _comparable(self.value) == _RELEASE_INDEX


@dataclass(slots=True)
class _List:
    items: list[_Item] = field(default_factory=list)

    def is_null(self) -> bool:
        return not self.items

    def normalize(self) -> None:
        """Drop trailing null items (0, "", empty lists) up to the first real value."""
        for i in range(len(self.items) - 1, -1, -1):
            item = self.items[i]
            if item.is_null():
                del self.items[i]
            elif not isinstance(item, _List):
                break


_Item = _Int | _Str | _List


def _comparable(qualifier: str) -> str:
    if qualifier in _QUALIFIERS:
        return str(_QUALIFIERS.index(qualifier))
    return f"{len(_QUALIFIERS)}-{qualifier}"


def _string_item(text: str, followed_by_digit: bool) -> _Str:
    if followed_by_digit and len(text) == 1:
        text = {"a": "alpha", "b": "beta", "m": "milestone"}.get(text, text)
    return _Str(_ALIASES.get(text, text))


def _item(is_digit: bool, text: str) -> _Item:
    return _Int(int(text)) if is_digit else _string_item(text, False)


def parse(version: str) -> _List:
    """Parse into ComparableVersion's item tree."""
    if not version.strip():
        raise VersionError("maven", version, "empty version")
    if len(version) > _MAX_LENGTH:
        raise VersionError("maven", version, f"longer than {_MAX_LENGTH} characters")
    if any(c.isspace() for c in version):
        raise VersionError("maven", version, "contains whitespace")
    text = version.lower()
    root = current = _List()
    stack = [root]
    is_digit = False
    start = 0

    def open_sublist() -> _List:
        sub = _List()
        current.items.append(sub)
        stack.append(sub)
        return sub

    for i, c in enumerate(text):
        if c in ".-":
            current.items.append(_Int(0) if i == start else _item(is_digit, text[start:i]))
            start = i + 1
            if c == "-":
                current = open_sublist()
        elif "0" <= c <= "9":
            if not is_digit and i > start:
                if current.items:  # "1.0.0.X1" < "1.0.0-X2": a dotted qualifier opens a list
                    current = open_sublist()
                current.items.append(_string_item(text[start:i], True))
                start = i
                current = open_sublist()
            is_digit = True
        else:
            if is_digit and i > start:
                current.items.append(_item(True, text[start:i]))
                start = i
                current = open_sublist()
            is_digit = False
    if len(text) > start:
        if not is_digit and current.items:
            current = open_sublist()
        current.items.append(_item(is_digit, text[start:]))
    for sub in reversed(stack):
        sub.normalize()
    return root


def _cmp_str(a: str, b: str) -> int:
    return (a > b) - (a < b)


def _cmp(a: _Item | None, b: _Item | None) -> int:
    """ComparableVersion's Item.compareTo, `None` standing for a missing item."""
    if a is None:
        return 0 if b is None else -_cmp(b, None)
    if isinstance(a, _Int):
        if b is None:
            return 0 if a.value == 0 else 1
        if isinstance(b, _Int):
            return (a.value > b.value) - (a.value < b.value)
        return 1
    if isinstance(a, _Str):
        if b is None:
            return _cmp_str(_comparable(a.value), _RELEASE_INDEX)
        if isinstance(b, _Str):
            return _cmp_str(_comparable(a.value), _comparable(b.value))
        return -1
    if b is None:
        for item in a.items:
            result = _cmp(item, None)
            if result:
                return result
        return 0
    if isinstance(b, _Int):
        return -1
    if isinstance(b, _Str):
        return 1
    for i in range(max(len(a.items), len(b.items))):
        left = a.items[i] if i < len(a.items) else None
        right = b.items[i] if i < len(b.items) else None
        result = _cmp(left, right)
        if result:
            return result
    return 0


def compare(a: str, b: str) -> int:
    """-1, 0 or 1 as Maven orders `a` and `b`."""
    return _cmp(parse(a), parse(b))
