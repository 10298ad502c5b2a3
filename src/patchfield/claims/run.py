"""``measure_claims``: the analysis claims of a model on a data set with object masks, with random-weights controls.

One streaming capture of ``U`` per image and model serves every ``(alpha, beta)``: the cost is one
analysis pass per image for the trained model and one per random initialisation (``1 + random_inits``).
The shuffled-centroid null needs every measured image's object centroid, known only at the end, so the
background patches' tendencies are kept (float32 ``[images, N, 2]`` per setting and model) until then.
"""

from __future__ import annotations

import copy
import logging
import sys
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ..capture import capture_uncertainty, find_attention_modules
from ..checks import check_alpha, check_beta, check_positive_int, check_random_inits
from ..dip import indiscriminative_patches
from ..field import responsive_field
from ..grid import Grid, object_patches
from ..images import SKIP_ERRORS, Skipped, skip_reason
from ..introspect import model_family, unwrap
from ..windows import adaptive_windows
from .measures import MEASURES, claim_measures, derangement, object_centroids, patch_variance, tendency_cosine
from .report import ClaimsReport

__all__ = ["measure_claims", "random_copy"]

SKIP_REASONS = ("missing", "unreadable", "no_mask", "degenerate_mask")

log = logging.getLogger(__name__)


def random_copy(model: nn.Module, seed: int) -> nn.Module:
    """The same architecture with fresh random weights from the library's own initialisation, in eval mode.

    timm models are copied and re-initialised (``reset_parameters`` and ``init_weights``); Hugging Face
    models are rebuilt from their config. The initialisation is seeded by ``seed`` inside a forked RNG, so the
    caller's global random state is left as it was.

    Raises:
        ValueError: the model has neither a timm ``init_weights`` nor a Hugging Face config.
    """
    first = next(model.parameters())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        if hasattr(model, "config") and hasattr(type(model), "_from_config"):
            attn = getattr(model.config, "_attn_implementation", None)
            kwargs = {"attn_implementation": attn} if attn else {}
            clone = type(model)._from_config(copy.deepcopy(model.config), **kwargs).to(first.dtype)
        elif model_family(model) is not None:  # torchvision, open_clip, a registered family
            clone = model_family(model).random_copy(unwrap(model))
        elif callable(getattr(model, "init_weights", None)):
            clone = copy.deepcopy(model).cpu()
            for module in clone.modules():
                if callable(getattr(module, "reset_parameters", None)):
                    module.reset_parameters()
            clone.init_weights()
        else:
            raise ValueError(
                f"cannot re-initialise a {type(model).__name__} for the random-weights control: it has no timm "
                "init_weights() and no Hugging Face config; pass a timm or Hugging Face ViT"
            )
    return clone.to(first.device).eval()


def _batches(dataset: Any, count: int, batch_size: int, skipped: dict[str, int], names: list[str], bar: tqdm,
             failed: list[Skipped] | None = None):
    """Yield ``(indices, images [B, 3, H, W], masks [B, H, W])``, counting images without a usable mask.

    Each image is read inside its own guard: one that cannot be read or preprocessed is counted as
    ``unreadable``, named with its reason in ``failed`` and logged (once: a control's pass gives no ``failed``),
    and the others go on."""
    name_of = getattr(dataset, "image_name", None)
    buf: list[tuple[int, torch.Tensor, torch.Tensor]] = []
    for i in range(count):
        try:
            item = dataset[i]
            reason = None if item is not None else getattr(dataset, "failures", {}).get(i, "unreadable image")
        except SKIP_ERRORS as e:
            item, reason = None, skip_reason(e)
        if item is None:
            skipped["unreadable"] += 1
            if failed is not None:
                failed.append(Skipped(name_of(i) if name_of else str(i), reason))
                log.warning("claims: skipped %s: %s", failed[-1].image, reason)
            bar.update(1)
            continue
        image, mask = item
        if mask is None:
            skipped["no_mask"] += 1
            bar.update(1)
            continue
        image, mask = torch.as_tensor(image), torch.as_tensor(mask).to(torch.bool)
        if image.dim() != 3 or mask.shape != image.shape[-2:]:
            where = name_of(i) if name_of else f"item {i}"
            raise ValueError(
                f"{where}: the mask is {tuple(mask.shape)} but the image is {tuple(image.shape)}; a data set must give "
                "an image [3, H, W] and a bool mask [H, W] through the same resize and crop"
            )
        names.append(name_of(i) if name_of else str(i))
        buf.append((i, image, mask))
        if len(buf) == batch_size:
            yield buf
            buf = []
    if buf:
        yield buf


Setting = tuple[float, float]


