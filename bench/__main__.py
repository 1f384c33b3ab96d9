"""`python -m bench [name …] [--options]`: run benchmarks by module name (default: all);
options after the names go to each of them.

Each benchmark module runs as its own `__main__` with default arguments.
"""

from __future__ import annotations

import pkgutil
import runpy
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = [m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_")]
    split = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    chosen, rest = argv[:split] or sorted(names), argv[split:]
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {sorted(names)}", file=sys.stderr)
        return 2
    for name in chosen:
        print(f"== {name}", flush=True)
        sys.argv = [f"bench.{name}", *rest]
        try:
            runpy.run_module(f"bench.{name}", run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            if exc.code:
                return int(exc.code) if isinstance(exc.code, int) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
