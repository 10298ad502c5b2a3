"""Render the study's ``results.json`` as ``docs/reproduction.md`` (+ ``.json`` and training-curve PNGs).

The document leads with a summary table (claim, paper, ours with a 95% interval, verdict), then the
pretrained start, the protocol, the well-trained check of the baselines, Tables 1-3 per data set with
their training curves, Table 4 and the ImageNet rows (*not run here*, with commands and GPU-hours), and
the analysis claims per seed and combined over seeds. All statistics come from :mod:`.stats`.

With the 14×14 grid's study (the ``controls`` plan), the document leads with its summary (table claims with
Holm-adjusted p, analysis claims with a verdict against chance and one against random weights) and its
hand-written reading, then the small grid's part unchanged, then the 14×14 protocol, the twice-the-schedule
check, its rows and its analysis claims.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..utils.io import atomic_write, write_json_atomic
from ..verdicts import VERDICT_MEANINGS, holm
from .config import grid_of
from .rows import NOT_RUN_NOTE
from .stats import CONTROL_CLAIMS, TABLE_CLAIMS, combine_claims, row_stats, table_verdicts

__all__ = ["FORMAT", "GRID_KEY", "analysis_verdicts", "plot_curves", "results_of_report", "well_trained",
           "write_report"]

#: The key of the 14×14 grid's part in ``reproduction.json``.
GRID_KEY = "grid_14x14"

_TABLES = (("1", "Table 1: adaptive window design (AWD)"), ("2", "Table 2: AWD + DIP"),
           ("3", "Table 3: window-free transformer (WinfT)"))
#: The ``results.json`` format this version writes and renders.
FORMAT = "patchfield-reproduction/2"


def _num(x: float | None, fmt: str = ".2f") -> str:
    return "—" if x is None else format(x, fmt)


def _ci(c: dict[str, Any] | None, fmt: str = "+.2f") -> str:
    if not c or c.get("diff") is None:
        return "—"
    lo, hi = c["ci95"]
    return f"{_num(c['diff'], fmt)} [{_num(lo, fmt)}, {_num(hi, fmt)}] (n={c['n']})"


def analysis_verdicts(combined: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The combined analysis claims (seeds as the unit) as ``verdicts`` entries: ``diff``/``ci95`` against random
    weights, ``vs_null`` beside it."""
    from ..claims import CLAIMS

    out = []
    for setting in combined:
        for key, c in setting["claims"].items():
            out.append({"dataset": "synthetic", "table": "analysis", "start": "pretrained",
                        "claim": f"{CLAIMS[key][0]} (α={setting['alpha']:g}, β={setting['beta']:g})", "key": key,
                        "diff": c["vs_random"]["diff"], "ci95": c["vs_random"]["ci95"], "n": c["vs_random"]["n"],
                        "vs_null": c["vs_null"], "verdict": c["verdict"], "paper": None, "paper_diff": None,
                        "verdict_vs_chance": c.get("verdict_vs_chance"),
                        "verdict_vs_random": c.get("verdict_vs_random")})
    return out


def plot_curves(runs: list[dict[str, Any]], dataset: str, title: str, keys: list[str], path: Path) -> Path:
    """Validation top-1 over the schedule of ``keys``: one thin line per seed, one colour per row; a panel per
    start (pretrained, and from scratch when that arm ran), titled ``"<dataset>, <title>, <start> start"``."""
    from ..drawing import new_figure, save_figure

    mine = [r for r in runs if r["dataset"] == dataset and r["row"] in keys]
    starts = [s for s in ("pretrained", "scratch") if any(r["start"] == s for r in mine)]
    fig = new_figure(5.0 + 4.0 * len(starts), 4.2)
    axes = fig.subplots(1, len(starts), sharey=True, squeeze=False)[0]
    colours = {k: f"C{i % 10}" for i, k in enumerate(keys)}
    for ax, start in zip(axes, starts):
        labelled = set()
        for r in (r for r in mine if r["start"] == start):
            end = max(p["step"] for p in r["curve"])
            ax.plot([p["step"] / end for p in r["curve"]], [100.0 * p["top1"] for p in r["curve"]],
                    color=colours[r["row"]], lw=0.9, alpha=0.75, label=None if r["row"] in labelled else r["row"])
            labelled.add(r["row"])
        ax.axvline(0.8, color="#999999", lw=0.8, ls=":")
        ax.set_xlabel("share of the schedule (dotted: 80%)")
        ax.set_title(f"{dataset}, {title}, {start} start: a line per seed", fontsize=9)
        ax.legend(fontsize=7, ncol=2)
    axes[0].set_ylabel("validation top-1 % (curve images)")
    return save_figure(fig, path)


