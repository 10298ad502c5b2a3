"""``patchfield train``: ViT, AWD-ViT, AWD-ViT + DIP or WinfT, alone or under ``torchrun``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..kinds import KIND_NAMES, kind_by_name
from ..training.config import OPTIMIZERS, RECIPES, TrainConfig, recipe_accumulation
from ._common import json_dict

#: Options a --recipe sets unless they are given.
_RECIPE_KEYS = ("optimizer", "lr", "momentum", "epochs", "steps", "warmup_steps", "batch_size", "image_size")


def register(sub: argparse._SubParsersAction) -> None:
    d = TrainConfig(model="-")
    p = sub.add_parser(
        "train", help="train a ViT, AWD-ViT (+DIP) or WinfT (run under torchrun for several processes)",
        description="Defaults follow the paper's recipe (SGD momentum 0.9, lr 0.01, 500 warm-up steps, cosine); "
        "--recipe cub gives its CUB-200-2011 settings (448 px, batch 16, lr 0.03, 20,000 steps). "
        "The AWD and WinfT kinds need --groundtruth: the fields of a well-trained ViT (`patchfield groundtruth`).",
    )
    p.add_argument("--model", required=True, help="timm architecture name, e.g. vit_base_patch16_224")
    p.add_argument("--weights", help="local starting weights (.safetensors/.pth/.bin, timm or Hugging Face layout)")
    p.add_argument("--kind", choices=KIND_NAMES, default=d.kind.name, help="model kind (default: %(default)s)")
    p.add_argument("--model-kwargs", type=json_dict, default={},
                   help="JSON object passed to timm.create_model, e.g. '{\"patch_size\": 4, \"depth\": 4}'")
    p.add_argument("--data", default=d.data, help="data set: synthetic, imagefolder, cub, ... (default: %(default)s)")
    p.add_argument("--data-root", help="folder of a folder data set")
    p.add_argument("--data-kwargs", type=json_dict, default={},
                   help="JSON object for the data set builder, e.g. '{\"num_images\": 1024}'")
    p.add_argument("--split", default=d.split, help="split to train on (default: %(default)s)")
    p.add_argument("--recipe", choices=sorted(RECIPES),
                   help="the paper's settings for imagenet (batch 512: use --accum-steps) or cub; options given "
                   "explicitly win")
    p.add_argument("--image-size", type=int, help="input size in pixels (default: the model's)")
    p.add_argument("--groundtruth", help="ground-truth store of the training images (AWD and WinfT kinds)")
    p.add_argument("--out", required=True, type=Path, help="run folder")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="optimiser steps")
    length.add_argument("--epochs", type=float, help=f"epochs, when --steps is not given (default: {d.epochs:g})")
    p.add_argument("--batch-size", type=int, help=f"images per micro-batch and process (default: {d.batch_size})")
    p.add_argument("--accum-steps", type=int,
                   help="micro-batches per optimiser step (default: 1, or what --recipe's batch needs)")
    p.add_argument("--lr", type=float, help=f"peak learning rate (default: {d.lr})")
    p.add_argument("--min-lr", type=float, default=d.min_lr, help="learning rate at the end of the cosine")
    p.add_argument("--optimizer", choices=OPTIMIZERS,
                   help=f"optimiser (default: {d.optimizer}, the paper's; adamw suits small models from scratch)")
    p.add_argument("--momentum", type=float, help=f"SGD momentum (default: {d.momentum})")
    p.add_argument("--warmup-steps", type=int, help=f"linear warm-up steps (default: {d.warmup_steps})")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--lambda-ce", type=float, default=d.lambda_ce, help="weight of the cross-entropy")
    p.add_argument("--lambda-bce", type=float, default=d.lambda_bce, help="weight of the window BCE (WinfT)")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every,
                   help="steps between resumable checkpoints (0: only at the end)")
    p.add_argument("--log-every", type=int, default=d.log_every, help="steps between log lines")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--workers", type=int, default=d.workers, help="data-loading processes per training process")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--no-amp", action="store_true", help="no bf16 autocast on GPU")
    p.add_argument("--compile", nargs="?", const="inductor", metavar="BACKEND",
                   help="torch.compile the model (backend default inductor: Triton on GPU, a C++ compiler on CPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--stop-after-steps", type=int, help=argparse.SUPPRESS)  # debugging: stop as if killed
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` a parsed command line asks for."""
    chosen = dict(RECIPES[args.recipe]) if args.recipe else {}
    global_batch = chosen.pop("global_batch", None)
    given = {key: getattr(args, key) for key in _RECIPE_KEYS if getattr(args, key) is not None}
    if "steps" in given:
        chosen.pop("epochs", None)
    if "epochs" in given:
        chosen["steps"] = None
    chosen.update(given)
    chosen["accum_steps"] = args.accum_steps if args.accum_steps is not None else 1
    if global_batch is not None and args.accum_steps is None:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        chosen["accum_steps"] = recipe_accumulation(global_batch, chosen["batch_size"], world)
    return TrainConfig(
        model=args.model, kind=kind_by_name(args.kind), out=str(args.out), data=args.data, data_root=args.data_root,
        data_kwargs=args.data_kwargs, split=args.split, weights=args.weights, model_kwargs=args.model_kwargs,
        groundtruth=args.groundtruth, min_lr=args.min_lr,
        weight_decay=args.weight_decay, lambda_ce=args.lambda_ce, lambda_bce=args.lambda_bce,
        checkpoint_every=args.checkpoint_every, log_every=args.log_every, seed=args.seed, workers=args.workers,
        device=args.device, amp=False if args.no_amp else None, compile=args.compile, resume=args.resume,
        stop_after_steps=args.stop_after_steps, progress=not args.no_progress, **chosen,
    )


def run(args: argparse.Namespace) -> int:
    from ..training.loop import train

    result = train(config_from_args(args))
    last = result["last"]
    if result["finished"]:
        summary = ", ".join(f"{k} {last[k]:.4g}" for k in ("loss", "accuracy", "eo") if k in last)
        print(f"trained {result['step']} steps into {result['out']}" + (f" ({summary})" if summary else ""))
    else:
        print(f"stopped at step {result['step']}; continue with --resume")
    return 0
