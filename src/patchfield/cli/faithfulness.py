"""``patchfield faithfulness``: deletion/insertion curves of patch orderings over a data set (JSON + plot)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..devices import parse_device
from ..images import ImageReadError, read_image
from ..preprocess import Preprocess
from ..utils.io import write_json_atomic
from ._common import add_model_args, model_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("faithfulness", help="deletion/insertion AUC of patch orderings: DIP, random, rollout")
    p.add_argument("images", nargs="*", type=Path, help="image files (or use --data)")
    add_model_args(p)
    p.add_argument("--data", help="a data set name (synthetic, imagefolder, cub, fashion-mnist, mnist5k)")
    p.add_argument("--root", type=Path, help="data folder for --data")
    p.add_argument("--split", default="val")
    p.add_argument("--num-images", type=int, help="use the first K images of --data (all by default)")
    p.add_argument("--methods", nargs="+", default=["dip", "random", "rollout"],
                   choices=["dip", "random", "rollout"])
    p.add_argument("--steps", type=int, default=16, help="steps per curve")
    p.add_argument("--baseline", choices=["mean", "blur"], default="mean", help="what removed patches become")
    p.add_argument("--seed", type=int, default=0, help="seed of the random ordering")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu", help="torch device for the forward passes (e.g. cuda:0)")
    p.add_argument("--svg", action="store_true", help="also write the plot as SVG")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.set_defaults(func=run)


def _batches(args: argparse.Namespace, preprocess: Preprocess):
    """Image batches and their count, from files or a data set."""
    if args.images and args.data:
        raise ValueError("give image files or --data, not both")
    if args.images:
        tensors, failed = [], []
        for path in args.images:
            try:
                tensors.append(preprocess(read_image(path))[0])
            except ImageReadError as e:
                print(f"skipped {e}", file=sys.stderr)
                failed.append(str(path))
        if not tensors:
            raise ValueError("none of the images could be read")
        batches = [torch.stack(tensors[i:i + args.batch_size]) for i in range(0, len(tensors), args.batch_size)]
        return batches, len(tensors), failed
    if not args.data:
        raise ValueError("no images: give image files or --data NAME (e.g. --data synthetic --num-images 64)")
    from torch.utils.data import DataLoader, Subset

    from ..data import build_dataset, collate_skip

    h, w = preprocess.size
    kw = preprocess.data_kwargs()
    if args.data == "synthetic" and args.num_images:
        kw["num_images"] = args.num_images
    ds = build_dataset(args.data, args.split, h if h == w else (h, w), args.root, **kw)
    if args.num_images:
        ds = Subset(ds, range(min(args.num_images, len(ds))))
    return DataLoader(ds, batch_size=args.batch_size, collate_fn=collate_skip), len(ds), []


def run(args: argparse.Namespace) -> int:
    from ..drawing import save_figure
    from ..figures.faithfulness import plot_faithfulness
    from ..metrics import evaluate_faithfulness

    if args.steps < 1:
        raise ValueError(f"--steps must be at least 1, got {args.steps}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    device = parse_device(args.device)
    model = model_from_args(args).to(device)
    batches, total, failed = _batches(args, Preprocess.for_model(model))
    result = evaluate_faithfulness(model, batches, methods=args.methods, steps=args.steps, baseline=args.baseline,
                                   seed=args.seed, device=device, total=total)
    write_json_atomic(args.out / "faithfulness.json", {"model": args.model, **result.to_json()})
    fig = plot_faithfulness(result)
    save_figure(fig, args.out / "faithfulness.png")
    if args.svg:
        save_figure(fig, args.out / "faithfulness.svg")
    for method, s in result.summary().items():
        print(f"{method:>8}: deletion AUC {s['deletion_auc']:.4f} ± {s['deletion_auc_std']:.4f}, "
              f"insertion AUC {s['insertion_auc']:.4f} ± {s['insertion_auc_std']:.4f} ({s['images']} images)")
    print(f"wrote {args.out / 'faithfulness.json'} and faithfulness.png")
    return 1 if failed else 0
