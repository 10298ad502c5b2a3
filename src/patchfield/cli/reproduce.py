"""``patchfield reproduce``: the paper's tables and analysis claims at small scale (docs/reproduction.md)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..study.config import StudyConfig


def register(sub: argparse._SubParsersAction) -> None:
    from ..study.config import StudyConfig

    d = StudyConfig()
    p = sub.add_parser("reproduce", help="run (or resume) the small-scale reproduction study and write its report",
                       description="Every row starts from the pretrained ViT of its patch size (`make pretrain`); "
                       "a killed study resumes where it stopped, a run folder made with other settings is refused.")
    p.add_argument("--out", help="folder of the study's runs (default runs/reproduce); a rerun resumes it")
    p.add_argument("--doc", help="the markdown report to write (default docs/reproduction.md; its .json and "
                   "curve PNGs beside it)")
    p.add_argument("--grid", choices=("8", "14"),
                   help="which study: 8, the small grid's Tables 1-3 (default); 14, the 14x14 grid (56x56 inputs, "
                   "patch 4) with the controls on U, in its own --out (default runs/reproduce-14x14). Both write "
                   "their part of the same report; --status without --grid covers both")
    p.add_argument("--quick", action="store_true",
                   help="a seconds-long configuration with its own tiny pretrained start (smoke test of the protocol)")
    p.add_argument("--pretrained", help="folder of the pretrained ViTs (default: the package's, from make pretrain)")
    p.add_argument("--datasets", nargs="+", help=f"data sets (default: {' '.join(d.datasets)})")
    p.add_argument("--seeds", type=int, help=f"number of seeds of every row (default {len(d.seeds)})")
    p.add_argument("--steps", type=int, help=f"training steps per model on the embedded set (default {d.steps})")
    p.add_argument("--real-steps", type=int, help=f"training steps per model on real sets (default {d.real_steps})")
    p.add_argument("--jobs", type=int, default=1, help="(data set, seed) tasks trained at once in separate processes")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite the report from the finished study's results.json, running nothing")
    p.add_argument("--status", action="store_true",
                   help="say what the study folder holds so far and about how long is left, running nothing (safe "
                   "while the study runs)")
    p.add_argument("--progress", action="store_true", help="progress bars for every run")
    p.set_defaults(func=run)


def _config(args: argparse.Namespace, grid: int) -> StudyConfig:
    from ..study.config import GRID14, QUICK, QUICK14, StudyConfig, config_with

    base = {8: (StudyConfig(), QUICK), 14: (GRID14, QUICK14)}[grid][bool(args.quick)]
    mine = int(args.grid or 8) == grid  # --out and the scale options name this study
    return config_with(
        base, doc=args.doc, pretrained_root=args.pretrained, progress=args.progress or None,
        **(dict(out=args.out, datasets=tuple(args.datasets) if args.datasets else None,
                seeds=tuple(range(args.seeds)) if args.seeds else None, steps=args.steps, real_steps=args.real_steps)
           if mine else {}),
    )


def _print_status(cfg: StudyConfig, jobs: int, title: str, named: bool) -> None:
    """The status of one study folder, read from its files alone; ``named``: the folder ``--out`` and ``--grid``
    name, which must exist (the other grid's is reported as not begun when missing)."""
    from pathlib import Path

    from ..study.config import config_with
    from ..study.reproduce import recorded_config, study_status

    out = Path(cfg.out)
    if not out.is_dir():
        if named or out.exists():
            raise FileNotFoundError(f"--out {out}: {'a file, not a study folder' if out.exists() else 'no such folder'}"
                                    "; give the folder of a study begun with `patchfield reproduce`")
        print(f"{title} study in {cfg.out}: not begun")
        return
    own = recorded_config(out)
    if own is not None:  # the study's own plan (a --quick study's), whatever options this command has
        cfg = config_with(own, out=cfg.out)
    st = study_status(cfg, jobs=jobs)
    print(f"{title} study in {cfg.out}: {st['seconds'] / 3600:.2f} h so far (summed over its sessions)")
    for name, d in st["datasets"].items():
        print(f"  {name}: {d['done']} of {d['planned']} runs done, {d['started']} under way, "
              f"{d['steps_left']:,} training steps left")
    print(f"  analysis claims: {st['claims_done']} of {st['claims_planned']} seeds")
    left = "unknown until a run of each patch size finishes" if st["hours_left"] is None else (
        f"{'at least' if st['untimed'] else 'about'} {st['hours_left']:.1f} h of training on {jobs} processes (the "
        "runs' logged time per step" + (f"; {', '.join(st['untimed'])} not yet timed, counted at the other "
                                        "kinds' rate" if st["untimed"] else "")
        + "; stores, evaluations and claims come on top)")
    print(f"  left: {left}")


def run(args: argparse.Namespace) -> int:
    from ..study.reproduce import run_study, write_study_report

    grid = int(args.grid or 8)
    cfg = _config(args, grid)
    if args.status:
        for g, title in ((8, "small-grid"), (14, "14x14 grid")):
            if args.grid is None or grid == g:
                _print_status(_config(args, g), max(args.jobs, 2), title, named=g == grid)
        return 0
    if args.report_only:
        write_study_report(cfg)
        print(f"report rewritten: {cfg.doc}")
        return 0
    from ..utils.lock import FolderLock

    with FolderLock(cfg.out):  # each run folder inside is locked again by its training
        results = run_study(cfg, jobs=args.jobs)
    print(f"reproduction study: {len(results['rows'])} runs, {results['seconds'] / 60:.1f} min in all; "
          f"report in {cfg.doc}, results in {cfg.out}/results.json")
    return 0
