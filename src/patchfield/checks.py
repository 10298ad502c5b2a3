"""Argument checks shared by the library and the command line: one rule per kind of value.

Each check returns the value converted (``float``/``int``) or raises ``ValueError`` with one line
that names the argument and the range it must lie in.
"""

from __future__ import annotations

__all__ = ["check_alpha", "check_beta", "check_positive_int", "check_rates"]


def check_alpha(alpha: float, name: str = "alpha") -> float:
    """``alpha``, the share of ``U``'s entries that shape the windows, in ``(0, 1]``.

    >>> check_alpha(0.1)
    0.1
    >>> check_alpha(0)
    Traceback (most recent call last):
    ValueError: alpha must be in (0, 1], got 0
    """
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in (0, 1], got {alpha!r}") from None
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {alpha}")
    return value


def check_beta(beta: float, name: str = "beta") -> float:
    """``beta``, the share of patches dropped as indiscriminative, in ``[0, 1)``.

    >>> check_beta(0.0), check_beta(0.5)
    (0.0, 0.5)
    """
    try:
        value = float(beta)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1), got {beta!r}") from None
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {beta}")
    return value


def check_rates(alpha: float, *betas: float, prefix: str = "") -> None:
    """:func:`check_alpha` and :func:`check_beta` on each value; ``prefix="--"`` names CLI options."""
    check_alpha(alpha, f"{prefix}alpha")
    for beta in betas:
        check_beta(beta, f"{prefix}beta")


def check_positive_int(value: int, name: str) -> int:
    """A whole number of at least 1 (batch sizes, counts, steps).

    >>> check_positive_int(4, "batch size")
    4
    """
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, got {value}")
    return int(value)
