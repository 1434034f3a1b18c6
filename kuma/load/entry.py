"""kuma-load's console script. A plain ``pip install`` of kuma-py leaves out the harness's own
dependencies (the ``load`` extra: psutil for CPU and RSS, matplotlib for the plots), so the
script checks for them before importing anything that needs them, and names the extra."""

from __future__ import annotations

import importlib.util
import sys

#: The modules of the ``load`` extra in pyproject.toml.
LOAD_EXTRA = ("psutil", "matplotlib")


def missing_modules() -> list[str]:
    return [name for name in LOAD_EXTRA if importlib.util.find_spec(name) is None]


def main(argv: list[str] | None = None) -> int:
    missing = missing_modules()
    if missing:
        print(
            f"kuma-load needs {' and '.join(missing)}, from kuma-py's 'load' extra: "
            "pip install -e '.[load]' (in a clone) or pip install 'kuma-py[load]'",
            file=sys.stderr,
        )
        return 2
    from .cli import main as run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