def _measure(U: torch.Tensor, grid: Grid, obj: torch.Tensor, variance: torch.Tensor, settings: list[Setting],
             tendencies: dict[Setting, list[torch.Tensor]]) -> dict[Setting, dict[str, torch.Tensor]]:
    """Every setting's per-image measures from one uncertainty map (CPU float64); appends each setting's
    background tendencies (zero elsewhere and where there is none) to ``tendencies`` for the shuffled null.

    The windows depend on ``alpha`` alone and ``D`` on ``beta`` alone, so each is computed once per value
    (what :func:`patchfield.analyze_map` gives, without repeating it for every pair).
    """
    windows = {a: adaptive_windows(U, a, grid) for a in dict.fromkeys(a for a, _ in settings)}
    dropped = {b: indiscriminative_patches(U, b) for b in dict.fromkeys(b for _, b in settings)}
    out = {}
    obj = obj.to(U.device)
    for alpha, beta in settings:
        field = responsive_field(windows[alpha], dropped[beta])
        out[(alpha, beta)] = {k: v.cpu() for k, v in claim_measures(field, obj, variance=variance).items()}
        keep = (~obj & (field.magnitude > 0))[..., None]
        tendencies[(alpha, beta)].append(torch.where(keep, field.tendency, 0.0).to(torch.float32).cpu())
    return out


def _shuffled_cosines(tendencies: dict[Setting, list[torch.Tensor]], targets: torch.Tensor,
                      grid: Grid) -> dict[Setting, torch.Tensor]:
    """``cos_shuffled`` per setting: each image's kept tendencies toward its partner's centroid ``targets``."""
    out = {}
    for s, parts in tendencies.items():
        t = torch.cat(parts)
        out[s] = tendency_cosine(t, t.norm(dim=-1) > 0, targets, grid)
    return out


def _pass(net: nn.Module, dataset: Any, count: int, batch_size: int, settings: list[Setting], bar: tqdm,
          skipped: dict[str, int] | None = None, names: list[str] | None = None, kept_names: list[str] | None = None,
          centroids: list[torch.Tensor] | None = None, grid: Grid | None = None,
          failed: list[Skipped] | None = None,
          ) -> tuple[dict[Setting, dict[str, torch.Tensor]], dict[Setting, list[torch.Tensor]], Grid | None]:
    """One model over the first ``count`` images: per setting and measure, the values of the images measured
    (those whose object covers some but not all patches), their background tendencies, and the patch grid.

    The trained model's pass (``grid`` unknown) counts what it skips into ``skipped``, names the images it
    measures in ``kept_names``, their objects' centroids in ``centroids`` and the images it could not read in
    ``failed``; a random control's pass (``grid``
    given) measures the same images, decided by the same masks.
    """
    skipped = skipped if skipped is not None else dict.fromkeys(SKIP_REASONS, 0)
    names = names if names is not None else []
    out: dict[Setting, dict[str, list[torch.Tensor]]] = {s: {m: [] for m in MEASURES} for s in settings}
    tendencies: dict[Setting, list[torch.Tensor]] = {s: [] for s in settings}
    dev = next(net.parameters()).device
    for batch in _batches(dataset, count, batch_size, skipped, names, bar, failed):
        images = torch.stack([b[1] for b in batch]).to(dev)
        masks = torch.stack([b[2] for b in batch])
        cap = capture_uncertainty(net, images) if grid is None else None
        grid = cap.grid if cap is not None else grid
        obj = object_patches(masks, grid)
        n_obj = obj.sum(-1)
        keep = (n_obj > 0) & (n_obj < grid.n)
        if kept_names is not None:
            skipped["degenerate_mask"] += int((~keep).sum())
            first = len(names) - len(batch)
            kept_names += [names[first + j] for j in torch.nonzero(keep).flatten().tolist()]
        if bool(keep.any()):
            k_dev = keep.to(dev)
            x, o = images[k_dev], obj[keep]
            U = cap.U[k_dev] if cap is not None else capture_uncertainty(net, x).U
            if centroids is not None:
                centroids.append(object_centroids(o, grid))
            measured = _measure(U, grid, o, patch_variance(x, grid), settings, tendencies)
            for s in settings:
                for m in MEASURES:
                    out[s][m].append(measured[s][m])
        bar.update(len(batch))
    return ({s: {m: torch.cat(v) if v else torch.empty(0) for m, v in d.items()} for s, d in out.items()},
            tendencies, grid)


