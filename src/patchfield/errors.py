"""The errors a user can cause, and the exit code the command line gives each.

Library code raises ``ValueError`` (a bad argument or input) and ``FileNotFoundError`` (a missing file)
for what the user can fix by changing the command; :class:`UsageError` and :class:`InputError` make the
distinction explicit where it matters. Anything else (``TypeError``, ``KeyError`` ...) is a bug and keeps
its traceback.

======================================================  =========
error                                                   exit code
======================================================  =========
``UsageError`` (``UnsupportedModelError``),              2 (usage: change the command)
``ValueError``, ``FileNotFoundError``
``InputError``, ``OSError``, ``FolderLockedError``,     1 (runtime: the files, the disk, another
``ImportError``, ``FloatingPointError``, out of memory  process or the environment)
======================================================  =========
"""

from __future__ import annotations

__all__ = ["InputError", "UnsupportedModelError", "UsageError", "exit_code", "one_line"]


class UsageError(ValueError):
    """The command line or the call asks for something impossible (exit code 2)."""


class UnsupportedModelError(UsageError, TypeError):
    """A model patchfield cannot read or patch (no ViT attention, not a timm VisionTransformer): the user passed
    the wrong model, so the command line gives one line and exit code 2. A ``TypeError`` too, for callers
    that catch it as such."""


class InputError(ValueError):
    """An input file holds something unusable (NaN weights, a corrupt store ...) (exit code 1)."""


def exit_code(error: BaseException) -> int | None:
    """The command line's exit code for ``error``, or ``None`` for a bug (show the traceback).

    >>> exit_code(ValueError("x")), exit_code(PermissionError("x")), exit_code(TypeError("x"))
    (2, 1, None)
    """
    from .utils.lock import FolderLockedError

    if isinstance(error, InputError):
        return 1
    if isinstance(error, (UsageError, ValueError, FileNotFoundError)):
        return 2
    if isinstance(error, (OSError, FolderLockedError, ImportError, FloatingPointError, MemoryError)):
        return 1
    if type(error).__name__ == "OutOfMemoryError":  # torch's (CUDA) out of memory: a smaller batch helps
        return 1
    return None


def one_line(error: BaseException) -> str:
    """``str(error)`` on one line (a multi-line message joined with ``; ``); the type's name when empty.

    >>> one_line(ValueError("first\\n  second"))
    'first; second'
    """
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    return "; ".join(lines) or type(error).__name__
