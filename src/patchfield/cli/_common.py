"""Arguments and helpers shared by subcommands."""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Callable
from typing import Any

from torch import nn

from .. import checks

__all__ = ["NUMERIC_OPTIONS", "add_baseline_args", "add_model_args", "awd_fields_from_args", "check_numeric_options",
           "json_dict", "model_from_args"]


def _positive(v: Any, name: str) -> Any:
    return checks.check_positive_int(v, name)


def _nonnegative(v: Any, name: str) -> Any:
    return checks.check_nonnegative_int(v, name)


def _positive_float(v: Any, name: str) -> Any:
    return checks.check_finite(v, name, strict=True)


def _nonnegative_float(v: Any, name: str) -> Any:
    return checks.check_finite(v, name)


def _finite(v: Any, name: str) -> Any:
    return checks.check_finite(v, name, low=-math.inf)


def _whole(v: Any, name: str) -> Any:
    if isinstance(v, bool) or int(v) != v:
        raise ValueError(f"{name} must be a whole number, got {v}")
    return v


def _share(v: Any, name: str) -> Any:
    if not 0.0 < checks.check_finite(v, name, strict=True) <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {v}")
    return v


def _momentum(v: Any, name: str) -> Any:
    if not 0.0 <= checks.check_finite(v, name) < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {v}")
    return v


#: The rule of every numeric option of every subcommand, by its ``dest``: one place, applied by
#: :func:`check_numeric_options` before a subcommand runs (a new numeric option must be listed here;
#: ``tests/test_cli_fuzz.py`` checks that every one is).
NUMERIC_OPTIONS: dict[str, Callable[[Any, str], Any]] = {
    "alpha": checks.check_alpha,
    "beta": checks.check_beta,
    "betas": checks.check_beta,
    "batch_size": _positive,
    "shard_size": _positive,
    "steps": _positive,
    "epochs": _positive_float,
    "accum_steps": _positive,
    "log_every": _positive,
    "stop_after_steps": _positive,
    "checkpoint_every": _nonnegative,
    "warmup_steps": _nonnegative,
    "workers": _nonnegative,
    "jobs": _positive,
    "seed": checks.check_seed,
    "seeds": _positive,
    "num_images": _positive,
    "images": _positive,  # demo: how many validation images (analyze's are paths, not checked here)
    "image_size": _positive,
    "num_classes": _positive,
    "patch": _nonnegative,
    "patches": _nonnegative,
    "synthetic": _nonnegative,
    "fig2_dataset": _nonnegative,
    "lr": _positive_float,
    "min_lr": _nonnegative_float,
    "momentum": _momentum,
    "weight_decay": _nonnegative_float,
    "lambda_ce": _nonnegative_float,
    "lambda_bce": _nonnegative_float,
    # options of the claims, stats and pretrain subcommands
    "limit": _positive,
    "random_inits": checks.check_random_inits,
    "crop_pct": _share,
    "mean": _finite,  # the preprocessing overrides (add_preprocess_args), three values each
    "std": _positive_float,
    "classes": _positive,
    "eval_images": _positive,
    "block": _whole,  # a block index, negative from the end
    "real_steps": _positive,  # reproduce: steps on the real data sets
    "fields_alpha": checks.check_alpha,  # analyze: an AWD-ViT's ground-truth rates
    "fields_beta": checks.check_beta,
}


def check_numeric_options(args: argparse.Namespace) -> None:
    """Check every numeric option given against :data:`NUMERIC_OPTIONS`; ``ValueError`` naming the first bad one.

    Called by :func:`patchfield.cli.main` for every subcommand, before anything is loaded or written.
    """
    for dest, rule in NUMERIC_OPTIONS.items():
        value = getattr(args, dest, None)
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, (int, float)):
                rule(v, "--" + dest.replace("_", "-"))


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True,
        help="timm architecture name, Hugging Face model directory, `patchfield train` run folder, "
             "torchvision:vit_b_16 (torchvision: read from --weights) or open_clip:ViT-B-16 (docs/families.md)",
    )
    parser.add_argument("--weights", help="local weights file (.safetensors/.pth/.bin) or HF directory")
    parser.add_argument("--image-size", "--input-size", dest="image_size", type=int,
                        help="input size in pixels (position embeddings resampled)")
    parser.add_argument("--num-classes", type=int, help="classifier size (default: from the checkpoint)")
    parser.add_argument(
        "--random-weights", action="store_true", help="allow a randomly initialised model (no --weights)"
    )
    add_preprocess_args(parser)


def add_preprocess_args(parser: argparse.ArgumentParser) -> None:
    """Overrides of the model's own preprocessing (docs/preprocessing.md), for a checkpoint that does not record it."""
    from ..preprocess import INTERPOLATIONS

    parser.add_argument("--crop-pct", type=float, default=None,
                        help="centre-crop fraction: the photo is resized to input / crop-pct, then cropped (default: "
                             "the model's own; 1.0: resize the short side to the input)")
    parser.add_argument("--mean", type=float, nargs=3, metavar=("R", "G", "B"),
                        help="normalisation mean (default: the model's own)")
    parser.add_argument("--std", type=float, nargs=3, metavar=("R", "G", "B"),
                        help="normalisation std (default: the model's own)")
    parser.add_argument("--interpolation", choices=list(INTERPOLATIONS),
                        help="resampling of the photos (default: the model's own)")


