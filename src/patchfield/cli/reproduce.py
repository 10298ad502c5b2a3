"""``patchfield reproduce``: the paper's tables and analysis claims at small scale (docs/reproduction.md)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from ..study.config import StudyConfig

    d = StudyConfig()
    p = sub.add_parser("reproduce", help="run (or resume) the small-scale reproduction study and write its report",
                       description="Every row starts from the pretrained ViT of its patch size (`make pretrain`); "
                       "a killed study resumes where it stopped, a run folder made with other settings is refused.")
    p.add_argument("--out", help="folder of the study's runs (default runs/reproduce); a rerun resumes it")
    p.add_argument("--doc", help="the markdown report to write (default docs/reproduction.md; its .json and "
                   "curve PNGs beside it)")
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


def run(args: argparse.Namespace) -> int:
    from ..study.config import QUICK, StudyConfig, config_with
    from ..study.reproduce import run_study

    cfg = config_with(
        QUICK if args.quick else StudyConfig(), out=args.out, doc=args.doc, pretrained_root=args.pretrained,
        datasets=tuple(args.datasets) if args.datasets else None,
        seeds=tuple(range(args.seeds)) if args.seeds else None, steps=args.steps, real_steps=args.real_steps,
        progress=args.progress or None,
    )
    if args.status:
        from pathlib import Path

        from ..study.reproduce import recorded_config, study_status

        out = Path(cfg.out)
        if not out.is_dir():
            raise FileNotFoundError(f"--out {out}: {'a file, not a study folder' if out.exists() else 'no such folder'}"
                                    "; give the folder of a study begun with `patchfield reproduce`")
        own = recorded_config(out)
        if own is not None:  # the study's own plan (a --quick study's), whatever options this command has
            cfg = config_with(own, out=cfg.out)
        st = study_status(cfg, jobs=max(args.jobs, 2))
        print(f"study in {cfg.out}: {st['seconds'] / 3600:.2f} h so far (summed over its sessions)")
        for name, d in st["datasets"].items():
            print(f"  {name}: {d['done']} of {d['planned']} runs done, {d['started']} under way, "
                  f"{d['steps_left']:,} training steps left")
        print(f"  analysis claims: {st['claims_done']} of {st['claims_planned']} seeds")
        left = "unknown until a run of each patch size finishes" if st["hours_left"] is None else (
            f"about {st['hours_left']:.1f} h of training on {max(args.jobs, 2)} processes (the finished runs' time "
            "per step; stores, evaluations and claims come on top)")
        print(f"  left: {left}")
        return 0
    if args.report_only:
        from pathlib import Path

        from ..study.report import write_report
        from ..study.reproduce import read_study_json

        results_path = Path(cfg.out) / "results.json"
        if not results_path.is_file():
            raise FileNotFoundError(f"no finished study in {cfg.out} ({results_path} is missing): run it first")
        write_report(read_study_json(results_path), Path(cfg.doc))
        print(f"report rewritten: {cfg.doc}")
        return 0
    from ..utils.lock import FolderLock

    with FolderLock(cfg.out):  # each run folder inside is locked again by its training
        results = run_study(cfg, jobs=args.jobs)
    print(f"reproduction study: {len(results['rows'])} runs, {results['seconds'] / 60:.1f} min in all; "
          f"report in {cfg.doc}, results in {cfg.out}/results.json")
    return 0
