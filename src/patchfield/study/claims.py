"""Measure the analysis claims of Sec. 4.2 and 4.3 against object masks, with geometric nulls.

- DIP lies on background: the share of ``D`` outside the object, against the background's
  share of the patches (the chance level of a random ``D``).
- Object fields are smaller: mean ``|S_p|`` over object patches vs background patches.
- Tendency is object-centric: mean cosine between each background patch's tendency and the
  direction to the object's centre, against the cosine toward the grid's centre (a window near
  the border can only reach inward, so geometry alone points fields at the middle).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..field import ResponsiveField
from ..grid import Grid

__all__ = ["ClaimMeasures", "measure_claims", "patch_object_mask", "summarize"]


def patch_object_mask(masks: torch.Tensor, grid: Grid, threshold: float = 0.5) -> torch.Tensor:
    """Pixel masks ``[B, H, W]`` → patch masks ``[B, N]``: True where at least ``threshold`` of
    the patch's pixels are object.

    >>> m = torch.zeros(1, 4, 4, dtype=torch.bool); m[0, :2, :2] = True
    >>> patch_object_mask(m, Grid(2, 2)).tolist()
    [[True, False, False, False]]
    """
    if masks.dim() != 3:
        raise ValueError(f"masks must be [B, H, W]; got {tuple(masks.shape)}")
    share = F.adaptive_avg_pool2d(masks[:, None].float(), (grid.height, grid.width))
    return (share >= threshold).flatten(1)


@dataclass
class ClaimMeasures:
    """Per-image measures (``[B]`` float tensors, NaN where undefined for that image).

    Attributes:
        dip_background: share of ``D`` on background patches.
        background_share: share of background patches (chance level for ``dip_background``).
        size_object, size_background: mean ``|S_p|`` over object / background patches.
        cos_object: mean cosine of background tendencies toward the object's centre.
        cos_center: the same toward the grid's centre (the geometric null).
    """

    dip_background: torch.Tensor
    background_share: torch.Tensor
    size_object: torch.Tensor
    size_background: torch.Tensor
    cos_object: torch.Tensor
    cos_center: torch.Tensor

    def as_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.__dict__)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    count = mask.sum(-1)
    total = torch.where(mask, values, 0.0).sum(-1)
    return torch.where(count > 0, total / count.clamp_min(1), float("nan"))


def _cosine_toward(field: ResponsiveField, target: torch.Tensor, select: torch.Tensor) -> torch.Tensor:
    """Mean cosine between the tendency of selected patches and the direction to ``target`` ``[B, 2]``."""
    x, y = field.grid.coords(field.size.device)
    to_target = target[:, None, :] - torch.stack([x, y], -1).float()[None]
    dist = to_target.norm(dim=-1)
    ok = select & (field.magnitude > 0) & (dist > 0)
    cos = (field.tendency * to_target).sum(-1) / dist.clamp_min(1e-12)
    return _masked_mean(cos, ok)


def measure_claims(field: ResponsiveField, object_patches: torch.Tensor) -> ClaimMeasures:
    """Per-image claim measures for a batch of responsive fields and patch object masks ``[B, N]``."""
    g = field.grid
    obj = object_patches.to(torch.bool)
    if obj.shape != field.size.shape:
        raise ValueError(f"object_patches must be {tuple(field.size.shape)}; got {tuple(obj.shape)}")
    bg = ~obj
    d = field.dropped
    x, y = g.coords(obj.device)
    coords = torch.stack([x, y], -1).float()
    n_obj = obj.sum(-1, keepdim=True)
    centre = torch.where(n_obj > 0, (obj[..., None] * coords).sum(1) / n_obj.clamp_min(1), float("nan"))
    grid_centre = torch.tensor([(g.width - 1) / 2, (g.height - 1) / 2]).expand_as(centre)
    size = field.size.float()
    return ClaimMeasures(
        dip_background=_masked_mean(bg.float(), d),
        background_share=bg.float().mean(-1),
        size_object=_masked_mean(size, obj),
        size_background=_masked_mean(size, bg),
        cos_object=_cosine_toward(field, centre, bg),
        cos_center=_cosine_toward(field, grid_centre, bg),
    )


def summarize(values: torch.Tensor) -> dict[str, float]:
    """Mean, standard deviation and standard error over images, ignoring NaN.

    >>> summarize(torch.tensor([1.0, 3.0, float("nan")]))
    {'mean': 2.0, 'std': 1.0, 'sem': 0.7071, 'n': 2}
    """
    v = values[~torch.isnan(values)].double()
    n = int(v.numel())
    if n == 0:
        return {"mean": float("nan"), "std": float("nan"), "sem": float("nan"), "n": 0}
    mean = float(v.mean())
    std = float(v.std(correction=0)) if n > 1 else 0.0
    return {"mean": round(mean, 4), "std": round(std, 4), "sem": round(std / math.sqrt(n), 4), "n": n}
