"""``patchfield explore``: one self-contained interactive HTML page for an image."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..checks import check_rates
from ..devices import parse_device
from ..images import read_image
from ..preprocess import Preprocess
from ._common import add_baseline_args, add_model_args, awd_fields_from_args, model_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explore", help="write an interactive, self-contained HTML explorer for one image")
    p.add_argument("image", type=Path, help="image file")
    add_model_args(p)
    add_baseline_args(p)
    p.add_argument("--alpha", type=float, default=0.1, help="initial alpha (0, 1]")
    p.add_argument("--beta", type=float, default=0.2, help="initial beta [0, 1)")
    p.add_argument("--patch", type=int, help="patch selected when the page opens (default: the centre)")
    p.add_argument("--full-attention", choices=["auto", "yes", "no"], default="auto",
                   help="embed every layer's and head's attention (auto: when it stays under 8 MB)")
    p.add_argument("--device", default="cpu", help="torch device for the forward pass (e.g. cuda:0)")
    p.add_argument("--out", type=Path, required=True, help="output HTML file")
    p.set_defaults(func=run)


@torch.no_grad()
def run(args: argparse.Namespace) -> int:
    from ..capture import block_output_norms, capture_attention
    from ..explorer import write_explorer
    from ..introspect import patch_size_of

    check_rates(args.alpha, args.beta, prefix="--")
    device = parse_device(args.device)
    model = model_from_args(args).to(device)
    fields = awd_fields_from_args(args, model, device)
    x, crop = Preprocess.for_model(model)(read_image(args.image))
    x = x[None].to(device)
    kwargs = fields(x) if fields else None  # an AWD-ViT's forward: within its baseline's fields
    with block_output_norms(model) as norms:  # the same forward: token norms for the artefact toggle
        maps = capture_attention(model, x, forward_kwargs=kwargs)
    block_norms = norms.result()[0, :, maps.num_prefix_tokens:]  # [blocks, N]
    full = {"auto": "auto", "yes": True, "no": False}[args.full_attention]
    out = args.out if args.out.suffix else args.out.with_suffix(".html")
    write_explorer(out, maps, crop, 0, args.alpha, args.beta, full_attention=full, patch=args.patch,
                   model_name=args.model, title=f"patchfield explorer: {args.image.name}",
                   patch_size=patch_size_of(model), norms=block_norms[-1], norm_block=block_norms.shape[0] - 1)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB); open it in a browser")
    return 0
