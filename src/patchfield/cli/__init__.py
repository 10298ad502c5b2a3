"""The ``patchfield`` command line: one module per subcommand in this package.

Each module defines ``register(subparsers)``, adding its parser with ``set_defaults(func=run)``;
``run(args)`` returns the exit code.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="patchfield", description="Visualize and quantify patch interactions in Vision Transformers."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, TypeError, ImportError) as e:
        print(f"patchfield {args.command}: error: {e}", file=sys.stderr)
        return 2
