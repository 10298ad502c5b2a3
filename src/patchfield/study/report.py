"""Render the study's ``results.json`` as ``docs/reproduction.md``: tables beside the paper's, verdicts."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from ..utils.io import atomic_write, write_json_atomic
from ..verdicts import VERDICT_MEANINGS

__all__ = ["aggregate", "verdict", "write_report"]


def aggregate(results: dict[str, Any], dataset: str) -> dict[str, dict[str, float]]:
    """Per row key: mean and spread (population std over seeds) of top-1 (%) and ``E_O``."""
    by_row: dict[str, list[dict[str, Any]]] = {}
    for run in results["runs"]:
        if run["dataset"] == dataset:
            by_row.setdefault(run["row"], []).append(run)
    out = {}
    for key, runs in by_row.items():
        top1 = [100.0 * r["top1"] for r in runs]
        eo = [r["eo"] for r in runs]
        out[key] = {
            "top1": statistics.fmean(top1), "top1_std": statistics.pstdev(top1) if len(top1) > 1 else 0.0,
            "eo": statistics.fmean(eo), "eo_full": runs[0]["eo_full"], "seeds": len(runs),
        }
    return out


def verdict(a_mean: float, a_spread: float, b_mean: float, b_spread: float, higher: bool = True) -> str:
    """Does ``a`` beat ``b`` (higher, or lower when ``higher=False``) by more than the spread?

    The spread of the difference is ``sqrt(a_spread² + b_spread²)``.

    >>> verdict(2.0, 0.1, 1.0, 0.1), verdict(1.05, 0.1, 1.0, 0.1), verdict(0.5, 0.1, 1.0, 0.1)
    ('supported', 'within spread', 'contradicted')
    """
    diff = (a_mean - b_mean) if higher else (b_mean - a_mean)
    spread = math.sqrt(a_spread**2 + b_spread**2)
    if diff > spread:
        return "supported"
    if diff < -spread:
        return "contradicted"
    return "within spread"


def _fmt_eo(eo: float, full: float) -> str:
    return f"{eo:,.0f} ({100 * eo / full:.1f}%)"


def _table(results: dict[str, Any], dataset: str, table: str, agg: dict[str, dict[str, float]]) -> list[str]:
    lines = ["| row | ours: top-1 % (mean ± std) | ours: E_O (share of N²) | paper: top-1 % | paper: E_O (share) |",
             "|---|---|---|---|---|"]
    for row in results["rows"][dataset]:
        if row["table"] != table or row["key"] not in agg:
            continue
        a = agg[row["key"]]
        paper = row["paper"]
        p_top, p_eo = (f"{paper[0]:.2f}", _fmt_eo(paper[1], row["paper_full"])) if paper else ("—", "—")
        lines.append(f"| {row['label']} | {a['top1']:.2f} ± {a['top1_std']:.2f} | {_fmt_eo(a['eo'], a['eo_full'])} "
                     f"| {p_top} | {p_eo} |")
    return lines


def _table_claims(agg: dict[str, dict[str, float]], rows: list[dict[str, Any]]) -> list[str]:
    def vs(a: str, b: str) -> str | None:
        if a not in agg or b not in agg:
            return None
        x, y = agg[a], agg[b]
        return (f"{x['top1']:.2f} ± {x['top1_std']:.2f} vs {y['top1']:.2f} ± {y['top1_std']:.2f}: "
                f"**{verdict(x['top1'], x['top1_std'], y['top1'], y['top1_std'])}**")

    big = max(r["patch"] for r in rows)
    claims = [
        ("Table 1: AWD-ViT α=0.1 beats the ViT (paper: 81.90 vs 81.20)", vs("awd-0.1", "vit")),
        ("Table 2: AWD α=0.1 + DIP β=0.2 beats AWD α=0.1 (paper: 82.40 vs 81.90)", vs("awd-dip-0.2", "awd-0.1")),
        ("Table 2: DIP β=0.5 stays close to the ViT (paper: 80.62 vs 81.20)", vs("awd-dip-0.5", "vit")),
        ("Table 3: WinfT (paper mode) beats the ViT, small patches (paper: 83.11 vs 81.20)", vs("winft-paper", "vit")),
        ("Table 3: WinfT (restrict mode) beats the ViT, small patches", vs("winft-restrict", "vit")),
        (f"Table 3: WinfT (paper mode) beats the ViT, patch {big} (paper: 78.74 vs 74.46)",
         vs(f"winft-paper-p{big}", f"vit-p{big}")),
        (f"Table 3: WinfT (restrict mode) beats the ViT, patch {big}", vs(f"winft-restrict-p{big}", f"vit-p{big}")),
    ]
    out = [f"- {name}: {text}" for name, text in claims if text]
    eos = [(r["key"], agg[r["key"]]["eo"]) for r in rows if r["kind"] == "awd" and r["key"] in agg]
    if eos:
        out.append("- Table 1: E_O falls with α: " + ", ".join(f"{k[4:]}: {v:,.0f}" for k, v in eos))
    return out


def _claims_section(claims: dict[str, Any]) -> list[str]:
    """One table per setting, from the ``claims.json``-shaped object of :mod:`patchfield.claims`."""
    from ..claims import claims_table

    if not claims:
        return ["(not measured: the embedded data set was not part of this run)"]
    if "settings" not in claims:
        return ["(measured by an older patchfield in another format: rerun the study to measure the claims again)"]
    lines = []
    for setting in claims["settings"]:
        lines += [f"### α = {setting['alpha']:g}, β = {setting['beta']:g}", "", *claims_table(setting["claims"]), ""]
    return lines


def write_report(results: dict[str, Any], path: Path) -> None:
    """Write the markdown report of a finished (or quick) study, and its numbers as JSON beside it.

    A file ``<name>_notes.md`` beside the report (hand-written remarks on the run) is included
    after the summary, so that regenerating the report keeps it.
    """
    cfg = results["config"]
    path = Path(path)
    notes = path.with_name(f"{path.stem}_notes.md")
    lines = [
        "# Reproduction of the paper's claims at small scale",
        "",
        "Generated by `patchfield reproduce` (`make reproduce`); every number below comes from "
        f"`{path.with_suffix('.json').name}` beside this file (the run's `results.json`). Total run time: "
        f"**{results['seconds'] / 60:.1f} minutes** on {results.get('machine', 'this machine')}.",
        "",
        *_summary(results),
        "",
        *([notes.read_text().rstrip(), ""] if notes.is_file() else []),
        "## Protocol",
        "",
        f"The paper's protocol, scaled down: a ViT with {cfg['depth']} layers, {cfg['num_heads']} heads and width "
        f"{cfg['embed_dim']} on {cfg['image_size']}×{cfg['image_size']} images, patch sizes "
        f"{', '.join(str(p) for p in cfg['patch_sizes'])} (N = "
        f"{', '.join(str((cfg['image_size'] // p) ** 2) for p in cfg['patch_sizes'])}), standing in for B/16 and B/32. "
        f"Every model trains from the same initialisation per seed, {cfg['steps']} {cfg.get('optimizer', 'sgd')} steps "
        f"(batch {cfg['batch_size']}, lr {cfg['lr']}, weight decay {cfg['weight_decay']}, {cfg['warmup_steps']} "
        "warm-up steps, cosine; the paper fine-tunes pretrained ViT-B with SGD, we train from scratch, where AdamW "
        f"converges within our budget and SGD does not), seeds "
        f"{', '.join(map(str, cfg['seeds']))}; {cfg['train_images']} training and {cfg['val_images']} validation "
        "images. Windows and DIP sets come from each seed's trained baseline (SPEC §3-§6), computed for the training "
        "and the validation images; AWD models use them at training and inference, WinfT only as the target of its "
        f"BCE (α={cfg['winft_alpha']}, β={cfg['winft_beta']}). Spreads are the standard deviation over seeds; a claim "
        "is *supported* when our difference exceeds the combined spread, *contradicted* when it is beyond it the "
        "other way, else *within spread*.",
        "",
    ]
    for name, why in results.get("skipped", {}).items():
        lines += [f"Data set `{name}` was skipped: {why}", ""]
    for dataset in cfg["datasets"]:
        if dataset in results.get("skipped", {}):
            continue
        agg = aggregate(results, dataset)
        lines += [f"## Data set: {dataset}", ""]
        for table, title in (("1", "Table 1: adaptive window design (AWD)"), ("2", "Table 2: AWD + DIP"),
                             ("3", "Table 3: window-free transformer (WinfT)")):
            body = _table(results, dataset, table, agg)
            if len(body) > 2:
                lines += [f"### {title}", "", *body, ""]
        lines += ["### The tables' claims", "", *_table_claims(agg, results["rows"][dataset]), ""]
    claims = results.get("claims", {})
    lines += [
        "## The analysis claims (Sec. 4.2, 4.3) on the embedded data set's object masks",
        "",
        f"Measured by `patchfield.claims` (the code behind `patchfield claims`): the baselines (patch "
        f"{min(cfg['patch_sizes'])}) of every seed against the same architecture with random weights "
        f"({claims.get('random_inits', cfg.get('claim_random_inits', 3))} initialisations per seed) and the nulls, "
        f"over {cfg['claim_images']} validation images per seed ({claims.get('images', 0)} image-seed pairs measured, "
        "pooled). Values are mean ± std over images (n).",
        "",
        f"**What the verdicts mean.** {VERDICT_MEANINGS}",
        "",
        *_claims_section(claims),
        "",
    ]
    with atomic_write(path) as tmp:
        tmp.write_text("\n".join(lines))
    write_json_atomic(path.with_suffix(".json"), results)


def _summary(results: dict[str, Any]) -> list[str]:
    """One line per claim: the verdicts of the tables and of the analysis, collected."""
    out = ["## Summary", ""]
    for dataset in results["config"]["datasets"]:
        if dataset in results.get("skipped", {}):
            continue
        agg = aggregate(results, dataset)
        for line in _table_claims(agg, results["rows"][dataset]):
            if "**" in line:
                out.append(f"- {dataset}: {line[2:]}")
    from ..claims import CLAIMS

    for setting in results.get("claims", {}).get("settings", []):  # one line per analysis claim and setting
        for key, claim in setting["claims"].items():
            out.append(f"- synthetic, analysis: {CLAIMS[key][0]} (α={setting['alpha']:g}, β={setting['beta']:g}): "
                       f"**{claim['verdict']}**")
    return out