@torch.no_grad()
def measure_claims(
    model: nn.Module,
    dataset: Any,
    alphas: Sequence[float] = (0.1,),
    betas: Sequence[float] = (0.2,),
    random_inits: int = 3,
    *,
    batch_size: int = 16,
    device: torch.device | str | None = None,
    seed: int = 0,
    limit: int | None = None,
    model_name: str | None = None,
    progress: bool = False,
    generator: torch.Generator | None = None,
) -> ClaimsReport:
    """Measure the paper's analysis claims (Sec. 4.2, 4.3) of ``model`` on ``dataset``, with controls.

    Args:
        model: a timm ViT-family model or a Hugging Face ViT (eval mode), trained.
        dataset: ``(image, mask)`` pairs, the protocol of :mod:`patchfield.data.masks`.
        alphas, betas: the settings; every ``(alpha, beta)`` pair is measured from one forward per image.
        random_inits: random-weights controls (same architecture, seeds ``seed, seed + 1, ...``), from 1 to
            :data:`patchfield.checks.MAX_RANDOM_INITS` (100); every claim is compared with them. They are built
            one at a time, each after the previous one's pass over the data, so memory does not grow with them.
        batch_size: images per forward.
        device: where to run (the model is moved there); default the model's own device.
        seed: seed of the first random initialisation.
        limit: use at most this many images of ``dataset``.
        model_name: the name in the report (default the model's class).
        progress: a progress bar with rate on stderr.
        generator: draws the derangement of the shuffled-centroid null (which image lends its object's
            centroid to which); default a CPU generator seeded with ``seed``. The global RNG is not touched.

    Returns:
        a :class:`ClaimsReport`.

    Raises:
        ValueError: bad arguments, a mask of another size than its image, no image with a usable mask, or a
            model that cannot be re-initialised.
        TypeError: a model without readable attention.
    """
    alphas = [check_alpha(a) for a in alphas]
    betas = [check_beta(b) for b in betas]
    if not alphas or not betas:
        raise ValueError("give at least one alpha and one beta")
    random_inits = check_random_inits(random_inits, "random_inits (--random-inits)")
    batch_size = check_positive_int(batch_size, "batch size")
    find_attention_modules(model)  # a model without readable attention fails here, before any work
    if device is not None:
        model = model.to(device)
    model.eval()
    settings = [(a, b) for a in dict.fromkeys(alphas) for b in dict.fromkeys(betas)]
    count = len(dataset) if limit is None else min(len(dataset), check_positive_int(limit, "limit"))
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    names: list[str] = []
    kept_names: list[str] = []
    centroids: list[torch.Tensor] = []
    bar = tqdm(total=count * (1 + int(random_inits)), unit="img", desc="claims", file=sys.stderr,
               disable=not progress)
    # the trained model, then each random control built in turn (one model in memory besides the trained one):
    # a pass over the data each, measuring the images the trained pass kept
    failed: list[Skipped] = []
    trained_m, trained_t, grid = _pass(model, dataset, count, batch_size, settings, bar, skipped, names,
                                       kept_names, centroids, failed=failed)
    per_init, kept_tendencies = [], [trained_t]
    for k in range(int(random_inits) if kept_names else 0):
        control = random_copy(model, seed + k)
        measured, tendencies, _ = _pass(control, dataset, count, batch_size, settings, bar, grid=grid)
        per_init.append(measured)
        kept_tendencies.append(tendencies)
        del control
    bar.close()
    with_image = count - skipped["unreadable"]
    if with_image > 0 and skipped["no_mask"] == with_image:
        raise ValueError(f"none of the {with_image} images read has an object mask; check the masks or annotations")
    for key, value in (getattr(dataset, "skipped", None) or {}).items():
        skipped[key] = skipped.get(key, 0) + int(value)
    if not kept_names:
        detail = ", ".join(f"{k} {v}" for k, v in skipped.items() if v)
        raise ValueError(f"no image could be measured ({detail or 'the data set is empty'}); "
                         "every image needs an object mask covering some but not all patches")
    random_m = {s: {m: torch.stack([r[s][m] for r in per_init]).nanmean(0) for m in MEASURES}  # mean over inits
                for s in settings}
    if len(kept_names) > 1:  # the shuffled-centroid null: another measured image's object centroid
        gen = generator if generator is not None else torch.Generator().manual_seed(int(seed))
        targets = torch.cat(centroids)[derangement(len(kept_names), gen)]
        shuffled = [_shuffled_cosines(k, targets, grid) for k in kept_tendencies]
        for s in settings:
            trained_m[s]["cos_shuffled"] = shuffled[0][s]
            random_m[s]["cos_shuffled"] = torch.stack([c[s] for c in shuffled[1:]]).nanmean(0)
    return ClaimsReport(
        model=model_name or type(model).__name__,
        names=kept_names,
        skipped=skipped,
        random_inits=int(random_inits),
        seed=int(seed),
        grid=(grid.height, grid.width),
        trained=trained_m,
        random=random_m,
        extra={"skipped_images": [Skipped(str(image), str(why)).to_json()
                                  for image, why in getattr(dataset, "dropped", [])] + [f.to_json() for f in failed]},
    )
