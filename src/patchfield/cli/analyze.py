"""``patchfield analyze``: per image, ``fields.json`` and the basic figures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from ..analysis import analyze
from ..images import ImageReadError, read_image
from ..preprocess import Preprocess
from ..utils.io import write_json_atomic
from ._common import add_model_args, check_rates, model_from_args, parse_device


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="analyse images: U, windows, DIP, responsive fields (JSON + PNG)")
    p.add_argument("images", nargs="+", type=Path, help="image files")
    add_model_args(p)
    p.add_argument("--alpha", type=float, default=0.1, help="share of U's entries shaping windows (0, 1]")
    p.add_argument("--beta", type=float, default=0.2, help="share of patches dropped as indiscriminative [0, 1)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu", help="torch device for the forward pass (e.g. cuda:0)")
    p.add_argument("--amp", action="store_true", help="bf16 autocast for the forward (GPU; statistics stay in float)")
    p.add_argument("--no-figures", action="store_true", help="write fields.json only")
    p.add_argument("--out", type=Path, required=True, help="output folder (one subfolder per image)")
    p.set_defaults(func=run)


def _unique_names(paths: list[Path]) -> list[str]:
    names, seen = [], {}
    for path in paths:
        stem = path.stem or "image"
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return names


def run(args: argparse.Namespace) -> int:
    check_rates(args.alpha, args.beta)
    device = parse_device(args.device)
    model = model_from_args(args).to(device)
    preprocess = Preprocess.for_model(model)
    failed: list[str] = []
    names = _unique_names(args.images)
    jobs = list(zip(args.images, names))
    bar = tqdm(total=len(jobs), unit="img", desc="analyze", file=sys.stderr)
    for start in range(0, len(jobs), args.batch_size):
        batch, crops, kept = [], [], []
        for path, name in jobs[start:start + args.batch_size]:
            try:
                x, crop = preprocess(read_image(path))
            except ImageReadError as e:
                print(f"skipped {e}", file=sys.stderr)
                failed.append(str(path))
                bar.update(1)
                continue
            batch.append(x)
            crops.append(crop)
            kept.append((path, name))
        if not batch:
            continue
        result = analyze(model, torch.stack(batch).to(device), args.alpha, args.beta, amp=args.amp)
        for i, (path, name) in enumerate(kept):
            folder = args.out / name
            record = {"image": str(path), **result.to_json(i)}
            if not args.no_figures:
                from ..figures.basic import write_basic_figures

                record["figures"] = write_basic_figures(result, i, crops[i], folder)
            write_json_atomic(folder / "fields.json", record)
            bar.update(1)
    bar.close()
    done = len(jobs) - len(failed)
    tail = f"; {len(failed)} failed: {', '.join(failed)}" if failed else ""
    print(f"analysed {done} image(s) into {args.out}{tail}")
    return 1 if failed else 0
