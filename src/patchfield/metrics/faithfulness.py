"""Deletion and insertion curves for patch orderings (beyond the paper).

Patches are removed from the image (deletion) or revealed on a baseline (insertion) in the
order of an importance ranking, most important first, and the model's probability of the
target class is recorded after every step. A faithful ranking makes the deletion curve fall
fast (low area) and the insertion curve rise fast (high area). Orderings compared: by DIP's
column variance of ``U`` (highest first: the patches DIP keeps longest), random, and attention
rollout as a reference.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as Fn
from torch import nn
from tqdm import tqdm

from ..capture import capture_attention
from ..dip import column_variance
from ..errors import UsageError
from ..grid import Grid, pixel_cells, round_half_up
from ..introspect import is_classifier, is_huggingface, model_family, required_forward_kwargs, unwrap
from ..uncertainty import interaction_uncertainty
from .rollout import rollout_scores

__all__ = [
    "METHODS",
    "FaithfulnessResult",
    "auc",
    "baseline_images",
    "deletion_insertion",
    "dip_ordering",
    "evaluate_faithfulness",
    "order_by_scores",
    "random_ordering",
]

METHODS = ("dip", "random", "rollout")


def auc(curve, x=None) -> np.ndarray:
    """Area under curves by the trapezoidal rule over ``x`` (default: ``S`` steps evenly in ``[0, 1]``).

    Args:
        curve: ``[..., S]`` values.
        x: ``[S]`` increasing abscissae.

    >>> float(auc([1.0, 0.5, 0.0]))
    0.5
    """
    y = np.asarray(curve, dtype=np.float64)
    if y.shape[-1] < 2:
        raise ValueError(f"a curve needs at least 2 points, got {y.shape[-1]}")
    xs = np.linspace(0.0, 1.0, y.shape[-1]) if x is None else np.asarray(x, dtype=np.float64)
    if xs.shape != (y.shape[-1],) or np.any(np.diff(xs) <= 0):
        raise ValueError("x must be increasing and as long as the curves")
    return ((y[..., 1:] + y[..., :-1]) / 2 * np.diff(xs)).sum(-1)


def order_by_scores(scores: torch.Tensor) -> torch.Tensor:
    """Patch indices by decreasing score, ties by the smaller index, ``[..., N]`` long.

    >>> order_by_scores(torch.tensor([0.1, 0.3, 0.3, 0.0])).tolist()
    [1, 2, 0, 3]
    """
    return torch.sort(-scores, dim=-1, stable=True).indices


def dip_ordering(U: torch.Tensor) -> torch.Tensor:
    """Patches by decreasing column variance of ``U`` (the reverse of DIP's dropping order), ``[..., N]``."""
    return order_by_scores(column_variance(U))


def random_ordering(batch: int, n: int, seed: int = 0) -> torch.Tensor:
    """A random permutation of the ``n`` patches per image, reproducible from ``seed``, ``[batch, n]``."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.argsort(torch.rand(batch, n, generator=g), dim=-1)


def baseline_images(images: torch.Tensor, kind: str = "mean", grid: Grid | None = None) -> torch.Tensor:
    """What removed patches are replaced with.

    Args:
        images: normalised images ``[B, C, H, W]``.
        kind: ``"mean"``: zeros of the normalised input, i.e. the data set's mean colour; ``"blur"``:
            the image box-blurred over a patch-sized window.
        grid: the patch grid (for ``"blur"``).
    """
    if kind == "mean":
        return torch.zeros_like(images)
    if kind == "blur":
        if grid is None:
            raise ValueError("the blur baseline needs the patch grid")
        kh = max(1, images.shape[-2] // grid.height) | 1
        kw = max(1, images.shape[-1] // grid.width) | 1
        return Fn.avg_pool2d(images, (kh, kw), stride=1, padding=(kh // 2, kw // 2), count_include_pad=False)
    raise ValueError(f"unknown baseline {kind!r}; use 'mean' or 'blur'")


def _pixel_patches(grid: Grid, size: tuple[int, int], device=None) -> torch.Tensor:
    """The patch index of every pixel, ``[H, W]`` long, by the one rule :func:`patchfield.grid.pixel_cells`."""
    rows, cols = pixel_cells(size[0], size[1], grid)
    return (rows[:, None] * grid.width + cols[None, :]).to(device)


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    known = (hasattr(unwrap(model), "patch_embed") or is_huggingface(model)  # a model introspection can read
             or model_family(model) is not None)
    if known and not is_classifier(model):
        raise UsageError(f"{type(model).__name__} has no classifier head (num_classes=0 or a backbone): deletion "
                         "and insertion follow a class probability; load the model with its classifier")
    if required_forward_kwargs(model):  # model(x) would be a forward it never runs (an AWD-ViT's global attention)
        raise UsageError(f"{type(model).__name__} attends within fields given to its forward "
                         f"({', '.join(required_forward_kwargs(model))}), which a perturbed image does not have: "
                         "deletion and insertion run ViTs and WinfT")
    out = model(x)
    out = getattr(out, "logits", out)  # Hugging Face outputs
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise ValueError(f"{type(model).__name__} must return class logits [B, C] for the faithfulness metrics")
    return out


@torch.no_grad()
def deletion_insertion(
    model: nn.Module,
    images: torch.Tensor,
    orderings: torch.Tensor,
    grid: Grid,
    *,
    steps: int = 16,
    baseline: str | torch.Tensor = "mean",
    target: torch.Tensor | None = None,
    chunk: int = 64,
) -> dict[str, torch.Tensor]:
    """Deletion and insertion curves of one batch for one ordering.

    At step ``s`` of ``steps``, the first ``round(s·N / steps)`` patches of the ordering are
    replaced by the baseline (deletion) or are the only ones taken from the image (insertion).

    Args:
        model: classifier returning logits ``[B, C]``.
        images: normalised images ``[B, C, H, W]``.
        orderings: ``[B, N]`` patch indices, most important first (each a permutation).
        grid: the model's patch grid.
        steps: number of steps ``S`` (``S + 1`` points per curve).
        baseline: ``"mean"``, ``"blur"`` (see :func:`baseline_images`) or a tensor like ``images``.
        target: class per image ``[B]``; the model's prediction on the full image by default.
        chunk: images per forward pass.

    Returns:
        ``{"deletion": [B, S+1], "insertion": [B, S+1], "fractions": [S+1], "target": [B]}``:
        probabilities of the target class and the share of patches removed or inserted.
    """
    b, n = images.shape[0], grid.n
    if orderings.shape != (b, n):
        raise ValueError(f"orderings must be [B={b}, N={n}]; got {tuple(orderings.shape)}")
    if not torch.equal(orderings.sort(-1).values, torch.arange(n, device=orderings.device).expand(b, n)):
        raise ValueError("every ordering must be a permutation of the patch indices 0..N-1")
    if int(steps) < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    base = baseline if isinstance(baseline, torch.Tensor) else baseline_images(images, baseline, grid)
    if base.shape != images.shape:
        raise ValueError(f"baseline shape {tuple(base.shape)} differs from the images' {tuple(images.shape)}")
    counts = torch.tensor([round_half_up(s * n / steps) for s in range(steps + 1)], device=images.device)
    rank = torch.empty_like(orderings)
    rank.scatter_(1, orderings, torch.arange(n, device=orderings.device).expand(b, n))
    cells = _pixel_patches(grid, tuple(images.shape[-2:]), images.device)
    pixel_rank = rank.to(images.device)[:, cells]  # [B, H, W]: the rank of each pixel's patch
    if target is None:
        target = _logits(model, images).argmax(-1)
    target = target.to(images.device).long()
    points = b * (steps + 1)
    curves = {"deletion": [], "insertion": []}
    for start in range(0, points, chunk):  # masked images are built one chunk at a time
        idx = torch.arange(start, min(start + chunk, points), device=images.device)
        bi, si = idx // (steps + 1), idx % (steps + 1)
        m = (pixel_rank[bi] < counts[si][:, None, None])[:, None]  # [c, 1, H, W]: among the first k
        x, z, tgt = images[bi], base[bi], target[bi][:, None]
        curves["deletion"].append(_logits(model, torch.where(m, z, x)).float().softmax(-1).gather(1, tgt)[:, 0])
        curves["insertion"].append(_logits(model, torch.where(m, x, z)).float().softmax(-1).gather(1, tgt)[:, 0])
    out = {k: torch.cat(v).reshape(b, steps + 1).cpu() for k, v in curves.items()}
    return {**out, "fractions": counts.cpu().double() / n, "target": target.cpu()}


@dataclass
class FaithfulnessResult:
    """Deletion and insertion curves per ordering over a data set.

    Attributes:
        fractions: ``[S+1]`` share of patches removed/inserted at each step.
        deletion, insertion: ``{method: [M, S+1]}`` curves of the ``M`` images.
        baseline: the baseline used.
    """

    fractions: np.ndarray
    deletion: dict[str, np.ndarray] = field(default_factory=dict)
    insertion: dict[str, np.ndarray] = field(default_factory=dict)
    baseline: str = "mean"

    @property
    def methods(self) -> list[str]:
        return list(self.deletion)

    def auc(self, kind: str, method: str) -> np.ndarray:
        """Per-image areas under the ``kind`` (``"deletion"`` or ``"insertion"``) curves of ``method``."""
        curves = {"deletion": self.deletion, "insertion": self.insertion}[kind][method]
        return auc(curves, self.fractions)

    def summary(self) -> dict[str, dict[str, float]]:
        """``{method: {deletion_auc, deletion_auc_std, insertion_auc, insertion_auc_std, images}}``."""
        out = {}
        for m in self.methods:
            d, i = self.auc("deletion", m), self.auc("insertion", m)
            out[m] = {"deletion_auc": float(d.mean()), "deletion_auc_std": float(d.std()),
                      "insertion_auc": float(i.mean()), "insertion_auc_std": float(i.std()), "images": len(d)}
        return out

    def to_json(self) -> dict:
        return {
            "baseline": self.baseline,
            "fractions": self.fractions.tolist(),
            "summary": self.summary(),
            "mean_curves": {m: {"deletion": self.deletion[m].mean(0).tolist(),
                                "insertion": self.insertion[m].mean(0).tolist()} for m in self.methods},
        }


@torch.no_grad()
def evaluate_faithfulness(
    model: nn.Module,
    batches: Iterable[torch.Tensor | Sequence],
    *,
    methods: Sequence[str] = METHODS,
    steps: int = 16,
    baseline: str = "mean",
    seed: int = 0,
    device: torch.device | str | None = None,
    total: int | None = None,
) -> FaithfulnessResult:
    """Deletion/insertion curves of every ordering over a data set.

    Args:
        model: a timm or Hugging Face ViT classifier (eval mode).
        batches: image batches ``[B, C, H, W]``, or ``(images, labels)`` pairs as a DataLoader yields
            (labels are not used: the target is the model's prediction on the full image).
        methods: orderings among ``"dip"``, ``"random"``, ``"rollout"``.
        steps: steps per curve.
        baseline: ``"mean"`` or ``"blur"``.
        seed: seed of the random ordering (offset by the image count, so batches differ).
        device: where to run (the model's device by default).
        total: number of images, for the progress bar.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown methods {unknown}; choose from {list(METHODS)}")
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    result: FaithfulnessResult | None = None
    parts: dict[str, dict[str, list]] = {"deletion": {m: [] for m in methods}, "insertion": {m: [] for m in methods}}
    seen = 0
    bar = tqdm(total=total, unit="img", desc="faithfulness")
    for batch in batches:
        if batch is None:
            continue
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        images = images.to(device)
        maps = capture_attention(model, images)
        target = maps.logits.argmax(-1) if maps.logits is not None and maps.logits.dim() == 2 else None
        order = {}
        if "dip" in methods:
            order["dip"] = dip_ordering(interaction_uncertainty(maps.patch_block()))
        if "random" in methods:
            order["random"] = random_ordering(images.shape[0], maps.grid.n, seed + seen)
        if "rollout" in methods:
            order["rollout"] = order_by_scores(rollout_scores(maps))
        grid = maps.grid
        del maps
        for m in methods:
            curves = deletion_insertion(model, images, order[m].to(device), grid, steps=steps, baseline=baseline,
                                        target=target)
            parts["deletion"][m].append(curves["deletion"].double().numpy())
            parts["insertion"][m].append(curves["insertion"].double().numpy())
            if result is None:
                result = FaithfulnessResult(fractions=curves["fractions"].numpy(), baseline=baseline)
        seen += images.shape[0]
        bar.update(images.shape[0])
    bar.close()
    if result is None:
        raise ValueError("the data set gave no images")
    for kind in ("deletion", "insertion"):
        getattr(result, kind).update({m: np.concatenate(parts[kind][m]) for m in methods})
    return result
