"""``patchfield evaluate``: top-1, top-5 and ``E_O`` of a trained model on a data set, as JSON.

Runs alone or under ``torchrun`` (each process takes every ``K``-th image; rank 0 reports).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ..kinds import KIND_NAMES, kind_by_name
from ..utils.io import write_json_atomic
from ._common import json_dict


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="top-1, top-5 and E_O of a run folder or a model on a data set (JSON)")
    p.add_argument("run_dir", nargs="?", type=Path, help="a finished `patchfield train` folder")
    p.add_argument("--model", help="timm architecture name (instead of a run folder)")
    p.add_argument("--weights", help="local weights of --model")
    p.add_argument("--kind", choices=KIND_NAMES, help="model kind (default: the run's, or vit)")
    p.add_argument("--model-kwargs", type=json_dict, default={}, help="JSON object for timm.create_model")
    p.add_argument("--data", default="synthetic", help="data set (default: %(default)s)")
    p.add_argument("--data-root", help="folder of a folder data set")
    p.add_argument("--data-kwargs", type=json_dict, default={}, help="JSON object for the data set builder")
    p.add_argument("--split", default="val", help="split to evaluate (default: %(default)s)")
    p.add_argument("--image-size", type=int, help="input size (must match the model's)")
    p.add_argument("--groundtruth", help="ground-truth store of these images (needed by the AWD kinds)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--out", type=Path, help="also write the JSON to this file")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..training.evaluation import evaluate_run

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    result = evaluate_run(
        run_dir=args.run_dir, model_name=args.model, weights=args.weights,
        kind=kind_by_name(args.kind) if args.kind else None,
        model_kwargs=args.model_kwargs, data=args.data, split=args.split, data_root=args.data_root,
        data_kwargs=args.data_kwargs, image_size=args.image_size, groundtruth=args.groundtruth,
        batch_size=args.batch_size, workers=args.workers, device=args.device, progress=not args.no_progress,
    )
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every process holds the totals; one reports
        if args.out is not None:
            write_json_atomic(args.out, result)
        print(json.dumps(result, indent=1))
    return 0
