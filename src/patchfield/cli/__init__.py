"""The ``patchfield`` command line: one module per subcommand in this package.

Each module defines ``register(subparsers)``, adding its parser with ``set_defaults(func=run)``;
``run(args)`` returns the exit code.

A mistake the user can fix ends in one line on stderr and exit code 2 (usage) or 1 (runtime: files,
disk, another process), as :func:`patchfield.errors.exit_code` says; a bug keeps its traceback.
``--debug`` (or ``PATCHFIELD_DEBUG=1``) shows the traceback of every error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from contextlib import contextmanager

from ..errors import exit_code, one_line
from ..logs import cli_logging
from ._common import check_numeric_options

__all__ = ["build_parser", "main"]

#: Subcommands whose ``--out`` is a folder of results, locked while they write it (``groundtruth``, ``train``
#: and ``reproduce`` lock their folders themselves, per store and run).
_LOCKED_OUT = frozenset({"analyze", "claims", "demo", "faithfulness", "figures", "stats"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="patchfield", description="Visualize and quantify patch interactions in Vision Transformers."
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of every error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}").register(sub)
    for p in sub.choices.values():
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the traceback of every error (also PATCHFIELD_DEBUG=1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    cli_logging()
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("PATCHFIELD_DEBUG", "") not in ("", "0")
    try:
        check_numeric_options(args)
    except ValueError as e:
        if debug:
            raise
        print(f"patchfield {args.command}: error: {one_line(e)}", file=sys.stderr)
        return 2
    try:
        with _out_lock(args):
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"patchfield {args.command}: interrupted; the files written so far are complete, run again to finish",
              file=sys.stderr)
        return 130
    except Exception as e:
        code = exit_code(e)
        if code is None or debug:
            raise
        hint = "; use a smaller --batch-size" if type(e).__name__ in ("OutOfMemoryError", "MemoryError") else ""
        print(f"patchfield {args.command}: error: {one_line(e)}{hint}", file=sys.stderr)
        return code


@contextmanager
def _out_lock(args: argparse.Namespace):
    """For a command of :data:`_LOCKED_OUT`: its ``--out`` locked, and its outputs wholly from this run or marked
    incomplete (:func:`patchfield.utils.io.one_run_outputs`: ``outputs.json`` written last)."""
    if args.command not in _LOCKED_OUT or getattr(args, "out", None) is None:
        yield
        return
    from ..utils.io import one_run_outputs
    from ..utils.lock import FolderLock

    with FolderLock(args.out, clean="recursive"), one_run_outputs(args.out, args.command):
        yield
