"""``patchfield figures``: every figure of the paper for one or more images (PNG, SVG on request)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..analysis import analyze_map
from ..images import ImageReadError, model_input_spec, read_image, to_model_input
from ..utils.io import write_json_atomic
from ._common import add_model_args, check_rates, model_from_args, parse_device
from .analyze import _unique_names


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("figures", help="write every figure of the paper (Fig. 2-7, 11-13) for images")
    p.add_argument("images", nargs="*", type=Path, help="image files")
    add_model_args(p)
    p.add_argument("--mask", action="append", type=Path, default=[],
                   help="object mask image for Fig. 2 (non-zero = object), one per image in order (repeatable)")
    p.add_argument("--synthetic", type=int, default=0, metavar="K",
                   help="also draw the first K images of the embedded synthetic data set (with object masks)")
    p.add_argument("--fig2-dataset", type=int, default=0, metavar="M",
                   help="Fig. 2's data-set statistic over the first M synthetic images (default: the drawn images)")
    p.add_argument("--alpha", type=float, default=0.1, help="share of U's entries shaping windows (0, 1]")
    p.add_argument("--beta", type=float, default=0.2, help="share of patches dropped as indiscriminative [0, 1)")
    p.add_argument("--betas", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.5], help="beta values of Fig. 6")
    p.add_argument("--patches", type=int, nargs="+", help="patches for Fig. 3/4 (default: spread over the grid)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled patch pair of Fig. 2")
    p.add_argument("--winft-model", help="WinfT for Fig. 13: a WinfT timm name or run folder, or a plain ViT "
                   "name whose --winft-weights come from a WinfT (WinfT is applied; needs patchfield.models)")
    p.add_argument("--winft-weights", help="local weights of the WinfT model for Fig. 13")
    p.add_argument("--winft-mode", choices=["paper", "restrict"], default="paper",
                   help="WinfT mode when it is applied to a plain ViT")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default="cpu", help="torch device for the forward passes (e.g. cuda:0)")
    p.add_argument("--only", nargs="+", metavar="NAME",
                   help="write only the figures whose names start with these (e.g. fig5 fig7_tendency)")
    p.add_argument("--svg", action="store_true", help="write SVG beside every PNG")
    p.add_argument("--out", type=Path, required=True, help="output folder (one subfolder per image)")
    p.set_defaults(func=run)


def read_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    """A mask image resized and centre-cropped exactly like its photo (nearest neighbour), bool ``[H, W]``."""
    try:
        with Image.open(path) as im:
            im.load()
            mask = im.convert("L")
    except FileNotFoundError as e:
        raise FileNotFoundError(f"mask file {path} does not exist") from e
    except OSError as e:
        raise ValueError(f"mask file {path} is not a readable image ({e})") from e
    h, w = size
    scale = max(h / mask.height, w / mask.width)
    resized = mask.resize((max(w, round(mask.width * scale)), max(h, round(mask.height * scale))), Image.NEAREST)
    left, top = (resized.width - w) // 2, (resized.height - h) // 2
    return np.asarray(resized.crop((left, top, left + w, top + h))) > 0


def _winft(args: argparse.Namespace):
    if not args.winft_model:
        return None
    try:
        from .. import models  # registers the WinfT names with timm
    except ImportError as e:
        raise ImportError(f"Fig. 13 needs patchfield.models (WinfT): {e}") from e
    from ..loading import load_model

    model = load_model(args.winft_model, args.winft_weights, img_size=args.image_size)
    if models.patched_kind(model) != "winft":
        model = models.apply_winft(model, args.winft_mode)
    return model.eval()


def _jobs(args: argparse.Namespace, spec: dict) -> list[tuple[str, object]]:
    """``(name, loader)`` per image; a loader returns ``(x, crop, mask or None)`` or raises ImageReadError."""
    if args.mask and len(args.mask) != len(args.images):
        raise ValueError(f"give one --mask per image: {len(args.mask)} masks for {len(args.images)} images")
    jobs = []
    for k, (path, name) in enumerate(zip(args.images, _unique_names(args.images))):
        def load(path=path, k=k):
            x, crop = to_model_input(read_image(path), spec["size"], spec["mean"], spec["std"])
            mask = read_mask(args.mask[k], spec["size"]) if args.mask else None
            return x, crop, mask
        jobs.append((name, load))
    if args.synthetic:
        from ..data import SyntheticShapes

        h, w = spec["size"]
        if h != w:
            raise ValueError(f"the synthetic images are square; the model takes {h}x{w} inputs")
        ds = SyntheticShapes(args.synthetic, image_size=h, mean=spec["mean"], std=spec["std"])
        for i in range(args.synthetic):
            def load(i=i):
                x, _ = ds.batch([i])
                return x[0], ds.raw_image(i), ds.object_mask(i).numpy()
            jobs.append((f"synthetic_{i:03d}", load))
    if not jobs:
        raise ValueError("no images: give image files and/or --synthetic K")
    return jobs


def _figures_of(args, maps, U, windows, field, i, crop, mask, winft_masks):
    from .. import figures as F

    g = maps.grid
    out = {
        "fig3_layer_attention": lambda: F.plot_layer_attention(maps, crop, args.patches, i),
        "fig3_head_uncertainty": lambda: F.plot_head_uncertainty(maps, crop, args.patches, i),
        "fig3_uncertainty_rows": lambda: F.plot_uncertainty_rows(U, crop, g, args.patches, i),
        "fig4_global_vs_window": lambda: F.plot_global_vs_window(
            crop, windows, args.patches[0] if args.patches else None, i),
        "fig5_indiscriminative": lambda: F.plot_indiscriminative(U, crop, g, args.beta, i),
        "fig6_dip_betas": lambda: F.plot_dip_betas(U, crop, g, args.betas, i),
        "fig7_responsive_field": lambda: F.plot_responsive_field(crop, field, i),
        "fig7_tendency_flow": lambda: F.plot_tendency_flow(crop, field, i),
        "fig12_field_size": lambda: F.plot_field_size(crop, field, i),
    }
    if mask is not None:
        out["fig2_pair_attention"] = lambda: F.plot_pair_attention(maps, mask, crop, i, seed=args.seed)
    if winft_masks is not None:
        out["fig13_winft_windows"] = lambda: F.plot_winft_windows(field.mask()[i], winft_masks[i], crop)
    return out


def _wanted(args: argparse.Namespace, name: str) -> bool:
    return not args.only or any(name.startswith(prefix) for prefix in args.only)


def _save(fig, folder: Path, name: str, svg: bool) -> str:
    from ..figures._draw import save_figure

    save_figure(fig, folder / f"{name}.png")
    if svg:
        save_figure(fig, folder / f"{name}.svg")
    return f"{name}.png"


@torch.no_grad()
def run(args: argparse.Namespace) -> int:
    from .. import figures as F
    from ..capture import capture_attention
    from ..uncertainty import interaction_uncertainty

    check_rates(args.alpha, args.beta, *args.betas)
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    device = parse_device(args.device)
    model = model_from_args(args).to(device)
    winft = _winft(args)
    if winft is not None:
        winft = winft.to(device)
    spec = model_input_spec(model)
    jobs = _jobs(args, spec)
    index: dict[str, dict[str, str]] = {}
    failed: list[str] = []
    inner_all, outer_all, layers = [], [], None
    bar = tqdm(total=len(jobs), unit="img", desc="figures", file=sys.stderr)
    for start in range(0, len(jobs), args.batch_size):
        xs, crops, masks, names = [], [], [], []
        for name, load in jobs[start:start + args.batch_size]:
            try:
                x, crop, mask = load()
            except ImageReadError as e:
                print(f"skipped {e}", file=sys.stderr)
                failed.append(name)
                bar.update(1)
                continue
            xs.append(x)
            crops.append(crop)
            masks.append(mask)
            names.append(name)
        if not xs:
            continue
        batch = torch.stack(xs).to(device)
        maps = capture_attention(model, batch)
        U = interaction_uncertainty(maps.patch_block())
        bad = [p for p in args.patches or [] if not 0 <= p < maps.grid.n]
        if bad:
            raise ValueError(f"--patches {bad} are outside the {maps.grid.height}x{maps.grid.width} patch grid "
                             f"(0..{maps.grid.n - 1})")
        windows, _, field = analyze_map(U, maps.grid, args.alpha, args.beta)
        wmasks = F.winft_windows(winft, batch) if winft is not None else None  # as WinfT applied them
        have = [j for j, m in enumerate(masks) if m is not None]
        if have:
            pm = F.patch_mask(torch.from_numpy(np.stack([masks[j] for j in have])), maps.grid)
            sub = type(maps)(maps.attn[have], maps.grid, maps.num_prefix_tokens, maps.layers)
            inner, outer = F.pair_attention(sub, pm)
            inner_all.append(inner)
            outer_all.append(outer)
            layers = maps.layers
        for i, name in enumerate(names):
            folder = args.out / name
            written = {}
            for fig_name, make in _figures_of(args, maps, U, windows, field, i, crops[i], masks[i],
                                              wmasks).items():
                if not _wanted(args, fig_name):
                    continue
                try:
                    written[fig_name] = _save(make(), folder, fig_name, args.svg)
                except ValueError as e:  # e.g. an object too small for Fig. 2's pair
                    print(f"{name}: {fig_name} skipped: {e}", file=sys.stderr)
            index[name] = written
            bar.update(1)
    bar.close()
    if args.fig2_dataset:
        from ..data import SyntheticShapes

        h, w = spec["size"]
        if h != w:
            raise ValueError(f"the synthetic images are square; the model takes {h}x{w} inputs")
        ds = SyntheticShapes(args.fig2_dataset, image_size=h, mean=spec["mean"], std=spec["std"])
        inner, outer, layers = F.pair_attention_dataset(model, ds, batch_size=args.batch_size, device=device)
        inner_all, outer_all = [inner], [outer]
    if inner_all and _wanted(args, "fig2_pair_attention_dataset"):
        fig = F.plot_pair_attention_dataset(torch.cat(inner_all), torch.cat(outer_all), layers)
        index["dataset"] = {"fig2_pair_attention_dataset": _save(fig, args.out, "fig2_pair_attention_dataset",
                                                                 args.svg)}
    write_json_atomic(args.out / "figures.json", index)
    if winft is None:
        print("Fig. 13 skipped: give --winft-model (and --winft-weights) to draw WinfT's predicted masks",
              file=sys.stderr)
    tail = f"; {len(failed)} failed: {', '.join(failed)}" if failed else ""
    print(f"wrote figures of {len(jobs) - len(failed)} image(s) into {args.out}{tail}")
    return 1 if failed else 0
