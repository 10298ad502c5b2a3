"""FormulaContours: a generated pretraining source, radial contours in the manner of RCDB.

Formula-driven supervised learning (Kataoka et al., CVPR 2022, "Replacing Labeled Real-image
Datasets with Auto-generated Contours") pretrains ViTs on images drawn from formulas alone; its
Radial Contour DataBase (RCDB) draws several concentric copies of a polygon whose vertices are
perturbed by noise, and defines each class by the generation parameters (number of vertices,
the noise). ViTs pretrained on RCDB come close to ImageNet-21k pretraining. This module is that
recipe at the study's scale (32×32 inputs, 4×4 and 8×8 patches):

- **Class** ``c`` fixes a polygon: ``3 + c mod 10`` vertices at evenly spaced angles, and each
  vertex's radius factor ``1 + 0.35·z`` with ``z ~ U(-1, 1)`` drawn from the class's own stream
  ``(seed, c)`` (the radial noise of RCDB's vertices). Every split shares the classes.
- **Each image** draws 2 to 4 concentric contours of that polygon (radii evenly spaced up to
  30-45 % of the side), at a random rotation, centre offset and line width (1.2-2.2 px at 32 px,
  anti-aliased), with a small per-image jitter of the vertex radii (±0.06), bright lines of a random
  tint on a dark background of a random hue (RCDB draws bright contours on black; in a short trial a
  from-scratch ViT left chance much sooner with this fixed polarity and lines over a pixel wide than
  with random polarities and thinner lines). The class lives in the contour's shape alone, never in
  colour, position, size or rotation.

Why this source and not a larger many-class family of the embedded generator
(:mod:`patchfield.data.synthetic`): the pretrained start stands in for ImageNet-21k, which is not
the target; a family of the embedded generator shares its backgrounds, clutter, textures and
object placement with the embedded target set, so fine-tuning "from pretraining" would partly be
training on the target. Radial contours share nothing with either target (textured shapes on
clutter; Fashion-MNIST's grey garments) beyond generic shape and edge statistics, which is the
transfer FDSL relies on. Kataoka et al. use 1,000 classes at 224 px; at 32 px most of those would
differ by less than a pixel, so the default here is 100 classes (10 vertex counts × 10 radial
noise patterns).

Images are a function of ``(seed, split, index)`` alone; a batch renders with vectorised array
operations (no loop over pixels), any size from 16 pixels up.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np
import torch

from ..introspect import IMAGENET_MEAN, IMAGENET_STD
from ._batched import GeneratedDataset

__all__ = ["FORMULA_DEFAULT_CLASSES", "FormulaContours"]

FORMULA_DEFAULT_CLASSES = 100
_VERTEX_COUNTS = 10  # classes cycle through 3 .. 12 vertices
_MAX_VERTICES = 3 + _VERTEX_COUNTS - 1
_CLASS_NOISE = 0.35  # class radial noise of the vertices
_IMAGE_JITTER = 0.06  # per-image jitter of the vertex radii
_CLASS_STREAM = 0x5EED  # the classes' random stream, apart from every split's
_CHUNK = 128


def polygon_radius(theta: torch.Tensor, radii: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Radius of a closed polygon along direction ``theta``: vertices at angles ``2πk/n`` with radii ``radii[k]``.

    The edge from vertex ``k`` to ``k + 1`` is the straight line through them; in polar coordinates it is
    ``r(θ) = r_k r_{k+1} sin Δ / (r_k sin(θ - θ_k) + r_{k+1} sin(θ_{k+1} - θ))`` with ``Δ = 2π/n``.

    Args:
        theta: ``[B, H, W]`` angles in radians (any range).
        radii: ``[B, V]`` vertex radii; only the first ``count[b]`` of row ``b`` are used.
        count: ``[B]`` number of vertices ``n >= 3`` (integer).

    >>> th = torch.tensor([[[0.0, math.pi / 4]]], dtype=torch.float64)  # on a vertex; half-way along an edge
    >>> polygon_radius(th, torch.ones(1, 4, dtype=torch.float64), torch.tensor([4])).round(decimals=4).tolist()
    [[[1.0, 0.7071]]]
    """
    b = theta.shape[0]
    n = count.to(torch.long).view(b, 1, 1)
    step = (2 * math.pi) / n.to(theta.dtype)
    t = torch.remainder(theta, 2 * math.pi)
    k = torch.minimum(torch.floor(t / step).to(torch.long), n - 1)
    k1 = torch.where(k + 1 >= n, torch.zeros_like(k), k + 1)
    r0 = torch.gather(radii, 1, k.reshape(b, -1)).reshape(theta.shape)
    r1 = torch.gather(radii, 1, k1.reshape(b, -1)).reshape(theta.shape)
    a = t - k.to(theta.dtype) * step  # angle past vertex k, in [0, step)
    return r0 * r1 * torch.sin(step) / (r0 * torch.sin(a) + r1 * torch.sin(step - a))


