"""``patchfield figures``: every figure of the paper for one or more images (PNG, SVG on request).

A thin layer over :func:`patchfield.figures.write_paper_figures`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..checks import check_rates
from ..devices import parse_device
from ._common import add_model_args, model_from_args
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


def _synthetic(count: int, preprocess):
    """``count`` images of the embedded data set at the model's size and normalisation."""
    from ..data import SyntheticShapes

    h, w = preprocess.size
    if h != w:
        raise ValueError(f"the synthetic images are square; the model takes {h}x{w} inputs")
    kw = preprocess.data_kwargs()
    return SyntheticShapes(count, image_size=h, mean=kw["mean"], std=kw["std"])


def run(args: argparse.Namespace) -> int:
    from ..figures import write_paper_figures
    from ..preprocess import Preprocess

    check_rates(args.alpha, args.beta, *args.betas, prefix="--")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.mask and len(args.mask) != len(args.images):
        raise ValueError(f"give one --mask per image: {len(args.mask)} masks for {len(args.images)} images")
    if not args.images and not args.synthetic:
        raise ValueError("no images: give image files and/or --synthetic K")
    device = parse_device(args.device)
    model = model_from_args(args).to(device)
    winft = _winft(args)
    if winft is not None:
        winft = winft.to(device)
    preprocess = Preprocess.for_model(model)
    images: list = list(args.images)
    masks: list = list(args.mask) if args.mask else [None] * len(images)
    names = _unique_names(args.images)
    if args.synthetic:
        ds = _synthetic(args.synthetic, preprocess)
        for i in range(args.synthetic):
            images.append(ds[i][0])
            masks.append(ds.object_mask(i))
            names.append(f"synthetic_{i:03d}")
    fig2 = _synthetic(args.fig2_dataset, preprocess) if args.fig2_dataset else None
    written = write_paper_figures(
        model, images, masks, winft, args.out, names=names, alpha=args.alpha, beta=args.beta, betas=args.betas,
        patches=args.patches, seed=args.seed, fig2_dataset=fig2, batch_size=args.batch_size, only=args.only,
        svg=args.svg,
    )
    if winft is None:
        print("Fig. 13 skipped: give --winft-model (and --winft-weights) to draw WinfT's predicted masks",
              file=sys.stderr)
    failed = written.failed
    tail = f"; {len(failed)} failed: {', '.join(failed)}" if failed else ""
    print(f"wrote figures of {len(images) - len(failed)} image(s) into {args.out}{tail}")
    return 1 if failed else 0
