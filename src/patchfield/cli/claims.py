"""``patchfield claims``: test the paper's analysis claims on a model and a data set with object masks.

Example, a timm ViT with local weights on a COCO-format folder::

    patchfield claims --model vit_base_patch16_224 --weights vit_b16.safetensors \\
        --data coco --data-root coco/val2017 --annotations coco/annotations/instances_val2017.json \\
        --limit 500 --alpha 0.1 0.05 --beta 0.2 0.5 --out claims/

Writes ``per_image.csv``, ``claims.png``, ``claims.md`` and, last, ``claims.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..checks import check_rates
from ..devices import parse_device
from ._common import add_model_args, model_from_args, preprocess_from_args


def register(sub: argparse._SubParsersAction) -> None:
    from ..data.registry import MASK_DATASET_NAMES

    p = sub.add_parser("claims", help="test the paper's analysis claims on a model and images with object masks",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    p.add_argument("--data", required=True, choices=MASK_DATASET_NAMES,
                   help="images with object masks: the embedded synthetic set, CUB-200-2011, COCO-format "
                        "instances, or a folder of images with a folder of mask PNGs")
    p.add_argument("--data-root", type=Path, help="image folder (cub: the CUB_200_2011 folder)")
    p.add_argument("--annotations", type=Path, help="coco: the instances JSON (file_name relative to --data-root)")
    p.add_argument("--mask-root", type=Path, help="masks: folder of PNG masks named like the images (nonzero = object)")
    p.add_argument("--category", nargs="+", help="coco: category names or ids making the mask (default: all)")
    p.add_argument("--split", default="val", help="synthetic/cub split (default: %(default)s)")
    p.add_argument("--limit", type=int, help="use at most this many images (synthetic: default 1000)")
    p.add_argument("--alpha", type=float, nargs="+", default=[0.1], help="window rates (0, 1] (default: 0.1)")
    p.add_argument("--beta", type=float, nargs="+", default=[0.2], help="DIP rates [0, 1) (default: 0.2)")
    p.add_argument("--random-inits", type=int, default=3,
                   help="random-weights controls of the same architecture, 1 to 100, built one at a time; each is "
                        "one more pass over the images (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first random initialisation")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..claims import measure_claims
    from ..data.registry import build_mask_dataset

    for alpha in args.alpha:
        check_rates(alpha, *args.beta, prefix="--")
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} is a file, not a folder")
    device = parse_device(args.device)
    model = model_from_args(args)
    preprocess = preprocess_from_args(args, model)  # the model's own, with --crop-pct/--mean/--std/--interpolation
    geometry = preprocess.data_kwargs()
    h, w = preprocess.size
    size = h if args.data == "synthetic" and h == w else (h, w)
    dataset = build_mask_dataset(
        args.data, args.split, size, args.data_root, annotations=args.annotations, mask_root=args.mask_root,
        category=args.category, num_images=args.limit if args.data == "synthetic" else None,
        **geometry,
    )
    report = measure_claims(
        model, dataset, args.alpha, args.beta, args.random_inits, batch_size=args.batch_size, device=device,
        seed=args.seed, limit=args.limit, model_name=str(args.model), progress=not args.no_progress,
    )
    paths = report.write(args.out)
    skipped = ", ".join(f"{k} {v}" for k, v in report.skipped.items() if v) or "none"
    print(f"measured {report.images} image(s) (skipped: {skipped}) into {args.out}")
    for setting in report.to_json()["settings"]:
        verdicts = ", ".join(f"{k}: {c['verdict']}" for k, c in setting["claims"].items())
        print(f"  alpha={setting['alpha']:g} beta={setting['beta']:g}: {verdicts}")
    print(f"report: {paths['claims.md']}")
    unreadable = report.extra.get("skipped_images", [])
    for entry in unreadable:
        print(f"skipped {entry['image']}: {entry['reason']}", file=sys.stderr)
    return 1 if unreadable else 0