class FormulaContours(GeneratedDataset):
    """Radial contours (RCDB-style formula-driven images): the class is the polygon, everything else varies.

    Labels are balanced: image ``i`` has class ``i mod num_classes``.

    Args:
        num_images: length of the data set.
        image_size: side of the square images in pixels (16 or more).
        num_classes: number of polygon classes (2 or more).
        seed: base seed; it fixes the classes, and with ``split`` and the index every image.
        split: any name (``"train"``, ``"val"``, ...); different splits give different images of the same classes.
        mean, std: normalisation of the returned tensors (ImageNet statistics by default).

    >>> ds = FormulaContours(200, image_size=32)
    >>> x, y = ds[103]
    >>> tuple(x.shape), y, ds.classes[y], ds.vertices(y)
    ((3, 32, 32), 3, 'contour-003', 6)
    """

    def __init__(
        self,
        num_images: int,
        image_size: int = 32,
        num_classes: int = FORMULA_DEFAULT_CLASSES,
        seed: int = 0,
        split: str = "train",
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        if int(image_size) < 16:
            raise ValueError(f"image_size must be at least 16 pixels, got {image_size}")
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        self._settings("formula", num_images, image_size, num_classes, seed, split, mean, std)
        self.classes = [f"contour-{c:03d}" for c in range(self.num_classes)]
        self.has_masks = False
        c = torch.arange(self.num_classes)
        self._counts = 3 + c % _VERTEX_COUNTS
        noise = np.stack([np.random.default_rng([self.seed, _CLASS_STREAM, k]).uniform(-1, 1, _MAX_VERTICES)
                          for k in range(self.num_classes)])
        self._radii = (1.0 + _CLASS_NOISE * torch.from_numpy(noise)).float()  # [C, V]: the first count[c] matter

    def fingerprint(self) -> str:
        """A short hash of everything that fixes the images and labels."""
        key = f"formula-v1|{self.num_images}|{self.image_size}|{self.num_classes}|{self.seed}|{self.split}"
        key += f"|{self.mean}|{self.std}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def vertices(self, label: int) -> int:
        """Number of polygon vertices of class ``label``."""
        return int(self._counts[int(label)])

    def _render(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``uint8`` images ``[B, H, W, 3]`` and labels ``[B]`` (long) as tensors."""
        idx = self._check(indices)
        if len(idx) > _CHUNK:  # bounded working set
            parts = [self._render(idx[i:i + _CHUNK]) for i in range(0, len(idx), _CHUNK)]
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        s = self.image_size
        labels = torch.from_numpy(idx % self.num_classes)
        rows = [np.random.default_rng([self.seed, self._split_code, int(i)]).random(12 + _MAX_VERTICES)
                for i in idx.tolist()]
        u = torch.from_numpy(np.stack(rows) if rows else np.zeros((0, 12 + _MAX_VERTICES))).float()
        radii = self._radii[labels] * (1.0 + _IMAGE_JITTER * (2 * u[:, 12:] - 1))  # [B, V]

        def col(k: int) -> torch.Tensor:
            return u[:, k, None, None]

        contours = 2 + torch.floor(col(0) * 3)  # 2, 3 or 4 concentric copies
        outer = (0.30 + 0.15 * col(1)) * s  # pixels, the outermost copy's mean radius
        width = (1.2 + 1.0 * col(2)) * max(1.0, s / 32)  # 1.2-2.2 px at 32 px, in proportion above
        rot = col(3) * (2 * math.pi)
        slack = torch.clamp(0.5 * s - outer * (1 + _CLASS_NOISE + _IMAGE_JITTER), min=0.0)
        cx = 0.5 * s + (2 * col(4) - 1) * slack
        cy = 0.5 * s + (2 * col(5) - 1) * slack
        grid = torch.arange(s, dtype=torch.float32) + 0.5
        dx, dy = grid[None, None, :] - cx, grid[None, :, None] - cy  # [B, 1, W], [B, H, 1]
        dx, dy = torch.broadcast_tensors(dx, dy)
        rho = torch.hypot(dx, dy)
        shape = polygon_radius(torch.atan2(dy, dx) - rot, radii, self._counts[labels])  # [B, H, W], mean about 1
        gap = outer / contours
        j = torch.minimum(torch.clamp(torch.round(rho / (shape * gap)), min=1.0), contours)  # nearest copy, 1..J
        dist = torch.abs(rho - j * gap * shape)
        ink = torch.clamp(0.5 * width + 0.5 - dist, 0.0, 1.0)[..., None]  # anti-aliased line coverage
        bg = 0.35 * u[:, 6:9]  # a dark background of any hue
        line = 0.75 + 0.25 * u[:, 9:12]  # a bright line of any tint: the polarity of RCDB's contours
        img = bg[:, None, None, :] * (1 - ink) + line[:, None, None, :] * ink
        return torch.round(img * 255).clamp(0, 255).to(torch.uint8), labels

    def render(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Render a batch: ``uint8`` images ``[B, H, W, 3]`` and labels ``[B]`` (int64) as arrays."""
        raw, labels = self._render(indices)
        return raw.numpy(), labels.numpy()

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised images ``[B, 3, H, W]`` and labels ``[B]`` (long) of ``indices``, rendered at once."""
        raw, labels = self._render(indices)
        x = raw.permute(0, 3, 1, 2).float() / 255.0
        mean = torch.tensor(self.mean)[None, :, None, None]
        std = torch.tensor(self.std)[None, :, None, None]
        return (x - mean) / std, labels

    def raw_image(self, index: int) -> np.ndarray:
        """The ``uint8`` RGB image ``[H, W, 3]`` before normalisation."""
        return self.render([index])[0][0]

    def __repr__(self) -> str:
        return (f"FormulaContours(num_images={self.num_images}, image_size={self.image_size}, "
                f"num_classes={self.num_classes}, seed={self.seed}, split={self.split!r})")
