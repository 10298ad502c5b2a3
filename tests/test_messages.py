"""Messages: library diagnostics go through logging; the command line shows them as plain stderr lines."""

from __future__ import annotations

import logging

from patchfield.logs import cli_logging


def test_cli_logging_prints_plain_lines_once(capsys):
    logger = logging.getLogger("patchfield.training.loop")
    root = logging.getLogger("patchfield")
    before = list(root.handlers), root.level
    try:
        cli_logging()
        cli_logging()  # idempotent: one handler
        logger.info("resuming %s at step %d of %d", "runs/x", 4, 10)
        logging.getLogger("other").info("not ours")
        captured = capsys.readouterr()
        assert captured.err == "resuming runs/x at step 4 of 10\n" and captured.out == ""
    finally:
        root.handlers[:] = before[0]
        root.setLevel(before[1])
