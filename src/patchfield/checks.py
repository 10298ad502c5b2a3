"""Argument checks shared by the library and the command line: one rule per kind of value.

Each check returns the value converted (``float``/``int``) or raises ``ValueError`` with one line
that names the argument and the range it must lie in.
"""

from __future__ import annotations

import math

__all__ = ["check_alpha", "check_beta", "check_finite", "check_image_size", "check_nonnegative_int",
           "check_positive_int", "check_rates", "check_seed"]


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
    if not _is_whole(value) or int(value) < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, got {value}")
    return int(value)


def _is_whole(value: object) -> bool:
    if isinstance(value, bool):
        return False
    try:
        return int(value) == value  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return False


def check_nonnegative_int(value: int, name: str) -> int:
    """A whole number of at least 0 (workers, warm-up steps, patch indices).

    >>> check_nonnegative_int(0, "workers")
    0
    >>> check_nonnegative_int(-1, "--workers")
    Traceback (most recent call last):
    ValueError: --workers must be a whole number of at least 0, got -1
    """
    if not _is_whole(value) or int(value) < 0:
        raise ValueError(f"{name} must be a whole number of at least 0, got {value}")
    return int(value)


#: The most random-weights controls of ``measure_claims`` (``--random-inits``): each is one more analysis pass over
#: every image, and the mean over more than a hundred initialisations no longer moves the comparison.
MAX_RANDOM_INITS = 100


def check_random_inits(value: int, name: str = "random_inits") -> int:
    """A count of random-weights controls: a whole number from 1 to :data:`MAX_RANDOM_INITS`.

    >>> check_random_inits(10**9, "--random-inits")
    Traceback (most recent call last):
    ValueError: --random-inits must be at most 100 (each control is one more pass over every image), got 1000000000
    """
    value = check_positive_int(value, name)
    if value > MAX_RANDOM_INITS:
        raise ValueError(f"{name} must be at most {MAX_RANDOM_INITS} (each control is one more pass over every "
                         f"image), got {value}")
    return value


def check_seed(value: int, name: str = "seed") -> int:
    """A random seed every generator accepts (torch, numpy, Python): a whole number in ``[0, 2**32)``.

    >>> check_seed(2**32, "--seed")
    Traceback (most recent call last):
    ValueError: --seed must be a whole number in [0, 2**32), got 4294967296
    """
    if not _is_whole(value) or not 0 <= int(value) < 2**32:
        raise ValueError(f"{name} must be a whole number in [0, 2**32), got {value}")
    return int(value)


def check_finite(value: float, name: str, low: float = 0.0, *, strict: bool = False) -> float:
    """A finite number ``>= low`` (``> low`` with ``strict``): learning rates, weights of losses, epochs.

    >>> check_finite(0.5, "lr", strict=True)
    0.5
    >>> check_finite(float("nan"), "--lr", strict=True)
    Traceback (most recent call last):
    ValueError: --lr must be a finite number greater than 0.0, got nan
    """
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    ok = math.isfinite(v) and (v > low if strict else v >= low)
    if not ok:
        raise ValueError(f"{name} must be a finite number {'greater than' if strict else 'of at least'} {low}, "
                         f"got {value}")
    return v


def check_image_size(size: int | tuple[int, int], patch: int | tuple[int, int], name: str = "image size") -> None:
    """``ValueError`` unless each side of ``size`` is a positive multiple of the patch size.

    >>> check_image_size(32, 8)
    >>> check_image_size((30, 32), 8, "--image-size")
    Traceback (most recent call last):
    ValueError: --image-size 30x32 is not a multiple of the patch size 8: use a multiple, e.g. 32
    """
    sizes = (size, size) if isinstance(size, int) else tuple(size)
    patches = (patch, patch) if isinstance(patch, int) else tuple(patch)
    if any(int(s) < 1 or int(s) % int(p) for s, p in zip(sizes, patches)):
        shown = "x".join(str(s) for s in sizes) if sizes[0] != sizes[1] else str(sizes[0])
        step = "x".join(str(p) for p in patches) if patches[0] != patches[1] else str(patches[0])
        near = max(int(patches[0]), round(int(sizes[0]) / int(patches[0])) * int(patches[0]))
        raise ValueError(f"{name} {shown} is not a multiple of the patch size {step}: use a multiple, e.g. {near}")
