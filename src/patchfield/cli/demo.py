"""``patchfield demo``: the main job on the embedded default (see :mod:`patchfield.demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..checks import check_rates


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="analyse the embedded data set with the shipped demo models; figures + explorer")
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default demo_out)")
    p.add_argument("--alpha", type=float, default=0.1, help="share of U's entries shaping windows (0, 1]")
    p.add_argument("--beta", type=float, default=0.2, help="share of patches dropped as indiscriminative [0, 1)")
    p.add_argument("--images", type=int, default=6, help="validation images to analyse and draw")
    p.add_argument("--models", type=Path, help="demo models folder (default: the shipped ones)")
    p.add_argument("--train-models", type=Path, metavar="DIR",
                   help="instead: retrain the demo ViT and WinfT into DIR (minutes; how the shipped ones are made)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo, train_demo_models

    if args.train_models is not None:
        m = train_demo_models(args.train_models)
        print(f"demo models in {args.train_models}: ViT top-1 {m['vit']['top1']:.3f}, WinfT top-1 "
              f"{m['winft']['top1']:.3f} (E_O {m['winft']['eo']:.0f} of {m['winft']['eo_full']:.0f}), "
              f"{m['train_seconds'] / 60:.1f} min")
        return 0
    check_rates(args.alpha, args.beta, prefix="--")
    s = run_demo(args.out, args.models, args.images, args.alpha, args.beta)
    print()
    print("patchfield demo: a ViT trained on the embedded synthetic shapes (32x32 images, 8x8 patch grid)")
    print(f"  validation top-1: ViT {s['val_top1']['vit']:.1%}, WinfT {s['val_top1']['winft']:.1%}")
    print(f"  E_O at alpha={s['alpha']}, beta={s['beta']}: {s['eo_analysed_images']:.0f} of {s['eo_full']} "
          f"interactions ({s['eo_analysed_images'] / s['eo_full']:.1%}); WinfT predicts {s['winft_eo_val']:.0f}")
    print(f"  figures of the paper: {s['figures']}/<image>/*.png")
    print(f"  interactive page:     {s['explorer']}  (open it in a browser)")
    print(f"  summary:              {args.out / 'summary.json'}")
    return 0
