"""``patchfield pretrain``: the pretrained start, one tiny ViT per patch size on generated radial contours."""

from __future__ import annotations

import argparse
from dataclasses import replace


def register(sub: argparse._SubParsersAction) -> None:
    from ..training.pretrain import PretrainConfig

    d = PretrainConfig()
    p = sub.add_parser(
        "pretrain", help="pretrain the study's tiny ViTs on generated radial contours (resumable)",
        description="Formula-driven supervised pretraining (RCDB-style radial contours, generated, never downloaded): "
        "one ViT per patch size, written to <out>/formula-p<patch>/ (model.safetensors + run.json with the "
        "held-out source top-1 and the training time). A rerun resumes unfinished runs and skips finished ones. "
        "Fine-tune with `patchfield train --weights <out>/formula-p4/model.safetensors`.",
    )
    p.add_argument("--out", help="folder of the runs (default: the package's assets/pretrained)")
    p.add_argument("--patch", type=int, nargs="+", help=f"patch sizes (default: {' '.join(map(str, d.patches))})")
    p.add_argument("--steps", type=int, help=f"optimiser steps per patch size (default: {d.steps})")
    p.add_argument("--batch-size", type=int, help=f"images per step (default: {d.batch_size})")
    p.add_argument("--lr", type=float, help=f"peak AdamW learning rate (default: {d.lr})")
    p.add_argument("--classes", type=int, help=f"classes of the generated source (default: {d.num_classes})")
    p.add_argument("--eval-images", type=int, help=f"held-out source images for source_top1 (default: {d.eval_images})")
    p.add_argument("--seed", type=int, help=f"seed of the initialisation and data order (default: {d.seed})")
    p.add_argument("--jobs", type=int, default=1,
                   help="patch sizes trained at once in separate processes, one thread each (default: 1)")
    p.add_argument("--quick", action="store_true", help="a seconds-long configuration (smoke test of the code path)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--stop-after-steps", type=int, help=argparse.SUPPRESS)  # tests: stop as if killed
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..training.pretrain import QUICK, PretrainConfig, pretrain

    cfg = QUICK if args.quick else PretrainConfig()
    given = {"root": args.out, "patches": tuple(args.patch) if args.patch else None, "steps": args.steps,
             "batch_size": args.batch_size, "lr": args.lr, "num_classes": args.classes,
             "eval_images": args.eval_images, "seed": args.seed, "stop_after_steps": args.stop_after_steps}
    cfg = replace(cfg, **{k: v for k, v in given.items() if v is not None})
    if args.no_progress:
        cfg = replace(cfg, progress=False)
    for rec in pretrain(cfg, jobs=args.jobs):
        if rec["finished"]:
            print(f"{rec['name']}: source top-1 {rec['source_top1']:.1%} on {cfg.eval_images} held-out images, "
                  f"{rec['steps']} steps ({rec['images']} images) in {rec['train_seconds']:.0f}s -> {rec['out']}")
        else:
            print(f"{rec['name']}: stopped at step {rec['step']}; run the same command again to continue")
    return 0
