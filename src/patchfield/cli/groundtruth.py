"""``patchfield groundtruth``: every image's responsive field from a trained ViT, in a sharded store.

Resumable (run the same command again after a kill) and ``torchrun``-ready::

    torchrun --nproc_per_node 8 -m patchfield groundtruth --model vit_base_patch16_224 --weights w.safetensors \\
        --data imagefolder --data-root /data/imagenet --split train --alpha 0.1 --beta 0.2 --out gt/
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ._common import add_model_args, json_dict, model_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("groundtruth", help="store every image's responsive field (docs/spec.md §6) from a trained ViT",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    p.add_argument("--model-kwargs", type=json_dict, default={},
                   help="JSON object passed to timm.create_model (e.g. a small custom ViT)")
    p.add_argument("--data", required=True,
                   help="data set: synthetic, imagefolder, cub, fashion-mnist, mnist5k")
    p.add_argument("--data-root", help="folder of a folder data set (mnist5k: the CSV file)")
    p.add_argument("--data-kwargs", type=json_dict, default={},
                   help="JSON object for the data set builder, e.g. '{\"num_images\": 512}' for synthetic")
    p.add_argument("--split", default="train", help="split (default: %(default)s)")
    p.add_argument("--alpha", type=float, required=True, help="share of U's entries shaping windows (0, 1]")
    p.add_argument("--beta", type=float, required=True, help="share of patches dropped as indiscriminative [0, 1)")
    p.add_argument("--out", type=Path, required=True,
                   help="store folder (an unfinished one is resumed; locked while written)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    p.add_argument("--shard-size", type=int, default=4096, help="images per shard (the unit of resumption)")
    p.add_argument("--workers", type=int, default=0, help="data-loading processes")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: the local GPU when there is one)")
    p.add_argument("--amp", action="store_true", help="bf16 autocast for the forward (GPU; statistics stay in float)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data import build_dataset
    from ..groundtruth import build_groundtruth
    from ..preprocess import Preprocess

    model = model_from_args(args)
    preprocess = Preprocess.for_model(model)
    height, width = preprocess.size
    dataset = build_dataset(args.data, args.split, height if height == width else (height, width),
                            root=args.data_root, **{**preprocess.data_kwargs(), **args.data_kwargs})
    store = build_groundtruth(
        model, dataset, args.out, args.alpha, args.beta, batch_size=args.batch_size, shard_size=args.shard_size,
        num_workers=args.workers, device=args.device, amp=args.amp, model_name=args.model, dataset_name=args.data,
        progress=not args.no_progress,
    )

    if int(os.environ.get("RANK", "0")) == 0:
        failed = store.manifest["failed"]
        tail = f"; {len(failed)} unreadable image(s) recorded as invalid" if failed else ""
        print(f"ground truth of {len(store)} image(s) in {args.out}: grid {store.grid.height}x{store.grid.width}, "
              f"E_O {store.expected_interactions():.1f}{tail}")
    return 0
