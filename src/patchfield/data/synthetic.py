"""SyntheticShapes: an embedded, procedurally generated data set with object masks.

Every image is a function of ``(seed, split, index)`` alone: a textured object of one of a few
shape classes, at a random position, scale and small rotation, on a cluttered background (colour
gradient, low-contrast stripes, distractor line segments, pixel noise). Nothing is cached on
disk; a batch of images is rendered with vectorised array operations (:meth:`SyntheticShapes.render`),
and ``DataLoader`` uses that path through ``__getitems__``.

The object's colour is random but far from the background's mean colour; the class is carried
by the object alone, by its shape and by its surface pattern (one per class), never by colour or
by the background, so a model must find the object to classify it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch

from ..introspect import IMAGENET_MEAN, IMAGENET_STD
from ._batched import GeneratedDataset

__all__ = ["SHAPE_CLASSES", "SyntheticShapes"]

SHAPE_CLASSES: tuple[str, ...] = ("disc", "square", "triangle", "cross", "ring", "diamond", "frame", "saltire")
_MAX_ROTATION = np.pi / 18  # ±10°: keeps square/diamond and cross/saltire distinct
_NUM_DISTRACTORS = 3
_CHUNK = 128


def _textures(u: np.ndarray, v: np.ndarray, kind: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Each class's surface pattern in object coordinates (``True``: first colour), ``[B, H, W]``.

    Solid, horizontal / vertical / diagonal / anti-diagonal stripes, checks, concentric rings, dots;
    periods are fractions of the object's radius, so the pattern scales with the object.
    """
    k = kind[:, None, None]
    tau = 2 * np.pi
    dots = ((u * 2.5 + phase / tau) % 1 - 0.5) ** 2 + ((v * 2.5) % 1 - 0.5) ** 2 <= 0.09
    patterns = [
        np.ones_like(u, dtype=bool),  # solid
        np.sin(tau * 2.0 * v + phase) > 0,  # horizontal stripes
        np.sin(tau * 2.0 * u + phase) > 0,  # vertical stripes
        np.sin(tau * 1.5 * u + phase) * np.sin(tau * 1.5 * v) > 0,  # checks
        np.sin(tau * 2.0 * np.sqrt(u * u + v * v) + phase) > 0,  # concentric rings
        np.sin(tau * 1.6 * (u + v) + phase) > 0,  # diagonal stripes
        ~dots,  # dots
        np.sin(tau * 1.6 * (u - v) + phase) > 0,  # anti-diagonal stripes
    ]
    out = np.zeros(u.shape, dtype=bool)
    for c, m in enumerate(patterns):
        out |= m & (k == c)
    return out


