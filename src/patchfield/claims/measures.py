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

Two more nulls, each its own row of the report:

- ``background_share_content`` (content-only null of ``dip_on_background``): the background's share of
  the ``|D|`` patches of lowest pixel variance (:func:`patch_variance`, from the preprocessed image the
  model sees; :func:`content_null_share`), what a ``D`` picked from image content alone would give.
- ``cos_shuffled`` (shuffled-centroid null of ``tendency_to_object``): the same cosine toward another
  image's object centroid (a derangement of the images, :func:`derangement`), which keeps the geometry of
  real objects (where centroids fall on the grid) but not this image's object.

A value is NaN where it is undefined for an image (``D`` empty, no background patch with a tendency, no
image or partner given for the two nulls above).
"""

from __future__ import annotations

import torch

from ..field import ResponsiveField
from ..grid import Grid, patch_shares, pixel_cells

__all__ = [
    "CLAIMS",
    "MEASURES",
    "claim_measures",
    "content_null_share",
    "derangement",
    "object_centroids",
    "patch_variance",
    "tendency_cosine",
]

#: claim key → (the claim in words, the null in words); a claim with two nulls has a row (a key) per null
CLAIMS = {
    "dip_on_background": ("D lies on the background: share of D outside the object",
                          "background's share of the patches (chance)"),
    "dip_on_background_content": ("D lies on the background, beyond image content: share of D outside the object",
                                  "background's share of the lowest-variance patches, as many as D (content only)"),
    "field_size": ("object fields are smaller: mean size of S_p, background minus object",
                   "no gap (0)"),
    "tendency_to_object": ("background tendencies point at the object: cosine toward its centroid",
                           "cosine toward the grid's centre (geometry)"),
    "tendency_to_object_shuffled": ("background tendencies point at their own object: cosine toward its centroid",
                                    "cosine toward another image's object centroid (shuffled)"),
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
    "background_share_content",
    "cos_shuffled",
)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` over the last dimension; NaN where the mask is empty."""
    values = values.to(torch.float64)
    count = mask.sum(-1)
    total = torch.where(mask, values, 0.0).sum(-1)
    return torch.where(count > 0, total / count.clamp_min(1), torch.nan)