def _summary(verdicts: list[dict[str, Any]]) -> list[str]:
    lines = ["| claim | data set | start | paper | ours: difference, 95% CI (seeds) | verdict |",
             "|---|---|---|---|---|---|"]
    for v in verdicts:
        if v["table"] == "analysis":
            paper = "claimed (Sec. 4.2, 4.3)"
            ours = f"vs random weights {_ci(v, '+.3f')}; vs null {_ci(v['vs_null'], '+.3f')}"
        else:
            paper = f"{v['paper'][0]:.2f} vs {v['paper'][1]:.2f} ({v['paper_diff']:+.2f})" if v["paper"] else "—"
            ours = _ci(v)
        claim = v["claim"] if v["table"] == "analysis" else f"Table {v['table']}: {v['claim']}"
        lines.append(f"| {claim} | {v['dataset']} | {v['start']} | {paper} | {ours} | **{v['verdict']}** |")
    return lines


def _well_trained(results: dict[str, Any], stats: dict[str, list[dict[str, Any]]]) -> list[str]:
    cfg = results["config"]
    lines = [f"A baseline is *well trained* when its last 20% of the schedule gains less than "
             f"{cfg['well_trained_gain']:g} point of validation top-1 (the checkpoint at 80% and the final model, both "
             f"on all validation images; the curves in the figures are measured at {cfg['curve_points']} points on "
             f"the first {cfg['curve_images']:,} validation images).", "",
             "| data set | start | row | seeds | top-1 % (mean ± SD) | gain over the last 20%, per seed "
             "| well trained |",
             "|---|---|---|---|---|---|---|"]
    for dataset, rows in stats.items():
        for s in rows:
            if not s["row"].startswith("vit"):
                continue
            gains = [r["final_gain_last20pct"] for r in results["rows"] if r["dataset"] == dataset
                     and r["row"] == s["row"] and r["start"] == s["start"]]
            ok = all(g < cfg["well_trained_gain"] for g in gains)
            lines.append(f"| {dataset} | {s['start']} | {s['row']} | {s['seeds']} | {s['top1']:.2f} ± "
                         f"{_num(s['top1_sd'])} | {', '.join(f'{g:+.2f}' for g in gains)} | "
                         f"{'yes' if ok else '**no: not well trained**'} |")
    fm = [s for s in stats.get("fashion-mnist", []) if s["row"] == "vit" and s["start"] == "pretrained"]
    if fm:
        met = "meets" if fm[0]["top1"] >= 88.0 else "**does not meet**"
        lines += ["", f"Fashion-MNIST's fine-tuned ViT reaches {fm[0]['top1']:.2f}% (mean over {fm[0]['seeds']} "
                      f"seeds on its 10,000 test images): it {met} the study's bar of 88.0%."]
    return lines


