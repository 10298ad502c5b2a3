"""``patchfield analyze``: per image, ``fields.json`` and the basic figures; ``analyze.json`` lists the images
analysed and those ``skipped`` (``[{"image", "reason"}]``; exit code 1 when any was)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from tqdm import tqdm

from ..analysis import analyze
from ..checks import check_rates
from ..devices import parse_device
from ..images import Skipped, read_batches, skip_reason
from ..utils.io import write_json_atomic
from ._common import add_baseline_args, add_model_args, awd_fields_from_args, model_from_args, preprocess_from_args

log = logging.getLogger("patchfield.analyze")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="analyse images: U, windows, DIP, responsive fields (JSON + PNG)")
    p.add_argument("images", nargs="+", type=Path, help="image files")
    add_model_args(p)
    add_baseline_args(p)
    p.add_argument("--alpha", type=float, default=0.1, help="share of U's entries shaping windows (0, 1]")
    p.add_argument("--beta", type=float, default=0.2, help="share of patches dropped as indiscriminative [0, 1)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu", help="torch device for the forward pass (e.g. cuda:0)")
    p.add_argument("--amp", action="store_true", help="bf16 autocast for the forward (GPU; statistics stay in float)")
    p.add_argument("--no-figures", action="store_true", help="write fields.json only")
    p.add_argument("--out", type=Path, required=True, help="output folder (one subfolder per image)")
    p.set_defaults(func=run)


def _safe_name(name: str) -> str:
    """``name`` as one folder name inside ``--out``: no leading dots (never ``.``, ``..`` or a hidden name),
    no separators or control characters, never empty (``...png`` -> ``image``)."""
    name = "".join("_" if c in "/\\" or not c.isprintable() else c for c in name).lstrip(".")
    return name or "image"


def _name_stages(path: Path, index: int) -> list[str]:
    """Ever longer output names of ``path``: its stem, parent-qualified stems (``sub__good``), the same with
    the suffix (``sub__good.png``), and last that with the argument's position (``sub__good.png@3``); each a
    safe folder name (:func:`_safe_name`)."""
    parts = [*path.parts[:-1], path.stem or "image"]
    stages = ["__".join(parts[-d:]) for d in range(1, len(parts) + 1)]
    full = "__".join([*parts[:-1], path.name or "image"])
    return [_safe_name(s) for s in (*stages, full, f"{full}@{index}")]


def _unique_names(paths: list[Path]) -> list[str]:
    """One output folder name per image path, unique by construction.

    Each image is named by its stem; where names collide, every colliding image takes its next, longer
    name (parent folders, then the suffix), checked again against every name of the run, until all differ
    (``good.png sub/good.png good_2.png`` -> ``good``, ``sub__good``, ``good_2``); parent folders are named
    from the folder all inputs share. The same file given twice is refused.

    Raises:
        ValueError: a file is given twice.
    """
    seen: dict[Path, Path] = {}
    for path in paths:
        key = Path(path).resolve()
        if key in seen:
            raise ValueError(f"{path} is given twice (as {seen[key]}): give each image once")
        seen[key] = path
    absolute = [Path(os.path.abspath(p)) for p in paths]
    base = Path(os.path.commonpath([p.parent for p in absolute])) if absolute else Path()
    relative = [p.relative_to(base) for p in absolute]  # parent folders named from the inputs' common folder
    stages = [_name_stages(p, i) for i, p in enumerate(relative)]
    depths = [len(p.parts) for p in relative]  # stages below this index are parent-qualified stems
    level = [0] * len(paths)
    while True:
        names = [s[k] for s, k in zip(stages, level)]
        groups: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            groups.setdefault(name, []).append(i)
        clashes = [g for g in groups.values() if len(g) > 1]
        if not clashes:
            return names
        for group in clashes:  # those that can still take a parent folder do; when none can, all go on
            deeper = [i for i in group if level[i] + 1 < depths[i]]
            for i in deeper or group:
                level[i] = min(level[i] + 1, len(stages[i]) - 1)


def run(args: argparse.Namespace) -> int:
    check_rates(args.alpha, args.beta, prefix="--")
    device = parse_device(args.device)
    model = model_from_args(args).to(device)
    fields = awd_fields_from_args(args, model, device, amp=args.amp)
    preprocess = preprocess_from_args(args, model)
    failed: list[Skipped] = []
    analysed: list[dict[str, str]] = []
    names = _unique_names(args.images)
    jobs = list(zip(args.images, names))
    bar = tqdm(total=len(jobs), unit="img", desc="analyze", file=sys.stderr)
    for chunk in read_batches(jobs, preprocess, args.batch_size):
        for (path, _), e in chunk.failed:
            print(f"skipped {path}: {skip_reason(e)}", file=sys.stderr)
            failed.append(Skipped(str(path), skip_reason(e)))
            bar.update(1)
        if chunk.images is None:
            continue
        crops, kept = chunk.crops, chunk.items
        images = chunk.images.to(device)
        result = analyze(model, images, args.alpha, args.beta, amp=args.amp,
                         forward_kwargs=fields(images) if fields else None)
        for i, (path, name) in enumerate(kept):
            folder = args.out / name
            record = {"image": str(path), **result.to_json(i)}
            if result.predicted_classes() is not None and "predicted_class" not in record:  # a classifier's NaN
                log.warning("%s: the model's output holds NaN or Inf values: no predicted class is reported", path)
            if record.get("degenerate"):
                log.warning("%s: the attention carries no information (U is constant): its windows and D are "
                            "decided by tie-breaking alone; marked \"degenerate\" in fields.json", path)
            if not args.no_figures:
                from ..figures.basic import write_basic_figures

                record["figures"] = write_basic_figures(result, i, crops[i], folder)
            write_json_atomic(folder / "fields.json", record)
            analysed.append({"image": str(path), "folder": name})
            bar.update(1)
    bar.close()
    write_json_atomic(args.out / "analyze.json", {"images": analysed, "skipped": [f.to_json() for f in failed]})
    done = len(jobs) - len(failed)
    tail = f"; {len(failed)} failed: {', '.join(f.image for f in failed)}" if failed else ""
    print(f"analysed {done} image(s) into {args.out}{tail}")
    return 1 if failed else 0