def tendency_cosine(tendency: torch.Tensor, select: torch.Tensor, target: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Per image, the mean cosine between the unit tendencies ``[B, N, 2]`` of the ``select``-ed patches
    ``[B, N]`` and their directions to ``target`` ``[B, 2]`` (x, y in patch units); NaN where none is left.

    The caller selects patches with a tendency (non-zero); a patch on the target point has no direction and
    is left out.
    """
    x, y = grid.coords(select.device)
    coords = torch.stack([x, y], -1).to(torch.float64)  # [N, 2]
    to_target = target.to(torch.float64)[:, None, :] - coords[None]  # [B, N, 2]
    dist = to_target.norm(dim=-1)
    ok = select & (dist > 0)
    cos = (tendency.to(torch.float64) * to_target).sum(-1) / dist.clamp_min(1e-12)
    return _masked_mean(cos, ok)


def _cosine_toward(field: ResponsiveField, target: torch.Tensor, select: torch.Tensor) -> torch.Tensor:
    """Mean cosine between the tendency of selected patches and the direction to ``target`` ``[B, 2]`` (x, y)."""
    return tendency_cosine(field.tendency, select & (field.magnitude > 0), target, field.grid)


def object_centroids(object_patches: torch.Tensor, grid: Grid) -> torch.Tensor:
    """The object's centroid ``(x, y)`` in patch units per image, float64 ``[B, 2]``; NaN where no object patch.

    >>> object_centroids(torch.tensor([[False, True, False, True]]), Grid(2, 2)).tolist()
    [[1.0, 0.5]]
    """
    obj = object_patches.to(torch.bool)
    x, y = grid.coords(obj.device)
    coords = torch.stack([x, y], -1).to(torch.float64)
    n_obj = obj.sum(-1, keepdim=True)
    return torch.where(n_obj > 0, (obj[..., None] * coords).sum(1) / n_obj.clamp_min(1), torch.nan)


def patch_variance(images: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Pixel variance of every patch, float64 ``[B, N]``: per channel, the variance of the patch's pixel values
    about their mean (population variance), then the mean over channels.

    ``images`` is ``[B, C, H, W]``, the preprocessed input the model sees; pixels go to patches by the
    library's one rule (:func:`patchfield.grid.pixel_cells`), so any size that covers the grid works. A flat
    patch (one colour) has variance 0 exactly.

    >>> x = torch.zeros(1, 1, 2, 4); x[0, 0, :, 2:] = torch.tensor([[0.0, 2.0], [2.0, 0.0]])
    >>> patch_variance(x, Grid(1, 2)).tolist()
    [[0.0, 1.0]]
    """
    if images.dim() != 4:
        raise ValueError(f"images must be [B, C, H, W]; got {tuple(images.shape)}")
    b, c, h, w = images.shape
    x = images.to(torch.float64)
    mean = patch_shares(x, grid)  # the per-patch mean: patch_shares is linear in its input, [B, C, N]
    rows, cols = pixel_cells(h, w, grid)
    at_pixel = mean.reshape(b, c, grid.height, grid.width)[:, :, rows.to(x.device)][..., cols.to(x.device)]
    return patch_shares((x - at_pixel).square(), grid).mean(1)


def content_null_share(variance: torch.Tensor, count: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """The background's share of each image's ``count`` lowest-variance patches, float64 ``[B]``.

    Patches tied at the cut-off variance share the places left in proportion, so the value is the
    expectation over random tie-breaking (on flat backgrounds many patches have variance 0 exactly). NaN
    where ``count`` is 0.

    Args:
        variance: ``[B, N]`` (:func:`patch_variance`).
        count: ``[B]`` patches to take (``|D|`` of the image).
        background: bool ``[B, N]``, True off the object.

    >>> v = torch.tensor([[0.0, 0.0, 0.0, 5.0]])
    >>> content_null_share(v, torch.tensor([2]), torch.tensor([[True, False, False, True]])).item()
    0.3333333333333333
    """
    n = variance.shape[-1]
    k = count.to(torch.long).clamp(1, n)
    cut = variance.sort(-1).values.gather(-1, (k - 1)[:, None])  # [B, 1], the k-th smallest
    below, tied = variance < cut, variance == cut
    left = (k - below.sum(-1)).to(torch.float64)  # places the tied patches share
    bg_below = (below & background).sum(-1).to(torch.float64)
    bg_tied = (tied & background).sum(-1).to(torch.float64)
    share = (bg_below + left * bg_tied / tied.sum(-1).clamp_min(1)) / k
    return torch.where(count > 0, share, torch.nan)


def derangement(n: int, generator: torch.Generator) -> torch.Tensor:
    """A uniformly random permutation of ``range(n)`` with no fixed point (``perm[i] != i``), from ``generator``.

    Rejection sampling (about e ≈ 2.7 draws of ``torch.randperm`` on average); the global RNG is not used.

    Raises:
        ValueError: ``n < 2`` (no derangement exists).
    """
    if int(n) < 2:
        raise ValueError(f"a derangement needs at least 2 items, got {n}")
    idx = torch.arange(int(n))
    while True:
        perm = torch.randperm(int(n), generator=generator)
        if not bool((perm == idx).any()):
            return perm


def claim_measures(field: ResponsiveField, object_patches: torch.Tensor, *, variance: torch.Tensor | None = None,
                   shuffled_target: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-image claim measures (float64 ``[B]`` each, keys :data:`MEASURES`) for a batch of fields.

    Args:
        field: responsive fields of a batch, ``[B, N]``.
        object_patches: bool ``[B, N]``, True on object patches.
        variance: ``[B, N]`` pixel variance of the patches (:func:`patch_variance`) for the content-only null
            ``background_share_content``; NaN without it.
        shuffled_target: ``[B, 2]`` another image's object centroid per image (:func:`object_centroids` of a
            :func:`derangement`) for ``cos_shuffled``; NaN without it.

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
    centroid = object_centroids(obj, g)
    nan = torch.full(obj.shape[:1], torch.nan, dtype=torch.float64, device=obj.device)
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
        "background_share_content": nan if variance is None else
        content_null_share(variance, field.dropped.sum(-1), bg),
        "cos_shuffled": nan if shuffled_target is None else _cosine_toward(field, shuffled_target, bg),
    }