def _table(stats: list[dict[str, Any]], rows_meta: dict[str, dict[str, Any]], table: str) -> list[str]:
    lines = ["| row | start | seeds | top-1 % (mean ± SD) | Δ top-1 vs its ViT, 95% CI | E_O (share of N²) "
             "| gain last 20% (mean; max) | paper: top-1 % | paper: E_O (share) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in stats:
        meta = rows_meta[s["row"]]
        if meta["table"] != table and s["row"] != "vit":  # the ViT beside every table's rows
            continue
        p_top, p_eo = ("—", "—")
        if meta.get("paper_top1") is not None:
            p_top = f"{meta['paper_top1']:.2f}"
            p_eo = f"{meta['paper_eo']:,.0f} ({100 * meta['paper_eo'] / meta['paper_full']:.1f}%)"
        lines.append(f"| {meta['label']} | {s['start']} | {s['seeds']} | {s['top1']:.2f} ± {_num(s['top1_sd'])} | "
                     f"{_ci(s['vs_base'])} | {s['eo']:,.0f} ({100 * s['eo'] / s['eo_full']:.1f}%) | "
                     f"{s['gain_mean']:+.2f}; {s['gain_max']:+.2f} | {p_top} | {p_eo} |")
    return lines


def _data_words(cfg: dict[str, Any], datasets: list[str]) -> list[str]:
    """How each data set of the run was used, in words."""
    out = []
    for d in datasets:
        if d == "synthetic":
            out.append(f"the embedded set's {cfg['train_images']:,} training images ({cfg['steps']} steps, scored on "
                       f"its {cfg['val_images']:,} validation images)")
        elif d == "fashion-mnist":
            out.append(f"Fashion-MNIST's 60,000 ({cfg['real_steps']} steps, scored on its 10,000 test images)")
        else:
            out.append(f"{d}'s training split ({cfg['real_steps']} steps, scored on its validation split)")
    return out


def _real_extra(cfg: dict[str, Any], datasets: list[str]) -> str:
    """The real sets' seeds of the headline rows and of the from-scratch arm, in words (empty without real sets)."""
    if all(d == "synthetic" for d in datasets):
        return ""
    extra = cfg.get("real_headline_seeds", cfg["headline_seeds"])
    scratch = cfg.get("real_scratch_seeds", cfg["scratch_seeds"])
    words = [f"extra headline seeds {', '.join(map(str, extra))}" if extra else "no extra headline seeds",
             f"from-scratch seeds {', '.join(map(str, scratch))}" if scratch else "no from-scratch arm"]
    return f". On the real sets: {' and '.join(words)} (what did not fit the time budget is left out)"


def _rows_meta(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The table rows of a study's plan (the 14×14 grid's twice-the-schedule ViT is a check, not a row)."""
    from .rows import control_rows, rows_for

    cfg = results["config"]
    meta = {}
    if cfg.get("plan", "tables") == "controls":
        rows = [r for r in control_rows(min(cfg["patch_sizes"]), cfg["dip_alpha"], 0.2, cfg["winft_alpha"],
                                        cfg["winft_beta"]) if r.table != "check"]
    else:
        rows = rows_for(tuple(cfg["patch_sizes"]), tuple(cfg["alphas"]), tuple(cfg["betas"]), cfg["dip_alpha"],
                        cfg["winft_alpha"], cfg["winft_beta"])
    for r in rows:
        meta[r.key] = {"table": r.table, "label": r.label, "base": r.base, "paper_full": r.paper_full,
                       "paper_top1": r.paper[0] if r.paper else None, "paper_eo": r.paper[1] if r.paper else None}
    return meta


def _not_run(results: dict[str, Any]) -> list[str]:
    lines = ["| data set | table | row | paper: top-1 % | paper: E_O | GPU-hours (estimate) | here |",
             "|---|---|---|---|---|---|---|"]
    for r in results["not_run"]:
        lines.append(f"| {r['dataset']} | {r['table']} | {r['label']} | {r['paper_top1']:.2f} | {r['paper_eo']:,} | "
                     f"{r['gpu_hours']:.1f} | *not run here* |")
    lines += ["", NOT_RUN_NOTE, "", "Commands, per row:", ""]
    for r in results["not_run"]:
        lines += [f"- {r['dataset']}, Table {r['table']}, {r['label']} (about {r['gpu_hours']:.1f} GPU-hours):", "",
                  "  ```", *(f"  {c}" for c in r["commands"]), "  ```", ""]
    return lines


def _analysis(results: dict[str, Any], combined: list[dict[str, Any]], two_verdicts: bool = False) -> list[str]:
    from ..claims import CLAIMS, claims_table

    cfg = results["config"]
    per_seed = results["claims"].get("seeds", {})
    if not per_seed:
        return ["(not measured: the embedded data set was not part of this run)"]
    lines = [f"Measured by `patchfield.claims` (the code behind `patchfield claims`) on each seed's fine-tuned "
             f"baseline (patch {min(cfg['patch_sizes'])}, from the pretrained start), {cfg['claim_images']} validation "
             f"images of the embedded set, against the same architecture with random weights "
             f"({cfg['claim_random_inits']} initialisation(s) per seed) and the claim's null. The combination takes "
             "the seed as the unit: each seed's mean over images, then the mean over seeds with a 95% t-interval "
             "(images are not pooled).", "",
             f"**What the verdicts mean.** {VERDICT_MEANINGS} Here, combined over seeds, the pairs are seeds.", "",
             "### Combined over seeds", ""]
    if two_verdicts:
        lines += ["| claim | α, β | trained (mean over seeds) | random weights | null | trained − null, 95% CI | "
                  "verdict vs chance | trained − random, 95% CI | verdict vs random weights |",
                  "|---|---|---|---|---|---|---|---|---|"]
    else:
        lines += ["| claim | α, β | trained (mean over seeds) | random weights | null | trained − null, 95% CI | "
                  "trained − random, 95% CI | verdict |", "|---|---|---|---|---|---|---|---|"]
    for setting in combined:
        for key, c in setting["claims"].items():
            if two_verdicts:
                lines.append(f"| {CLAIMS[key][0]} | {setting['alpha']:g}, {setting['beta']:g} | "
                             f"{_num(c['trained'][0], '.3f')} | {_num(c['random'][0], '.3f')} | "
                             f"{_num(c['null'][0], '.3f')} | {_ci(c['vs_null'], '+.3f')} | "
                             f"**{c['verdict_vs_chance']}** | {_ci(c['vs_random'], '+.3f')} | "
                             f"**{c['verdict_vs_random']}** |")
                continue
            lines.append(f"| {CLAIMS[key][0]} | {setting['alpha']:g}, {setting['beta']:g} | "
                         f"{_num(c['trained'][0], '.3f')} | {_num(c['random'][0], '.3f')} | "
                         f"{_num(c['null'][0], '.3f')} | {_ci(c['vs_null'], '+.3f')} | {_ci(c['vs_random'], '+.3f')} "
                         f"| **{c['verdict']}** |")
    for seed, report in per_seed.items():
        lines += ["", f"### Seed {seed} ({report['images']} images; mean ± SD over images)", ""]
        for setting in report["settings"]:
            lines += [f"α = {setting['alpha']:g}, β = {setting['beta']:g}:", "", *claims_table(setting["claims"]), ""]
    return lines


@dataclass(frozen=True)
class _Study:
    """What every section of the report is rendered from: the results, their rows' statistics and verdicts."""

    results: dict[str, Any]
    path: Path
    meta: dict[str, dict[str, Any]]
    datasets: list[str]
    stats: dict[str, list[dict[str, Any]]]
    verdicts: list[dict[str, Any]]
    combined: list[dict[str, Any]]

    @property
    def cfg(self) -> dict[str, Any]:
        return self.results["config"]

    @property
    def controls(self) -> bool:
        """The 14×14 grid's study (the ``controls`` plan)."""
        return self.cfg.get("plan", "tables") == "controls"

    @classmethod
    def of(cls, results: dict[str, Any], path: Path) -> _Study:
        cfg = results["config"]
        runs = results["rows"]
        meta = _rows_meta(results)
        datasets = [d for d in cfg["datasets"] if d not in results.get("skipped", {})]
        claims = CONTROL_CLAIMS if cfg.get("plan", "tables") == "controls" else TABLE_CLAIMS
        stats: dict[str, list[dict[str, Any]]] = {}
        verdicts: list[dict[str, Any]] = []
        for dataset in datasets:
            stats[dataset] = [s for key in meta for start in ("pretrained", "scratch")
                              if (s := row_stats(runs, dataset, start, key, meta[key]["base"])) is not None]
            verdicts += table_verdicts(runs, dataset, cfg["patch_sizes"], cfg["margin"], claims)
        patch = {r["row"]: r["patch"] for r in runs}
        for v, p in zip(verdicts, holm([math.nan if v["p"] is None else v["p"] for v in verdicts])):
            v["grid"], v["p_holm"] = grid_of(cfg, patch[v["a"]]), None if math.isnan(p) else p
        combined = combine_claims(list(results["claims"].get("seeds", {}).values()))
        analysis = analysis_verdicts(combined)
        for v in analysis:
            v["grid"] = grid_of(cfg, min(cfg["patch_sizes"]))
        return cls(results, path, meta, datasets, stats, verdicts + analysis, combined)


def _title_section(study: _Study) -> list[str]:
    results = study.results
    hours = results["seconds"] / 3600.0
    return [
        "# Reproduction of the paper's claims at small scale, from a pretrained start",
        "",
        "Generated by `patchfield reproduce` (`make reproduce`); every number below comes from "
        f"`{study.path.with_suffix('.json').name}` beside this file. Total run time: **{hours:.2f} hours** "
        f"({results['seconds'] / 60:.1f} minutes, summed over the sessions that ran it) on {results['machine']}; "
        f"estimated at the start of its last session for {results['budget']['runs']} runs from step times measured "
        f"there: {results['budget']['hours']:.1f} h on idle cores, {results['budget']['hours_at_current_load']:.1f} h "
        "at the load of that moment.",
        "",
    ]


def _summary_section(study: _Study) -> list[str]:
    return [
        "## Summary",
        "",
        *_summary(study.verdicts),
        "",
        f"**What the verdicts mean.** For the tables, the unit is the seed: every row of a seed starts from the "
        "same pretrained weights (or the same initialisation) with the same data order and budget, so a claim is "
        "the per-seed difference of its two rows (top-1 points), its mean and 95% Student-t interval over seeds. "
        "**supported**: the interval excludes 0 in the claim's direction; **contradicted**: it excludes 0 the other "
        "way; **not supported**: it holds 0 (or there are too few seeds to tell). A claim that a row *stays close* "
        f"is an equivalence test within ±{study.cfg['margin']:g} point (two one-sided tests at 5%, i.e. the 90% "
        "interval inside the margin): *supported* when equivalent, *contradicted* when the 95% interval lies wholly "
        f"beyond the margin, else *not supported*. The analysis claims: {VERDICT_MEANINGS}",
        "",
    ]


def _reading_section(study: _Study) -> list[str]:
    """The hand-written reading ``<name>_reading.md`` beside the report, when there is one."""
    notes = study.path.with_name(f"{study.path.stem}_reading.md")
    return [notes.read_text().rstrip(), ""] if notes.is_file() else []


def _pretrained_section(study: _Study) -> list[str]:
    return [
        "## The pretrained start",
        "",
        "| name | patch | source | source top-1 % (held-out) | pretraining time |",
        "|---|---|---|---|---|",
        *(f"| {p['name']} | {p['patch']} | {p['source']} | {100 * p['source_top1']:.2f} | "
          f"{p['train_seconds'] / 60:.1f} min |" for p in study.results["pretrained"]),
        "",
    ]


def _protocol_section(study: _Study) -> list[str]:
    cfg = study.cfg
    return [
        "## Protocol",
        "",
        f"Every row of every table starts from the pretrained ViT of its patch size (above; `make pretrain`), patch "
        f"sizes {', '.join(map(str, cfg['patch_sizes']))} standing in for B/16 and B/32. The baseline ViT is "
        f"fine-tuned on all training images: {' and '.join(_data_words(cfg, study.datasets))}; batch "
        f"{cfg['batch_size']}, {cfg['optimizer']} at lr {cfg['lr']:g} ({cfg['warmup_steps']} warm-up steps, cosine), "
        f"weight decay {cfg['weight_decay']:g}. Windows and DIP sets come from each seed's fine-tuned baseline "
        "(docs/spec.md §3-§6) for the training and validation images; AWD models use them at training and "
        f"inference, WinfT only as the target of its BCE (α={cfg['winft_alpha']:g}, β={cfg['winft_beta']:g}). "
        "Every other row is trained from the same pretrained start with the baseline's budget and data order "
        "(same seed). Seeds "
        f"{', '.join(map(str, cfg['seeds']))} for every row, {', '.join(map(str, cfg['headline_seeds']))} more for "
        "the headline rows (ViT, AWD α=0.1, WinfT paper mode) on the embedded set, where the from-scratch arm "
        f"(seeds {', '.join(map(str, cfg['scratch_seeds']))}) trains the headline rows from random weights with the "
        "same budget and the fine-tuned baseline's windows, so a reader sees whether pretraining changes a "
        f"conclusion{_real_extra(cfg, study.datasets)}. "
        "Every run records its validation curve at "
        f"{cfg['curve_points']} points (first {cfg['curve_images']:,} validation images). Spreads are sample "
        "standard deviations over seeds.",
        "",
    ]


def _baselines_section(study: _Study) -> list[str]:
    lines = ["## Are the baselines well trained?", "", *_well_trained(study.results, study.stats), ""]
    for name, why in study.results.get("skipped", {}).items():
        lines += [f"Data set `{name}` was skipped: {why}", ""]
    return lines


def _dataset_section(study: _Study, dataset: str) -> list[str]:
    """A data set's Tables 1-3 with their training curves (drawn beside the report) and Table 1's E_O per α."""
    stats, meta = study.stats[dataset], study.meta
    figures = study.path.parent / study.path.stem
    lines = [f"## Data set: {dataset}", ""]
    for table, title in _TABLES:
        if not any(meta[s["row"]]["table"] == table and s["row"] != "vit" for s in stats):
            continue  # no row of this table ran on this data set (the ViT alone is no table)
        keys = sorted({s["row"] for s in stats if meta[s["row"]]["table"] == table} | {"vit"})
        png = plot_curves(study.results["rows"], dataset, f"Table {table}", keys,
                          figures / f"{dataset}-table{table}.png")
        lines += [f"### {title}", "", *_table(stats, meta, table), "",
                  f"![training curves, {dataset}, Table {table}]({figures.name}/{png.name})", ""]
    eos = [(s["row"], s["eo"]) for s in stats if s["row"].startswith("awd-") and
           not s["row"].startswith("awd-dip") and s["start"] == "pretrained"]
    if eos:
        lines += ["E_O per α (Table 1): " + ", ".join(f"{k[4:]}: {v:,.0f}" for k, v in eos), ""]
    return lines


def _datasets_section(study: _Study) -> list[str]:
    return [line for dataset in study.datasets for line in _dataset_section(study, dataset)]


def _not_run_section(study: _Study) -> list[str]:
    return ["## Rows not run here: Table 4 (CUB-200-2011 at 448) and ImageNet-1k (Tables 1-3)", "",
            *_not_run(study.results)]


def _analysis_section(study: _Study) -> list[str]:
    return ["## The analysis claims (Sec. 4.2, 4.3) on the embedded set's object masks", "",
            *_analysis(study.results, study.combined), ""]


#: The report's sections, in order; each renders its lines from the study.
_SECTIONS: tuple[Callable[[_Study], list[str]], ...] = (
    _title_section, _summary_section, _reading_section, _pretrained_section, _protocol_section,
    _baselines_section, _datasets_section, _not_run_section, _analysis_section,
)


def _p(x: float | None) -> str:
    return "—" if x is None else f"{x:.3g}"


def _grid_words(study: _Study) -> str:
    cfg = study.cfg
    g = grid_of(cfg, min(cfg["patch_sizes"]))
    return f"{g[0]}×{g[1]} grid (N = {g[0] * g[1]}; {cfg['image_size']}×{cfg['image_size']} inputs, patch " \
           f"{min(cfg['patch_sizes'])})"


def _grid_title(study: _Study) -> list[str]:
    results, budget = study.results, study.results["budget"]
    return [
        "# Reproduction of the paper's claims: a 14×14 grid, then the small grid",
        "",
        f"Generated by `patchfield reproduce`; every number below comes from `{study.path.with_suffix('.json').name}` "
        f"beside this file. The {_grid_words(study)} comes first: {budget['runs']} runs, "
        f"**{results['seconds'] / 3600.0:.2f} hours** (summed over the sessions that ran it) on {results['machine']}; "
        f"estimated at the start of its last session from step times measured there: {budget['hours']:.1f} h on "
        f"idle cores, {budget['hours_at_current_load']:.1f} h at the load of that moment. The small grid's study "
        "(8×8 at patch 4, 4×4 at patch 8) follows as it was reported.",
        "",
    ]


def _grid_summary(study: _Study) -> list[str]:
    lines = ["## Summary: the 14×14 grid", "",
             "| claim | paper | ours: difference, 95% CI (seeds) | p (Holm) | verdict |", "|---|---|---|---|---|"]
    for v in study.verdicts:
        if v["table"] == "analysis":
            lines.append(f"| {v['claim']} | claimed (Sec. 4.2, 4.3) | vs chance {_ci(v['vs_null'], '+.3f')}; "
                         f"vs random weights {_ci(v, '+.3f')} | — | vs chance **{v['verdict_vs_chance']}**; vs "
                         f"random weights **{v['verdict_vs_random']}** |")
            continue
        paper = f"{v['paper'][0]:.2f} vs {v['paper'][1]:.2f} ({v['paper_diff']:+.2f})" if v["paper"] else "—"
        lines.append(f"| {v['claim']} | {paper} | {_ci(v)} | {_p(v['p'])} ({_p(v['p_holm'])}) | "
                     f"**{v['verdict']}** |")
    return lines + [
        "",
        "**What the verdicts mean.** The unit is the seed: every row of a seed starts from the same pretrained "
        "weights with the same data order and budget, so a claim is the per-seed difference of its two rows (top-1 "
        "points), its mean and 95% Student-t interval over seeds: **supported** when the interval excludes 0 in the "
        "claim's direction, **contradicted** when it excludes 0 the other way, else **not supported**. p is the "
        "paired t-test's; Holm's adjustment is over the table's claims. Each analysis claim has two verdicts, read "
        f"apart: against its null (chance) and against the same network with random weights. {VERDICT_MEANINGS}",
        "",
    ]


def _grid_reading(study: _Study) -> list[str]:
    """The hand-written reading ``<name>_14x14_reading.md`` beside the report, or a marked slot for it."""
    notes = study.path.with_name(f"{study.path.stem}_14x14_reading.md")
    if notes.is_file():
        return [notes.read_text().rstrip(), ""]
    return ["## Reading the 14×14 grid", "",
            f"> **Slot for the hand-written reading** (`{notes.name}` beside this file): what the controls show about "
            "U. Not written yet; nothing in this slot is a result.", ""]


def _grid_protocol(study: _Study) -> list[str]:
    cfg = study.cfg
    extra = ", ".join(map(str, cfg["headline_seeds"]))
    return [
        "# The 14×14 grid: protocol, rows and analysis claims", "",
        "## Protocol (14×14)", "",
        f"The {_grid_words(study)} on the embedded set: every row starts from the formula-pretrained ViT of patch "
        f"{min(cfg['patch_sizes'])} (32×32 inputs) with its position embeddings resampled to the grid. The baseline "
        f"ViT is fine-tuned on {cfg['train_images']:,} training images for {cfg['steps']} steps of "
        f"{cfg['batch_size']} ({cfg['optimizer']} at lr {cfg['lr']:g}, {cfg['warmup_steps']} warm-up steps, cosine, "
        f"weight decay {cfg['weight_decay']:g}) and scored on {cfg['val_images']:,} validation images. Every row of "
        "a seed starts from the same weights with the same budget and data order. AWD α=0.1 attends within windows "
        "from that seed's fine-tuned ViT; its controls attend within windows of a random-weights U (the same "
        "architecture with the library's initialisation, the same α) and within a fixed square around each patch "
        "sized so that E_O is the trained windows' on the training images (to within one patch's growth). WinfT "
        f"(paper mode, α={cfg['winft_alpha']:g}, β={cfg['winft_beta']:g}) is trained with its window BCE and "
        "with λ2 = 0. Seeds "
        f"{', '.join(map(str, cfg['seeds']))} run every row, {extra} more the ViT, AWD with its three window "
        "sources and WinfT. The from-scratch arm is not run at 14×14: taken from the pretrained baseline its "
        "windows would be teacher information the from-scratch ViT never gets, and its own from-scratch baseline "
        "with its rows does not fit the study's 5 hours beside the controls. Every run records its validation curve "
        f"at {cfg['curve_points']} points (first {cfg['curve_images']:,} validation images).",
        "",
    ]


def _grid_baselines(study: _Study) -> list[str]:
    checks = well_trained(_with_grid(study.results["rows"], study.cfg))
    lines = ["## Is the baseline trained? (14×14)", "",
             "One seed's baseline is also trained at twice the schedule (same start, data order and peak learning "
             "rate, the cosine stretched): the gain is what the study's schedule leaves on the table.", "",
             "| seed | top-1 % | top-1 % at twice the schedule | gain (points) |", "|---|---|---|---|"]
    lines += [f"| {c['seed']} | {c['top1']:.2f} | {c['top1_2x']:.2f} | {c['gain']:+.2f} |" for c in checks]
    gains = [f"{r['final_gain_last20pct']:+.2f}" for r in study.results["rows"] if r["row"] == "vit"]
    return lines + ["", f"Gain over the last 20% of the schedule, per seed of the baseline: {', '.join(gains)}.", ""]


def _grid_rows(study: _Study) -> list[str]:
    stats = study.stats.get("synthetic", [])
    keys = [s["row"] for s in stats]
    png = plot_curves(study.results["rows"], "synthetic", "14×14 grid", keys,
                      study.path.parent / study.path.stem / "grid14-synthetic.png")
    return ["## Rows (14×14)", "", *_table(stats, study.meta, "G"), "",
            f"![training curves, 14×14 grid]({study.path.stem}/{png.name})", ""]


def _grid_analysis(study: _Study) -> list[str]:
    return ["## The analysis claims at 14×14", "", *_analysis(study.results, study.combined, two_verdicts=True), ""]


#: The 14×14 grid's sections before the small grid's part, and after it.
_GRID_HEAD: tuple[Callable[[_Study], list[str]], ...] = (_grid_title, _grid_summary, _grid_reading)
_GRID_TAIL: tuple[Callable[[_Study], list[str]], ...] = (_grid_protocol, _grid_baselines, _grid_rows, _grid_analysis)


def well_trained(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The twice-the-schedule check: per seed with a ``vit-2x`` run, the baseline's top-1 and the 2× one's."""
    out = []
    for long in (r for r in runs if r["row"] == "vit-2x"):
        base = next((r for r in runs if r["row"] == "vit" and r["dataset"] == long["dataset"] and
                     r["seed"] == long["seed"] and r["start"] == long["start"]), None)
        if base is not None:
            out.append({"dataset": long["dataset"], "row": "vit", "grid": long["grid"], "seed": long["seed"],
                        "top1": base["top1"], "top1_2x": long["top1"], "gain": round(long["top1"] - base["top1"], 4)})
    return out


def _with_grid(runs: list[dict[str, Any]], cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Every run with its ``grid`` and ``eo_fraction`` (E_O / N²), for runs recorded before they were."""
    return [{**r, "grid": r.get("grid") or grid_of(cfg, r["patch"]),
             "eo_fraction": r.get("eo_fraction", round(r["eo"] / r["eo_full"], 6))} for r in runs]


def _doc(study: _Study) -> dict[str, Any]:
    """The JSON object of one grid's study: its results, rows with their grid, verdicts, tables and analysis."""
    results = study.results
    return {**{k: v for k, v in results.items() if k != "claims"}, "rows": _with_grid(results["rows"], study.cfg),
            "verdicts": study.verdicts, "tables": study.stats,
            "analysis": {"combined": study.combined, "seeds": results["claims"].get("seeds", {})}}


def results_of_report(doc: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """``(small grid's results, 14×14 grid's results)`` back from a report's JSON (``None`` for a part it lacks),
    as :func:`write_report` takes them: ``--report-only`` regenerates a report from its JSON alone."""
    def back(part: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in part.items() if k not in ("verdicts", "tables", "analysis", "well_trained", GRID_KEY)}
        return {**out, "claims": {"seeds": part.get("analysis", {}).get("seeds", {})}}

    small = back(doc) if "rows" in doc else None
    return small, back(doc[GRID_KEY]) if doc.get(GRID_KEY) else None


def write_report(results: dict[str, Any] | None, path: Path, grid: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the markdown report, its JSON (``path`` with ``.json``) and the curve PNGs (``<stem>/``) of a study.

    ``results`` is the small grid's study (Tables 1-3), ``grid`` the 14×14 grid's (the ``controls`` plan); either
    may be left out. With both, the report leads with the 14×14 grid's summary and reading, then the small grid's
    part exactly as it reads alone, then the 14×14 grid's protocol, rows and analysis claims.

    A file ``<name>_reading.md`` beside the report (the hand-written reading of the small grid) is included after
    its summary, ``<name>_14x14_reading.md`` after the 14×14 summary (a marked slot while there is none), so that
    regenerating the report keeps them; no other file beside the report is included. Returns the JSON object
    written: the small grid's keys, ``well_trained`` and the 14×14 grid's under ``"grid_14x14"``.

    Raises:
        ValueError: ``results`` were written by an older patchfield (another format), or neither part is given.
    """
    if results is None and grid is None:
        raise ValueError("no study to report: give the small grid's results, the 14×14 grid's, or both")
    for part in (results, grid):
        if part is not None and part.get("format") != FORMAT:
            raise ValueError("these results were written by an older patchfield (another format): rerun "
                             "`patchfield reproduce` to produce them again")
    path = Path(path)
    small = _Study.of(results, path) if results is not None else None
    big = _Study.of(grid, path) if grid is not None else None
    lines: list[str] = []
    if big is not None:
        lines += [line for section in _GRID_HEAD for line in section(big)]
    if small is not None:
        lines += [line for section in _SECTIONS for line in section(small)]
    if big is not None:
        lines += [line for section in _GRID_TAIL for line in section(big)]
    doc = _doc(small) if small is not None else {}
    if big is not None:
        doc = {**doc, "well_trained": well_trained(_with_grid(big.results["rows"], big.cfg)), GRID_KEY: _doc(big)}
    with atomic_write(path) as tmp:
        tmp.write_text("\n".join(lines))
    write_json_atomic(path.with_suffix(".json"), doc)
    return doc
