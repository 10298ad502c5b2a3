"""Per-image measures of the paper's analysis claims (Sec. 4.2, 4.3), vectorised over a batch.

For responsive fields ``[B, N]`` and object patches ``[B, N]`` (:func:`patchfield.grid.object_patches`):

- ``dip_on_background``: the share of ``D`` outside the object (``dip_background``); the null is the
  background's share of the patches (``background_share``), the share a random ``D`` would have.
- ``field_size``: mean ``|S_p|`` over object patches and over background patches (``size_object``,
  ``size_background``); the window area (``O`` per patch) the same way (``window_object``,
  ``window_background``).
- ``tendency_to_object``: over background patches with a non-zero tendency, the mean cosine between the
  tendency and the direction from the patch to the object's centroid (``cos_object``); the geometric
  null is the same cosine toward the centre of the patch grid (``cos_center``), because a window near
  the border can only reach inward. A patch that sits exactly on the target point has no direction
  and is left out of that mean.

A value is NaN where it is undefined for an image (``D`` empty, no background patch with a tendency).
"""

from __future__ import annotations

import torch

from ..field import ResponsiveField

__all__ = ["CLAIMS", "MEASURES", "claim_measures"]

#: claim key → (the claim in words, the null in words)
CLAIMS = {
    "dip_on_background": ("D lies on the background: share of D outside the object",
                          "background's share of the patches (chance)"),
    "field_size": ("object fields are smaller: mean size of S_p, background minus object",
                   "no gap (0)"),
    "tendency_to_object": ("background tendencies point at the object: cosine toward its centroid",
                           "cosine toward the grid's centre (geometry)"),
}

#: The per-image measures, in the order of :func:`claim_measures`'s result and the CSV's columns.
MEASURES = (
    "dip_background",
    "background_share",
    "size_object",
    "size_background",
    "window_object",
    "window_background",
    "cos_object",
    "cos_center",
)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` over the last dimension; NaN where the mask is empty."""
    values = values.to(torch.float64)
    count = mask.sum(-1)
    total = torch.where(mask, values, 0.0).sum(-1)
    return torch.where(count > 0, total / count.clamp_min(1), torch.nan)


def _cosine_toward(field: ResponsiveField, target: torch.Tensor, select: torch.Tensor) -> torch.Tensor:
    """Mean cosine between the tendency of selected patches and the direction to ``target`` ``[B, 2]`` (x, y)."""
    x, y = field.grid.coords(select.device)
    coords = torch.stack([x, y], -1).to(torch.float64)  # [N, 2]
    to_target = target[:, None, :] - coords[None]  # [B, N, 2]
    dist = to_target.norm(dim=-1)
    ok = select & (field.magnitude > 0) & (dist > 0)
    cos = (field.tendency.to(torch.float64) * to_target).sum(-1) / dist.clamp_min(1e-12)
    return _masked_mean(cos, ok)


def claim_measures(field: ResponsiveField, object_patches: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image claim measures (float64 ``[B]`` each, keys :data:`MEASURES`) for a batch of fields.

    Args:
        field: responsive fields of a batch, ``[B, N]``.
        object_patches: bool ``[B, N]``, True on object patches.

    >>> from patchfield import Grid, Windows, responsive_field
    >>> f = responsive_field(Windows.full(Grid(1, 3), (1,)), torch.tensor([[False, False, True]]))
    >>> m = claim_measures(f, torch.tensor([[True, False, False]]))
    >>> m["dip_background"].item(), m["size_object"].item(), m["window_background"].item()
    (1.0, 2.0, 3.0)
    """
    obj = object_patches.to(torch.bool)
    if obj.shape != field.size.shape:
        raise ValueError(f"object_patches must be {tuple(field.size.shape)}; got {tuple(obj.shape)}")
    g = field.grid
    bg = ~obj
    x, y = g.coords(obj.device)
    coords = torch.stack([x, y], -1).to(torch.float64)
    n_obj = obj.sum(-1, keepdim=True)
    centroid = torch.where(n_obj > 0, (obj[..., None] * coords).sum(1) / n_obj.clamp_min(1), torch.nan)
    grid_centre = torch.tensor([(g.width - 1) / 2, (g.height - 1) / 2], dtype=torch.float64, device=obj.device)
    area = field.windows.area()
    return {
        "dip_background": _masked_mean(bg, field.dropped),
        "background_share": bg.to(torch.float64).mean(-1),
        "size_object": _masked_mean(field.size, obj),
        "size_background": _masked_mean(field.size, bg),
        "window_object": _masked_mean(area, obj),
        "window_background": _masked_mean(area, bg),
        "cos_object": _cosine_toward(field, centroid, bg),
        "cos_center": _cosine_toward(field, grid_centre.expand_as(centroid), bg),
    }
