"""``patchfield demo``: the main job on the embedded default (grows with the project)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..analysis import analyze
from ..utils.io import write_json_atomic


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the whole method on the embedded default and write the results")
    p.add_argument("--out", type=Path, default=Path("demo_out"))
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--beta", type=float, default=0.2)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(img_size=32, patch_size=4, embed_dim=64, depth=4, num_heads=4, num_classes=4).eval()
    images = torch.randn(4, 3, 32, 32)
    result = analyze(model, images, args.alpha, args.beta)
    for i in range(len(images)):
        write_json_atomic(args.out / f"image_{i}" / "fields.json", result.to_json(i))
    print(f"E_O at alpha={args.alpha}, beta={args.beta}: {result.expected_interactions():.1f} "
          f"of {result.grid.n ** 2} (full attention); results in {args.out}/")
    return 0