def preprocess_from_args(args: argparse.Namespace, model: nn.Module) -> Any:
    """The model's preprocessing (:meth:`patchfield.preprocess.Preprocess.for_model`) with the command's
    ``--image-size``/``--crop-pct``/``--mean``/``--std``/``--interpolation`` overrides (docs/preprocessing.md)."""
    from ..introspect import is_huggingface
    from ..preprocess import Preprocess

    # timm models are built at --image-size (their patch embedding says it); a Hugging Face image processor is told
    size = getattr(args, "image_size", None) if is_huggingface(model) else None
    return Preprocess.for_model(model, size=size, crop_pct=getattr(args, "crop_pct", None),
                                mean=getattr(args, "mean", None), std=getattr(args, "std", None),
                                interpolation=getattr(args, "interpolation", None))


def add_baseline_args(parser: argparse.ArgumentParser) -> None:
    """The options that give an AWD-ViT the fields of its baseline ViT (:func:`awd_fields_from_args`)."""
    parser.add_argument("--baseline", help="for an AWD-ViT: the ViT it was trained from (run folder, Hugging Face "
                                           "directory, or timm name with --baseline-weights); its windows and D "
                                           "are computed for every image")
    parser.add_argument("--baseline-weights", help="local weights file of a --baseline given as a timm name")
    parser.add_argument("--fields-alpha", type=float,
                        help="α of the AWD-ViT's ground truth (default: read from the store its run was trained with)")
    parser.add_argument("--fields-beta", type=float,
                        help="β of the AWD-ViT's ground truth (default: read from the store its run was trained with)")
    parser.set_defaults(takes_awd_baseline=True)  # model_from_args: this command can run an AWD-ViT


def _store_manifest(run: str) -> dict[str, Any] | None:
    """The ``alpha``, ``beta`` (and ``weights``, the baseline's hash, while the store can still be read) of the
    ground-truth store a run folder was trained with; ``None`` when neither run.json nor the store gives them.

    run.json's ``groundtruth`` is the record ``patchfield train`` writes (``path``, ``alpha``, ``beta`` ...) or, in
    older run folders, the store's path alone; the store's manifest, when readable, completes it.
    """
    from pathlib import Path

    from ..groundtruth.store import MANIFEST
    from ..runs import is_run_directory, read_run_info

    if not is_run_directory(run):
        return None
    record = read_run_info(run).get("groundtruth")
    if isinstance(record, str):
        record = {"path": record}
    if not isinstance(record, dict):
        return None
    found = {k: record[k] for k in ("alpha", "beta") if isinstance(record.get(k), (int, float))}
    path = record.get("path")
    if isinstance(path, str) and path:
        try:
            stored = json.loads((Path(path) / MANIFEST).read_text())
        except (OSError, ValueError):  # the store moved, or its manifest is unreadable: run.json's rates stand
            stored = None
        if isinstance(stored, dict):
            found.update({k: stored[k] for k in ("alpha", "beta", "weights") if k in stored})
    return found or None


def _check_baseline(baseline: str, weights: str | None) -> None:
    """``ValueError`` unless ``--baseline`` is a model folder (and then without ``--baseline-weights``) or a name
    with ``--baseline-weights``."""
    from ..loading import is_model_directory

    if weights is None and not is_model_directory(baseline):
        raise ValueError(f"--baseline {baseline}: {_not_a_model_folder(baseline)}; give the ViT the AWD-ViT was "
                         "trained from as its run folder (or a timm name with --baseline-weights FILE)")
    if weights is not None and is_model_directory(baseline):
        raise ValueError(f"--baseline {baseline} is a model folder that holds its own weights: leave "
                         f"--baseline-weights {weights} out")


def _not_a_model_folder(path: str) -> str:
    """Why ``path`` is not a folder :func:`patchfield.loading.load_model` reads by itself."""
    from pathlib import Path

    from ..runs import MODEL_FILE, RUN_FILE

    if not Path(path).exists():
        return "no such folder"
    if not Path(path).is_dir():
        return "a file, not a run folder or Hugging Face model directory"
    return (f"not a finished run folder ({RUN_FILE} and {MODEL_FILE}) or a Hugging Face model directory "
            "(config.json)")


def _looks_like_a_path(name: str) -> bool:
    """``--model`` given as a path (a separator, a leading dot, or something there), not a timm name."""
    from pathlib import Path

    return "/" in name or "\\" in name or name.startswith(".") or Path(name).exists()


