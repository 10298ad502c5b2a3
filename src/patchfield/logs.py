"""How patchfield speaks: diagnostics through ``logging``, progress bars on stderr, results on stdout.

Every module logs to ``logging.getLogger(__name__)`` (children of the ``patchfield`` logger) and
adds no handler; without one, Python shows warnings and errors on stderr. The command line calls
:func:`cli_logging` so that informational messages (``resuming run ... at step ...``) show too.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["cli_logging"]


class _StderrHandler(logging.StreamHandler):
    """A handler that writes plain lines to whatever ``sys.stderr`` is when a message is logged."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        logging.Handler.__init__(self, level)
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # logging may try to set it; the current stderr is always used
        pass


def cli_logging(level: int = logging.INFO) -> None:
    """Show ``patchfield`` messages of ``level`` and above on stderr, one plain line each (idempotent)."""
    logger = logging.getLogger("patchfield")
    logger.setLevel(level)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