def _shape_masks(u: np.ndarray, v: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """Inside-test of each class's shape in object coordinates (``u`` right, ``v`` down, radius 1).

    Args:
        u, v: ``[B, H, W]`` coordinates, rotated and divided by the object's radius.
        kind: ``[B]`` class indices into :data:`SHAPE_CLASSES`.
    """
    k = kind[:, None, None]
    au, av = np.abs(u), np.abs(v)
    r2 = u * u + v * v
    cheb = np.maximum(au, av)
    # equilateral triangle, circumradius 1, apex up: three half-planes p·n <= 0.5
    tri = (v <= 0.5) & (0.866025 * u - 0.5 * v <= 0.5) & (-0.866025 * u - 0.5 * v <= 0.5)
    d1, d2 = np.abs(u + v) / np.sqrt(2.0), np.abs(u - v) / np.sqrt(2.0)
    shapes = [
        r2 <= 1.0,  # disc
        cheb <= 0.8,  # square
        tri,  # triangle
        ((au <= 0.3) & (av <= 1.0)) | ((av <= 0.3) & (au <= 1.0)),  # cross
        (r2 <= 1.0) & (r2 >= 0.5 ** 2),  # ring
        au + av <= 1.0,  # diamond
        (cheb <= 0.85) & (cheb >= 0.5),  # frame (hollow square)
        ((d1 <= 0.3) | (d2 <= 0.3)) & (cheb <= 0.75),  # saltire (diagonal cross)
    ]
    out = np.zeros(u.shape, dtype=bool)
    for c, m in enumerate(shapes):
        out |= m & (k == c)
    return out


class SyntheticShapes(GeneratedDataset):
    """Deterministic textured shapes on cluttered backgrounds, with object masks.

    Class ``c`` is shape ``SHAPE_CLASSES[c]`` with the ``c``-th surface pattern (solid, stripes,
    checks, rings, dots); colours, position, scale (radius 20-38 % of the side), rotation (±10°)
    and the background are random.

    Labels are balanced: image ``i`` has class ``i mod num_classes``.

    Args:
        num_images: length of the data set.
        image_size: side of the square images in pixels.
        num_classes: number of shape classes (at most ``len(SHAPE_CLASSES)``).
        seed: base seed; with ``split`` and the index it fixes every image.
        split: any name (``"train"``, ``"val"``, ...); different splits give different images.
        mean, std: normalisation of the returned tensors (ImageNet statistics by default).
        clutter: difficulty in ``[0, 1]``: scales background stripes, distractor lines and pixel noise
            (``0``: the object on a clean gradient).

    >>> ds = SyntheticShapes(8, image_size=32)
    >>> x, y = ds[5]
    >>> tuple(x.shape), y, ds.classes[y], tuple(ds.object_mask(5).shape)
    ((3, 32, 32), 1, 'square', (32, 32))
    """

    def __init__(
        self,
        num_images: int,
        image_size: int = 32,
        num_classes: int = 4,
        seed: int = 0,
        split: str = "train",
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        clutter: float = 1.0,
    ) -> None:
        if int(image_size) < 8:
            raise ValueError(f"image_size must be at least 8 pixels, got {image_size}")
        if not 2 <= int(num_classes) <= len(SHAPE_CLASSES):
            raise ValueError(f"num_classes must be in [2, {len(SHAPE_CLASSES)}], got {num_classes}")
        if not 0.0 <= float(clutter) <= 1.0:
            raise ValueError(f"clutter must be in [0, 1], got {clutter}")
        self._settings("synthetic", num_images, image_size, num_classes, seed, split, mean, std)
        self.clutter = float(clutter)
        self.classes = list(SHAPE_CLASSES[: self.num_classes])
        self.has_masks = True

    def fingerprint(self) -> str:
        """A short hash of everything that fixes the images and labels."""
        key = f"synthetic-v2|{self.num_images}|{self.image_size}|{self.num_classes}|{self.seed}|{self.split}"
        key += f"|{self.mean}|{self.std}|{self.clutter}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def _params(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """Per-image random parameters and noise, each image from its own ``(seed, split, index)`` stream."""
        s = self.image_size
        rows = []
        noise = np.empty((len(idx), s, s, 3), dtype=np.float32)
        for j, i in enumerate(idx.tolist()):
            rng = np.random.default_rng([self.seed, self._split_code, i])
            rows.append(rng.random(32))
            noise[j] = rng.standard_normal((s, s, 3), dtype=np.float32)
        p = np.stack(rows) if rows else np.zeros((0, 32))
        return {"u": p.astype(np.float32), "noise": noise}

    def render(self, indices: Sequence[int], with_object: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Render a batch: ``uint8`` images ``[B, H, W, 3]``, bool masks ``[B, H, W]``, labels ``[B]``.

        Args:
            indices: image indices.
            with_object: ``False`` renders the same images without the object (background only).
        """
        idx = self._check(indices)
        if len(idx) > _CHUNK:  # bounded working set: render in cache-friendly chunks
            parts = [self.render(idx[i:i + _CHUNK], with_object) for i in range(0, len(idx), _CHUNK)]
            return tuple(np.concatenate(a) for a in zip(*parts))  # type: ignore[return-value]
        b, s = len(idx), self.image_size
        prm = self._params(idx)
        u = prm["u"]
        labels = idx % self.num_classes
        ys, xs = np.meshgrid(np.arange(s, dtype=np.float32) + 0.5, np.arange(s, dtype=np.float32) + 0.5,
                             indexing="ij")
        xs, ys = xs[None] / s, ys[None] / s  # [1, H, W] in (0, 1)

        def col(k: int) -> np.ndarray:
            return u[:, k][:, None, None]

        # background: two-colour gradient along a random direction
        c0, c1 = u[:, 0:3], u[:, 3:6]
        ang = col(6) * 2 * np.pi
        t = np.clip(0.5 + (xs - 0.5) * np.cos(ang) + (ys - 0.5) * np.sin(ang), 0, 1)[..., None]
        img = c0[:, None, None, :] * (1 - t) + c1[:, None, None, :] * t
        # low-contrast stripes
        sang, sfreq, sphase = col(7) * np.pi, 2 + col(8) * 6, col(9) * 2 * np.pi
        stripes = np.sin(2 * np.pi * sfreq * (xs * np.cos(sang) + ys * np.sin(sang)) + sphase)
        img = img + (0.12 * self.clutter * stripes)[..., None]
        # distractor line segments (thin, colours from the background's range)
        for d in range(round(_NUM_DISTRACTORS * self.clutter)):
            k = 10 + 4 * d
            x0, y0, x1, y1 = col(k), col(k + 1), col(k + 2), col(k + 3)
            dx, dy = x1 - x0, y1 - y0
            tt = np.clip(((xs - x0) * dx + (ys - y0) * dy) / (dx * dx + dy * dy + 1e-6), 0, 1)
            dist = np.hypot(xs - (x0 + tt * dx), ys - (y0 + tt * dy)) * s
            line = (dist <= 0.6)[..., None]
            shade = c1[:, None, None, :] * (0.4 + 0.6 * col(22 + d)[..., None])
            img = np.where(line, shade, img)
        # the object
        radius = (0.2 + 0.18 * col(25)) * s  # pixels
        cx = radius + col(26) * (s - 2 * radius)
        cy = radius + col(27) * (s - 2 * radius)
        rot = (col(28) * 2 - 1) * _MAX_ROTATION
        px, py = xs * s - cx, ys * s - cy
        ou = (px * np.cos(rot) + py * np.sin(rot)) / radius
        ov = (-px * np.sin(rot) + py * np.cos(rot)) / radius
        mask = _shape_masks(ou, ov, labels)
        if with_object:
            bg_mean = (c0 + c1) / 2
            fg = np.where(bg_mean > 0.5, 0.1, 0.9) + (u[:, 29:30] - 0.5) * 0.3 * np.array([1.0, -0.6, 0.4])
            fg = np.clip(fg, 0, 1).astype(np.float32)
            fg2 = np.clip(fg * 0.5 + 0.25 * (1 - fg), 0, 1).astype(np.float32)
            tex = _textures(ou, ov, labels, col(30) * 2 * np.pi)
            obj = np.where(tex[..., None], fg[:, None, None, :], fg2[:, None, None, :])
            img = np.where(mask[..., None], obj, img)
        img = img + 0.06 * self.clutter * prm["noise"]
        out = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8).reshape(b, s, s, 3)
        return out, mask.reshape(b, s, s), labels.astype(np.int64)

    def _normalise(self, raw: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(raw).permute(0, 3, 1, 2).float() / 255.0
        mean = torch.tensor(self.mean)[None, :, None, None]
        std = torch.tensor(self.std)[None, :, None, None]
        return (x - mean) / std

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised images ``[B, 3, H, W]`` and labels ``[B]`` (long) of ``indices``, rendered at once."""
        raw, _, labels = self.render(indices)
        return self._normalise(raw), torch.from_numpy(labels)

    def object_mask(self, index: int) -> torch.Tensor:
        """Bool ``[H, W]``: the object's pixels in image ``index``."""
        return torch.from_numpy(self.render([index])[1][0])

    def raw_image(self, index: int) -> np.ndarray:
        """The ``uint8`` RGB image ``[H, W, 3]`` before normalisation."""
        return self.render([index])[0][0]

    def __repr__(self) -> str:
        return (f"SyntheticShapes(num_images={self.num_images}, image_size={self.image_size}, "
                f"num_classes={self.num_classes}, seed={self.seed}, split={self.split!r})")