def awd_fields_from_args(args: argparse.Namespace, model: nn.Module, device: Any,
                         amp: bool = False) -> Callable[[Any], dict[str, Any]] | None:
    """For an AWD-ViT ``--model``: a function ``images -> forward_kwargs`` from ``--baseline`` (its fields, at the
    rates of its store or ``--fields-alpha``/``--fields-beta``, :func:`patchfield.analysis.awd_forward_kwargs`);
    ``None`` for any other model.

    Raises:
        ValueError: an AWD-ViT without ``--baseline``, ``--baseline`` for another model, or rates unknown.
    """
    from ..analysis import awd_forward_kwargs
    from ..introspect import model_grid, required_forward_kwargs
    from ..kinds import AWD_DIP, kind_by_name
    from ..runs import is_run_directory, read_run_info
    from ..utils.fingerprint import weights_hash

    if not required_forward_kwargs(model):
        given = [o for o, v in (("--baseline", args.baseline), ("--baseline-weights", args.baseline_weights),
                                ("--fields-alpha", args.fields_alpha), ("--fields-beta", args.fields_beta))
                 if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)}: for AWD-ViT models only, and {args.model} is not one; leave "
                             f"{'it' if len(given) == 1 else 'them'} out")
        return None
    if args.baseline is None:
        raise ValueError(f"{args.model} is an AWD-ViT: it attends within the windows of the ViT it was trained from; "
                         "give that ViT with --baseline RUN_FOLDER (or a timm name with --baseline-weights FILE)")
    _check_baseline(args.baseline, args.baseline_weights)
    store = _store_manifest(args.model)
    alpha = args.fields_alpha if args.fields_alpha is not None else store.get("alpha") if store else None
    beta = args.fields_beta if args.fields_beta is not None else store.get("beta") if store else None
    if alpha is None or beta is None:
        raise ValueError(f"the ground-truth store of {args.model} cannot be read: give the α and β it was built with, "
                         "--fields-alpha A --fields-beta B")
    alpha, beta = float(alpha), float(beta)
    kind = kind_by_name(read_run_info(args.model)["kind"]) if is_run_directory(args.model) else AWD_DIP
    spec = argparse.Namespace(model=args.baseline, weights=args.baseline_weights, image_size=args.image_size,
                              num_classes=None, random_weights=False)
    baseline = model_from_args(spec).to(device)
    mine, theirs = model_grid(model), model_grid(baseline)
    if mine != theirs:
        raise ValueError(f"--baseline {args.baseline} sees a {theirs.height}x{theirs.width} patch grid, the AWD-ViT a "
                         f"{mine.height}x{mine.width} one: give the ViT the AWD-ViT was trained from")
    if store is not None and store.get("weights") and store["weights"] != weights_hash(baseline):
        logging.getLogger("patchfield.cli").warning(
            "--baseline %s is not the ViT whose ground truth trained %s (its weights differ from the store's): its "
            "fields are not the ones the AWD-ViT was trained with", args.baseline, args.model)
    return lambda images: awd_forward_kwargs(baseline, images, alpha, beta, kind, amp=amp)


def model_from_args(args: argparse.Namespace) -> nn.Module:
    """The model of ``--model``/``--weights``/``--image-size``/``--num-classes`` (and ``--model-kwargs`` where the
    subcommand has it): a timm name with local weights, a Hugging Face directory or a run folder, for every
    subcommand alike.

    Raises:
        ValueError: no weights without ``--random-weights``, or an image size that is not a multiple of the
            patch size.
    """
    from ..loading import is_model_directory, load_model

    if args.weights is None and not is_model_directory(args.model) and _looks_like_a_path(args.model):
        raise ValueError(f"--model {args.model}: {_not_a_model_folder(args.model)}; give a run folder, a Hugging Face "
                         "model directory, or a timm name with --weights FILE")
    if args.weights is None and not args.random_weights and not is_model_directory(args.model):
        raise ValueError(
            f"no weights for {args.model}: pass --weights FILE (a local .safetensors/.pth/.bin in timm or "
            "Hugging Face layout, or a Hugging Face model directory), or --random-weights to analyse an untrained model"
        )
    kw = dict(getattr(args, "model_kwargs", None) or {})
    img_size = args.image_size if args.image_size is not None else kw.pop("img_size", None)
    num_classes = args.num_classes if args.num_classes is not None else kw.pop("num_classes", None)
    kw.pop("img_size", None), kw.pop("num_classes", None)
    model = load_model(args.model, args.weights, img_size=img_size, num_classes=num_classes, **kw)
    if not getattr(args, "takes_awd_baseline", False):  # a subcommand without add_baseline_args
        from ..introspect import required_forward_kwargs

        if required_forward_kwargs(model):
            raise ValueError(f"{args.model} is an AWD-ViT: it attends within the fields of the ViT it was trained "
                             "from, which only `patchfield analyze` and `patchfield explore` take (--baseline VIT); "
                             "this command runs ViTs and WinfT")
    pe = getattr(model, "patch_embed", None)
    if pe is not None and getattr(pe, "img_size", None) and getattr(pe, "patch_size", None):
        checks.check_image_size(tuple(pe.img_size), tuple(pe.patch_size),
                                "--image-size" if args.image_size is not None else "the model's image size")
    return model


def json_dict(text: str) -> dict:
    """``argparse`` type of the ``--model-kwargs``/``--data-kwargs`` options: a JSON object."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"patch_size\": 4}'")
    return value
