"""Package attributes loaded on first use (PEP 562), so importing one small module of a
package (e.g. the version parsers the mirror CLI needs) does not load all of it."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def exports(package: str, providers: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package` that imports `providers[name]` when `name`
    is first asked for, and keeps it as an ordinary attribute afterwards."""

    def attribute(name: str) -> Any:
        module = providers.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return attribute
