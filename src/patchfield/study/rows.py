"""The study's rows: what is trained here, the paper's numbers beside them, and the rows that cannot run here.

A :class:`Row` is one line of Tables 1-3 at the study's scale: a model kind with fixed fields, trained
from the pretrained start (``start="pretrained"``) or from random weights (``start="scratch"``, the
headline rows only). :func:`control_rows` are the rows of the 14×14 grid: AWD with its windows from the
fine-tuned ViT and from two controls (:data:`WINDOW_SOURCES`), WinfT with and without its window BCE, and
the ViT at twice the schedule (the well-trained check). :data:`NOT_RUN` lists the paper's rows that need
ImageNet-1k or CUB-200-2011 at ViT-B scale, with the commands that run them on a user's machine and an
estimate of their GPU-hours (:func:`gpu_hours`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..kinds import AWD, AWD_DIP, VIT, WINFT_PAPER, WINFT_RESTRICT, Kind

__all__ = ["CONTROL_HEADLINE", "HEADLINE", "NOT_RUN_NOTE", "WINDOW_SOURCES", "Row", "control_rows", "gpu_hours",
           "not_run_rows", "rows_for"]

#: Rows run with the extra headline seeds and, from random weights, in the from-scratch arm.
HEADLINE = ("vit", "awd-0.1", "winft-paper")

#: Where a row's windows come from: ``trained``, the seed's fine-tuned ViT (docs/spec.md §3-§6); ``random-u``, the
#: same architecture with random weights (the library's initialisation, :func:`patchfield.claims.random_copy`);
#: ``local``, a fixed square around each patch, sized so that E_O is the trained windows' on the training images
#: (:func:`patchfield.windows.local_windows`).
WINDOW_SOURCES = ("trained", "random-u", "local")

#: The 14×14 rows run with every seed (``seeds`` and ``headline_seeds``); the others run with ``seeds`` only.
CONTROL_HEADLINE = ("vit", "awd-0.1", "awd-0.1-random-u", "awd-0.1-local", "winft-paper")


@dataclass(frozen=True)
class Row:
    """One row of a table: a model kind trained with fixed fields (or none), from one start."""

    table: str
    key: str
    label: str
    kind: Kind
    patch: int
    alpha: float | None = None
    beta: float = 0.0
    paper: tuple[float, float] | None = None  # (top-1 %, E_O) of the paper's corresponding row
    paper_full: int = 38416  # N² of that row's paper model (B/16: 38,416; B/32: 2,401)
    base: str = "vit"  # key of the ViT this row is compared with (same patch size, same start)
    start: str = "pretrained"
    windows: str = "trained"  # where its fields come from (WINDOW_SOURCES)
    lambda_bce: float = 1.0  # WinfT's λ2 (0: no window BCE)
    schedule: int = 1  # its steps are the study's times this

    def __post_init__(self) -> None:
        if self.windows not in WINDOW_SOURCES:
            raise ValueError(f"row {self.key!r}: windows must be one of {WINDOW_SOURCES}, got {self.windows!r}")

    def shaping(self) -> dict[str, Any]:
        """What makes its runs (not its label or the paper's numbers), as recorded in a run folder's settings;
        the fields at their defaults are left out, so a folder of the 8×8 study keeps its record."""
        out = {"key": self.key, "kind": self.kind.name, "patch": self.patch, "alpha": self.alpha,
               "beta": self.beta, "start": self.start}
        extra = {"windows": (self.windows, "trained"), "lambda_bce": (self.lambda_bce, 1.0),
                 "schedule": (self.schedule, 1)}
        return out | {k: v for k, (v, default) in extra.items() if v != default}


# The paper's rows (docs/spec.md §11) beside ours: ViT-B/16 ↔ our small patch, B/32 ↔ the larger one.
_T1 = {0.5: (81.62, 38334), 0.2: (81.25, 10283), 0.1: (81.90, 8866), 0.05: (80.60, 6801), 0.025: (78.28, 4971)}
_T2 = {0.1: (82.09, 7982), 0.2: (82.40, 7080), 0.5: (80.62, 4420)}


def rows_for(patch_sizes: tuple[int, ...], alphas: tuple[float, ...], betas: tuple[float, ...], dip_alpha: float,
             winft_alpha: float, winft_beta: float, keep: tuple[str, ...] | None = None) -> list[Row]:
    """The pretrained-start rows of one data set (``keep``: only these keys; ``None``: all)."""
    small, big = min(patch_sizes), max(patch_sizes)
    rows = [Row("1", "vit", f"ViT /{small}", VIT, small, paper=(81.20, 38416))]
    rows += [Row("1", f"awd-{a:g}", f"AWD-ViT α={a:g}", AWD, small, a, 0.0, _T1.get(a)) for a in alphas]
    rows += [
        Row("2", f"awd-dip-{b:g}", f"AWD-ViT α={dip_alpha:g} + DIP β={b:g}", AWD_DIP, small, dip_alpha, b,
            _T2.get(b))
        for b in betas
    ]
    paper3 = {(small, "vit"): (81.20, 38416), (big, "vit"): (74.46, 2401), (small, "winft"): (83.11, 16938),
              (big, "winft"): (78.74, 906)}
    for p in sorted(set(patch_sizes)):
        full = 38416 if p == small else 2401
        if p != small:
            rows.append(Row("3", f"vit-p{p}", f"ViT /{p}", VIT, p, paper=paper3[(p, "vit")], paper_full=full,
                            base=f"vit-p{p}"))
        for kind in (WINFT_PAPER, WINFT_RESTRICT):
            key = kind.name if p == small else f"{kind.name}-p{p}"
            rows.append(Row("3", key, f"WinfT /{p} ({kind.winft_mode} mode)", kind, p, winft_alpha, winft_beta,
                            paper3[(p, "winft")] if kind is WINFT_PAPER else None, full,
                            "vit" if p == small else f"vit-p{p}"))
    if keep is not None:
        rows = [r for r in rows if r.key in keep]
    return rows


def control_rows(patch: int, alpha: float, dip_beta: float, winft_alpha: float, winft_beta: float) -> list[Row]:
    """The 14×14 grid's rows: the ViT, AWD at ``alpha`` with windows from each of :data:`WINDOW_SOURCES`, WinfT
    (paper mode) with and without its window BCE, AWD + DIP ``dip_beta``, and the ViT at twice the schedule
    (key ``vit-2x``, table ``check``). Every row is compared with the ViT of its seed."""
    a = f"{alpha:g}"
    rows = [Row("G", "vit", f"ViT /{patch}", VIT, patch, paper=(81.20, 38416)),
            Row("G", f"awd-{a}", f"AWD-ViT α={a}, windows of the fine-tuned ViT", AWD, patch, alpha, 0.0,
                _T1.get(alpha)),
            Row("G", f"awd-{a}-random-u", f"AWD-ViT α={a}, windows of a random-weights U", AWD, patch, alpha,
                windows="random-u"),
            Row("G", f"awd-{a}-local", "AWD-ViT, a square window at the same E_O", AWD, patch, alpha,
                windows="local"),
            Row("G", "winft-paper", f"WinfT /{patch} (paper mode)", WINFT_PAPER, patch, winft_alpha, winft_beta,
                (83.11, 16938)),
            Row("G", "winft-paper-no-bce", f"WinfT /{patch} (paper mode), λ2 = 0", WINFT_PAPER, patch, winft_alpha,
                winft_beta, lambda_bce=0.0),
            Row("G", f"awd-dip-{dip_beta:g}", f"AWD-ViT α={a} + DIP β={dip_beta:g}", AWD_DIP, patch, alpha,
                dip_beta, _T2.get(dip_beta)),
            Row("check", "vit-2x", f"ViT /{patch}, twice the schedule", VIT, patch, schedule=2)]
    return rows


def gpu_hours(images: float, tokens: int, params: float = 86e6, flops: float = 312e12, utilisation: float = 0.3,
              factor: float = 6.0) -> float:
    """GPU-hours to pass ``images`` through a ViT: ``factor × params × tokens`` FLOPs per image.

    ``factor`` 6 is a training step (forward 2, backward 4 FLOPs per parameter and token), 2 a forward
    pass; the attention's ``n²`` term is left out (a few percent at 197 tokens, about 20% at 785). The
    GPU is an A100 (312 bf16 TFLOP/s) used at ``utilisation`` 30%, about what timm's ViT-B/16 reaches.

    >>> round(gpu_hours(15 * 1_281_167, 197), 1)
    5.8
    """
    return images * factor * params * tokens / (flops * utilisation) / 3600.0


def _imagenet(table: str, row: str, label: str, paper: tuple[float, float], patch: int, kind: Kind,
              alpha: float | None, beta: float) -> dict[str, Any]:
    model = f"vit_base_patch{patch}_224"
    tokens = (224 // patch) ** 2 + 1
    train = 15 * 1_281_167
    base = f"runs/imagenet/vit-b{patch}"
    weights = f"--weights weights/vit_base_patch{patch}_224.augreg_in21k.safetensors"
    tr = ("torchrun --nproc_per_node 8 -m patchfield train --model {m} {w} --kind {k} --data imagefolder "
          "--data-root data/imagenet/train --recipe imagenet --batch-size 64 --out {o}{gt}")
    cmds = []
    hours = gpu_hours(train, tokens)  # the fine-tune of this row
    if not kind.uses_groundtruth:
        cmds.append(tr.format(m=model, w=weights, k=kind.name, o=base, gt=""))
    else:
        store = f"runs/imagenet/gt-b{patch}-a{alpha:g}-b{beta:g}"
        hours += 2 * gpu_hours(1_331_167, tokens, factor=2.0)  # the stores: a forward with attention capture
        cmds.append(f"torchrun --nproc_per_node 8 -m patchfield groundtruth --model {base} --data imagefolder "
                    f"--data-root data/imagenet/train --alpha {alpha:g} --beta {beta:g} --out {store}-train")
        if kind.attends_fields:  # evaluating it needs the fields of the val images too
            cmds.append(f"torchrun --nproc_per_node 8 -m patchfield groundtruth --model {base} --data imagefolder "
                        f"--data-root data/imagenet/val --split val --alpha {alpha:g} --beta {beta:g} "
                        f"--out {store}-val")
        cmds.append(tr.format(m=model, w=weights, k=kind.name, o=f"runs/imagenet/{row}-b{patch}",
                              gt=f" --groundtruth {store}-train"))
    val_gt = f" --groundtruth runs/imagenet/gt-b{patch}-a{alpha:g}-b{beta:g}-val" if kind.attends_fields else ""
    out = f"runs/imagenet/{row}-b{patch}" if kind.uses_groundtruth else base
    cmds.append(f"torchrun --nproc_per_node 8 -m patchfield evaluate {out} --data imagefolder "
                f"--data-root data/imagenet/val --split val{val_gt}")
    return {"dataset": "imagenet-1k", "table": table, "row": row, "label": label, "patch": patch,
            "paper_top1": paper[0], "paper_eo": paper[1], "commands": cmds, "gpu_hours": round(hours, 1)}


def not_run_rows(alphas: tuple[float, ...], betas: tuple[float, ...], dip_alpha: float, winft_alpha: float,
                 winft_beta: float) -> list[dict[str, Any]]:
    """The paper's rows at ViT-B scale that this study cannot run: ImageNet-1k (Tables 1-3) and CUB (Table 4)."""
    rows = [_imagenet("1", "vit", "ViT-B/16", (81.20, 38416), 16, VIT, None, 0.0)]
    rows += [_imagenet("1", f"awd-{a:g}", f"AWD-ViT-B/16 α={a:g}", _T1[a], 16, AWD, a, 0.0) for a in alphas
             if a in _T1]
    rows += [_imagenet("2", f"awd-dip-{b:g}", f"AWD-ViT-B/16 α={dip_alpha:g} + DIP β={b:g}", _T2[b], 16, AWD_DIP,
                       dip_alpha, b) for b in betas if b in _T2]
    rows += [_imagenet("3", "vit-p32", "ViT-B/32", (74.46, 2401), 32, VIT, None, 0.0),
             _imagenet("3", "winft-paper", "WinfT-B/16", (83.11, 16938), 16, WINFT_PAPER, winft_alpha, winft_beta),
             _imagenet("3", "winft-paper-p32", "WinfT-B/32", (78.74, 906), 32, WINFT_PAPER, winft_alpha,
                       winft_beta)]
    cub_tokens = (448 // 16) ** 2 + 1
    cub_train = 20_000 * 16
    weights = "--weights weights/vit_base_patch16_224.augreg_in21k.safetensors"
    tr = ("torchrun --nproc_per_node 1 -m patchfield train --model vit_base_patch16_224 " + weights +
          " --kind {k} --data cub --data-root data/CUB_200_2011 --recipe cub --out {o}{gt}")
    ev = "python -m patchfield evaluate {o} --data cub --data-root data/CUB_200_2011 --split test"
    gt = (f"python -m patchfield groundtruth --model runs/cub/vit-b16 --data cub --data-root data/CUB_200_2011 "
          f"--image-size 448 --alpha {winft_alpha:g} --beta {winft_beta:g} --out runs/cub/gt-train")
    rows.append({"dataset": "cub-200-2011", "table": "4", "row": "vit", "label": "ViT-B/16 (448)", "patch": 16,
                 "paper_top1": 90.30, "paper_eo": 614656,
                 "commands": [tr.format(k=VIT.name, o="runs/cub/vit-b16", gt=""), ev.format(o="runs/cub/vit-b16")],
                 "gpu_hours": round(gpu_hours(cub_train, cub_tokens), 1)})
    rows.append({"dataset": "cub-200-2011", "table": "4", "row": "winft-paper", "label": "WinfT-B/16 (448)",
                 "patch": 16, "paper_top1": 90.58, "paper_eo": 207532,
                 "commands": [gt, tr.format(k=WINFT_PAPER.name, o="runs/cub/winft-b16",
                                            gt=" --groundtruth runs/cub/gt-train"), ev.format(o="runs/cub/winft-b16")],
                 "gpu_hours": round(gpu_hours(cub_train, cub_tokens) + gpu_hours(5994, cub_tokens, factor=2.0), 1)})
    return rows


NOT_RUN_NOTE = (
    "Data layout: `data/imagenet/{train,val}/<class>/*.JPEG` (ImageNet-1k, class folders also for val), "
    "`data/CUB_200_2011/` as distributed (images/, images.txt, train_test_split.txt, ...); the ImageNet-21k "
    "ViT-B weights as a local file (e.g. timm's `vit_base_patch16_224.augreg_in21k`, saved with "
    "`safetensors.torch.save_file(model.state_dict(), ...)`, and the /32 one alike). The ImageNet lines assume one "
    "node with 8 GPUs (`--batch-size 64` × 8 processes = the recipe's batch of 512). GPU-hours are estimated, not "
    "measured: images processed × 6 × 86 M parameters × tokens FLOPs (2 × for the ground-truth forward passes) on "
    "an A100 at 30% of its 312 bf16 TFLOP/s, the attention's n² term left out."
)

