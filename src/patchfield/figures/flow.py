"""The Middlebury optical-flow colour code (Baker et al., IJCV 2011) for responsive-field tendency.

Hue encodes direction and saturation the normalised magnitude, from the standard 55-colour
wheel of six segments: red→yellow (15), yellow→green (6), green→cyan (4), cyan→blue (11),
blue→magenta (13), magenta→red (6). Directions are image directions: ``u`` to the right,
``v`` downwards. Pointing right is red, down is yellow-orange, left is cyan-blue, up is violet.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes

__all__ = ["SEGMENTS", "color_wheel", "draw_wheel_legend", "flow_to_color"]

SEGMENTS = (("RY", 15), ("YG", 6), ("GC", 4), ("CB", 11), ("BM", 13), ("MR", 6))


def color_wheel() -> np.ndarray:
    """The ``[55, 3]`` float wheel in ``[0, 255]``, segment by segment as in Baker et al.'s code.

    >>> w = color_wheel()
    >>> w.shape, w[0].tolist(), w[15].tolist(), w[21].tolist(), w[25].tolist(), w[36].tolist(), w[49].tolist()
    ((55, 3), [255.0, 0.0, 0.0], [255.0, 255.0, 0.0], [0.0, 255.0, 0.0], [0.0, 255.0, 255.0], \
[0.0, 0.0, 255.0], [255.0, 0.0, 255.0])
    """
    counts = dict(SEGMENTS)
    wheel = np.zeros((sum(counts.values()), 3))
    ramp = {name: np.floor(255 * np.arange(n) / n) for name, n in SEGMENTS}
    col = 0
    for name, n in SEGMENTS:
        rise, fall = ramp[name], 255 - ramp[name]
        block = wheel[col:col + n]
        if name == "RY":
            block[:, 0], block[:, 1] = 255, rise
        elif name == "YG":
            block[:, 0], block[:, 1] = fall, 255
        elif name == "GC":
            block[:, 1], block[:, 2] = 255, rise
        elif name == "CB":
            block[:, 1], block[:, 2] = fall, 255
        elif name == "BM":
            block[:, 2], block[:, 0] = 255, rise
        else:  # MR
            block[:, 2], block[:, 0] = fall, 255
        col += n
    return wheel


def flow_to_color(u, v, max_magnitude: float | None = None) -> np.ndarray:
    """Colour flow vectors ``(u, v)`` (any equal shapes) as ``uint8`` RGB ``[..., 3]``.

    Args:
        u, v: horizontal (right) and vertical (down) components.
        max_magnitude: magnitude shown fully saturated; the largest magnitude by default.
            Zero vectors are white.

    >>> flow_to_color(np.array([1.0, 0.0]), np.array([0.0, 0.0])).tolist()
    [[255, 0, 0], [255, 255, 255]]
    """
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64) + 0.0  # -0.0 -> +0.0: pointing right is always hue 0
    if u.shape != v.shape:
        raise ValueError(f"u and v must have the same shape, got {u.shape} and {v.shape}")
    if not (np.isfinite(u).all() and np.isfinite(v).all()):
        raise ValueError("flow holds NaN or Inf values")
    rad = np.hypot(u, v)
    top = float(rad.max()) if max_magnitude is None and rad.size else float(max_magnitude or 0.0)
    if top > 0:
        u, v, rad = u / top, v / top, rad / top
    wheel = color_wheel() / 255.0
    ncols = len(wheel)
    a = np.arctan2(-v, -u) / np.pi
    fk = (a + 1) / 2 * (ncols - 1)
    k0 = np.floor(fk).astype(int)
    k1 = np.where(k0 + 1 == ncols, 0, k0 + 1)
    f = (fk - k0)[..., None]
    col = (1 - f) * wheel[k0] + f * wheel[k1]
    inside = (rad <= 1)[..., None]
    col = np.where(inside, 1 - rad[..., None] * (1 - col), col * 0.75)
    return np.floor(255 * col + 0.5).astype(np.uint8)


def draw_wheel_legend(ax: Axes, size: int = 101, title: str = "direction (hue),\nmagnitude (saturation)") -> None:
    """Draw the colour wheel on ``ax`` with the four axis directions labelled (y down, as in images)."""
    r = np.linspace(-1, 1, size)
    u, v = np.meshgrid(r, r)
    rgb = flow_to_color(u, v, max_magnitude=1.0)
    rgba = np.concatenate([rgb, np.where(np.hypot(u, v) <= 1, 255, 0).astype(np.uint8)[..., None]], axis=-1)
    ax.imshow(rgba, extent=(-1, 1, 1, -1), interpolation="bilinear")
    for text, (x, y) in {"right": (1.08, 0), "left": (-1.08, 0), "down": (0, 1.12), "up": (0, -1.12)}.items():
        ax.text(x, y, text, ha="center", va="center", fontsize=7,
                rotation=90 if text in ("left", "right") else 0)
    ax.set_xlim(-1.3, 1.3)
    ax.set_ylim(1.3, -1.3)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=8)
