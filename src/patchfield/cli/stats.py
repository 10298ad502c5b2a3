"""``patchfield stats``: per-head mean attention distance and entropy, token norms, artefact tokens vs ``D``."""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

from tqdm import tqdm

from ..devices import parse_device
from ..images import read_batches, skip_reason
from ..utils.io import write_json_atomic
from ._common import add_preprocess_args, model_from_args, preprocess_from_args


class _ModelAction(argparse.Action):
    """``--model`` starts a new (model, weights) pair; ``--weights`` fills the last one."""

    def __call__(self, parser, namespace, value, option_string=None):
        pairs = list(getattr(namespace, "pairs", None) or [])
        if self.dest == "model":
            pairs.append([value, None])
        elif not pairs or pairs[-1][1] is not None:
            parser.error("each --weights follows the --model it belongs to (--model A --weights WA --model B ...)")
        else:
            pairs[-1][1] = value
        namespace.pairs = pairs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stats", help="per-head mean attention distance and entropy, token norms, artefact tokens and their overlap "
                      "with D (stats.json + PNG); several --model pairs give one comparison figure")
    p.add_argument("images", nargs="+", type=Path, help="image files")
    p.add_argument("--model", required=True, action=_ModelAction,
                   help="timm architecture name, Hugging Face model directory or run folder; repeat to compare models")
    p.add_argument("--weights", action=_ModelAction, help="local weights of the --model just before it")
    p.add_argument("--image-size", type=int, help="input size in pixels for every model")
    p.add_argument("--num-classes", type=int, help="classifier size (default: from the checkpoint)")
    p.add_argument("--random-weights", action="store_true", help="allow models without --weights (untrained)")
    add_preprocess_args(p)
    p.add_argument("--beta", type=float, default=0.2, help="share of patches in D for the overlap [0, 1)")
    p.add_argument("--block", type=int, default=-1, help="block whose output norms define artefacts (default: last)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu", help="torch device for the forward passes (e.g. cuda:0)")
    p.add_argument("--no-figures", action="store_true", help="write stats.json only")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.set_defaults(func=run, pairs=None)


#: Names in ``--out`` that are files, never a model's folder.
_RESERVED = ("stats.json", "comparison.png")


def _labels(models: list[str]) -> list[str]:
    """One label (and folder name inside ``--out``) per ``--model``: its last path part made safe, with ``_2``,
    ``_3`` ... added while the label is taken by an earlier one (``runs/tiny runs/tiny runs2/tiny_2`` ->
    ``tiny``, ``tiny_2``, ``tiny_2_2``)."""
    labels: list[str] = []
    for m in models:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(m.rstrip("/\\")).name or m).lstrip(".") or "model"
        label, k = base, 1
        while label in labels or label in _RESERVED:
            k += 1
            label = f"{base}_{k}"
        labels.append(label)
    return labels


def _model_stats(args, model_name: str, weights: str | None, label: str, names: list[str],
                 failed: dict[str, str]) -> dict:
    from ..stats import head_statistics, summarize_images

    spec_args = argparse.Namespace(model=model_name, weights=weights, image_size=args.image_size,
                                   num_classes=args.num_classes, random_weights=args.random_weights)
    model = model_from_args(spec_args).to(args.torch_device)
    preprocess = preprocess_from_args(args, model)
    folder = args.out / label
    records: list[dict] = []
    first = None
    jobs = list(zip(args.images, names))
    bar = tqdm(total=len(jobs), unit="img", desc=f"stats {label}", file=sys.stderr)
    for chunk in read_batches(jobs, preprocess, args.batch_size):
        bar.update(len(chunk.items) + len(chunk.failed))
        for (path, _), e in chunk.failed:
            failed[str(path)] = skip_reason(e)
        if chunk.images is None:
            continue
        crops, kept = chunk.crops, chunk.items
        stats = head_statistics(model, chunk.images.to(args.torch_device), beta=args.beta, block=args.block)
        first = first or stats
        for i, (path, name) in enumerate(kept):
            record = {"image": str(path), **stats.image_record(i)}
            if not args.no_figures:
                record["figures"] = _image_figures(stats, i, crops[i], folder / name)
            records.append(record)
    bar.close()
    if first is None:
        raise ValueError(f"none of the {len(jobs)} image(s) could be read; nothing to compute")
    heads = first.mean_distance.shape[-1]
    summary = {
        "model": model_name, "weights": weights, "label": label,
        "grid": [first.grid.height, first.grid.width], "patch_size": list(first.patch_size),
        "num_prefix_tokens": first.num_prefix_tokens, "layers": first.mean_distance.shape[1], "heads": heads,
        "blocks": first.norms.shape[1], "artefact_block": first.artefact_block, "beta": args.beta,
        **summarize_images(records),
    }
    if not args.no_figures:
        summary["figures"] = _model_figures(summary, folder, args.out)
    summary["per_image"] = records
    return summary


def _image_figures(stats, index: int, crop, folder: Path) -> dict[str, str]:
    from ..drawing import save_figure
    from ..figures.stats import plot_artefacts, plot_norm_histogram

    out = {}
    for key, fig in (("artefacts", plot_artefacts(crop, stats, index)), ("norm_histogram",
                                                                         plot_norm_histogram(stats, index))):
        out[key] = str(save_figure(fig, folder / f"{key}.png"))
    return out


def _model_figures(summary: dict, folder: Path, root: Path) -> dict[str, str]:
    from ..drawing import save_figure
    from ..figures.stats import plot_head_statistic

    label, n = summary["label"], summary["grid"][0] * summary["grid"][1]
    figs = {
        "mean_distance": plot_head_statistic(summary["mean_distance"], "mean attention distance (pixels)",
                                             f"{label}: mean attention distance per head"),
        "entropy": plot_head_statistic(summary["entropy"], "attention entropy (nats)",
                                       f"{label}: attention entropy per head", math.log(n),
                                       f"uniform: ln N = {math.log(n):.2f}"),
    }
    return {k: str(save_figure(f, folder / f"{k}.png")) for k, f in figs.items()}


def run(args: argparse.Namespace) -> int:
    from ..checks import check_beta, check_positive_int
    from .analyze import _unique_names

    check_beta(args.beta, "--beta")
    check_positive_int(args.batch_size, "--batch-size")
    args.torch_device = parse_device(args.device)
    pairs = args.pairs or []
    labels = _labels([m for m, _ in pairs])
    names = _unique_names(args.images)
    failed: dict[str, str] = {}
    models = [_model_stats(args, m, w, label, names, failed) for (m, w), label in zip(pairs, labels)]
    result = {"models": models, "skipped": [{"image": k, "reason": v} for k, v in failed.items()]}
    if len(models) > 1 and not args.no_figures:
        from ..drawing import save_figure
        from ..figures.stats import plot_comparison

        result["comparison"] = str(save_figure(plot_comparison([(m["label"], m) for m in models]),
                                               args.out / "comparison.png"))
    write_json_atomic(args.out / "stats.json", result)
    for image, why in failed.items():
        print(f"skipped {image}: {why}", file=sys.stderr)
    done = len(args.images) - len(failed)
    print(f"statistics of {len(models)} model(s) on {done} image(s) in {args.out / 'stats.json'}"
          + (f"; {len(failed)} failed" if failed else ""))
    return 1 if failed else 0
