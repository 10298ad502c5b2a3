"""Arguments and helpers shared by subcommands."""

from __future__ import annotations

import argparse
import json

from torch import nn

from .. import checks
from ..devices import parse_device  # noqa: F401  (re-exported: the one device parser)

__all__ = ["add_model_args", "check_rates", "json_dict", "model_from_args", "parse_device"]


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True,
        help="timm architecture name, Hugging Face model directory, or a `patchfield train` run folder",
    )
    parser.add_argument("--weights", help="local weights file (.safetensors/.pth/.bin) or HF directory")
    parser.add_argument("--image-size", type=int, help="input size in pixels (position embeddings resampled)")
    parser.add_argument("--num-classes", type=int, help="classifier size (default: from the checkpoint)")
    parser.add_argument(
        "--random-weights", action="store_true", help="allow a randomly initialised model (no --weights)"
    )


def model_from_args(args: argparse.Namespace) -> nn.Module:
    from ..loading import is_model_directory, load_model

    if args.weights is None and not args.random_weights and not is_model_directory(args.model):
        raise ValueError(
            f"no weights for {args.model}: pass --weights FILE (a local .safetensors/.pth/.bin in timm or "
            "Hugging Face layout, or a Hugging Face model directory), or --random-weights to analyse an untrained model"
        )
    return load_model(args.model, args.weights, img_size=args.image_size, num_classes=args.num_classes)


def json_dict(text: str) -> dict:
    """``argparse`` type of the ``--model-kwargs``/``--data-kwargs`` options: a JSON object."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"patch_size\": 4}'")
    return value


def check_rates(alpha: float, *betas: float) -> None:
    """``ValueError`` unless ``--alpha`` is in (0, 1] and every ``--beta`` in [0, 1) (:mod:`patchfield.checks`)."""
    checks.check_rates(alpha, *betas, prefix="--")
