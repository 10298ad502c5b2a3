"""The study's statistics, all from :mod:`patchfield.verdicts`: seeds are the unit, rows are paired by seed.

Every row of a seed shares that seed's pretrained start (or initialisation), data order and budget,
so a row is compared with its baseline through the per-seed differences (:func:`row_stats`), and a
table claim through the per-seed differences of its two rows (:func:`table_verdicts`). The analysis
claims measured per seed are combined with the seed as the unit (:func:`combine_claims`): one value per
seed (its mean over images), a t-interval over seeds, never pooled images.

Every comparison carries ``p``, the two-sided p-value of the same paired t-test over seeds that makes its
interval (for a "stays close" claim, the two one-sided tests' p), so a report can adjust a table's family
with :func:`patchfield.verdicts.holm`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from ..verdicts import claim_verdicts, equivalence_p, equivalent, mean_interval, paired_comparison, verdict

__all__ = ["CONTROL_CLAIMS", "TABLE_CLAIMS", "close_verdict", "combine_claims", "paired_rows", "row_stats",
           "table_verdicts"]


#: (table, claim, row a, row b, test, the paper's (a, b) top-1) — ``{small}``/``{big}``: the patch sizes.
TABLE_CLAIMS: tuple[tuple[str, str, str, str, str, tuple[float, float] | None], ...] = (
    ("1", "AWD-ViT α=0.1 beats the ViT", "awd-0.1", "vit", "greater", (81.90, 81.20)),
    ("2", "AWD α=0.1 + DIP β=0.2 beats AWD α=0.1", "awd-dip-0.2", "awd-0.1", "greater", (82.40, 81.90)),
    ("2", "AWD α=0.1 + DIP β=0.5 stays close to the ViT", "awd-dip-0.5", "vit", "close", (80.62, 81.20)),
    ("3", "WinfT (paper mode) beats the ViT, patch {small}", "winft-paper", "vit", "greater", (83.11, 81.20)),
    ("3", "WinfT (restrict mode) beats the ViT, patch {small}", "winft-restrict", "vit", "greater", None),
    ("3", "WinfT (paper mode) beats the ViT, patch {big}", "winft-paper-p{big}", "vit-p{big}", "greater",
     (78.74, 74.46)),
    ("3", "WinfT (restrict mode) beats the ViT, patch {big}", "winft-restrict-p{big}", "vit-p{big}", "greater", None),
)

#: The 14×14 grid's claims (the ``controls`` plan, :func:`patchfield.study.rows.control_rows`), in the same form.
CONTROL_CLAIMS: tuple[tuple[str, str, str, str, str, tuple[float, float] | None], ...] = (
    ("G", "AWD-ViT α=0.1 beats the ViT", "awd-0.1", "vit", "greater", (81.90, 81.20)),
    ("G", "AWD-ViT α=0.1: the trained U's windows beat a random U's", "awd-0.1", "awd-0.1-random-u", "greater",
     None),
    ("G", "AWD-ViT α=0.1: the trained U's windows beat a square window at the same E_O", "awd-0.1",
     "awd-0.1-local", "greater", None),
    ("G", "WinfT (paper mode) beats the ViT, patch {small}", "winft-paper", "vit", "greater", (83.11, 81.20)),
    ("G", "WinfT (paper mode) beats the same WinfT without its window BCE (λ2 = 0)", "winft-paper",
     "winft-paper-no-bce", "greater", None),
    ("G", "AWD α=0.1 + DIP β=0.2 beats AWD α=0.1", "awd-dip-0.2", "awd-0.1", "greater", (82.40, 81.90)),
)


def _finite(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def paired_rows(runs: Sequence[dict[str, Any]], dataset: str, start: str, a: str, b: str,
                field: str = "top1") -> tuple[list[int], list[float], list[float]]:
    """Seeds run for both rows ``a`` and ``b`` (same data set and start), with their ``field`` values."""
    def by_seed(row: str) -> dict[int, float]:
        return {int(r["seed"]): float(r[field]) for r in runs
                if r["dataset"] == dataset and r["start"] == start and r["row"] == row}

    x, y = by_seed(a), by_seed(b)
    seeds = sorted(set(x) & set(y))
    return seeds, [x[s] for s in seeds], [y[s] for s in seeds]


def close_verdict(diffs: Sequence[float], margin: float) -> str:
    """"Stays close" within ``±margin``: *supported* when equivalent (two one-sided tests at 5%),
    *contradicted* when the 95% t-interval lies wholly beyond the margin, else *not supported*.

    >>> close_verdict([0.1, -0.2, 0.0, 0.1], 1.0), close_verdict([3.0, 3.5, 2.8], 1.0)
    ('supported', 'contradicted')
    """
    if equivalent(diffs, margin):
        return "supported"
    _, lo, hi, _ = mean_interval(diffs)
    return "contradicted" if lo > margin or hi < -margin else "not supported"


def row_stats(runs: Sequence[dict[str, Any]], dataset: str, start: str, key: str, base: str) -> dict[str, Any] | None:
    """One table row over seeds: means, sample SDs, and the paired difference from the baseline ``base``."""
    mine = [r for r in runs if r["dataset"] == dataset and r["start"] == start and r["row"] == key]
    if not mine:
        return None
    top1 = [float(r["top1"]) for r in mine]
    gains = [float(r["final_gain_last20pct"]) for r in mine]
    out = {
        "dataset": dataset, "start": start, "row": key, "seeds": len(mine),
        "top1": statistics.fmean(top1), "top1_sd": statistics.stdev(top1) if len(top1) > 1 else None,
        "eo": statistics.fmean(float(r["eo"]) for r in mine), "eo_full": float(mine[0]["eo_full"]),
        "gain_mean": statistics.fmean(gains), "gain_max": max(gains), "vs_base": None,
    }
    if key != base:
        seeds, a, b = paired_rows(runs, dataset, start, key, base)
        if seeds:
            cmp = paired_comparison(a, b)
            out["vs_base"] = {"diff": _finite(cmp["diff"]), "ci95": [_finite(v) for v in cmp["ci95"]], "n": cmp["n"]}
    return out


def table_verdicts(runs: Sequence[dict[str, Any]], dataset: str, patch_sizes: Sequence[int],
                   margin: float, claims: Sequence[tuple] = TABLE_CLAIMS) -> list[dict[str, Any]]:
    """The tables' claims (``claims``: :data:`TABLE_CLAIMS`, or :data:`CONTROL_CLAIMS`) on one data set, per start
    with runs of both rows: paired difference and verdict.

    ``p`` is the paired t-test's two-sided p-value over seeds (``test`` ``"close"``: the equivalence test's,
    :func:`patchfield.verdicts.equivalence_p`).
    """
    small, big = min(patch_sizes), max(patch_sizes)
    out = []
    for table, text, a, b, test, paper in claims:
        a, b, text = (s.format(small=small, big=big) for s in (a, b, text))
        for start in ("pretrained", "scratch"):
            seeds, x, y = paired_rows(runs, dataset, start, a, b)
            if not seeds:
                continue
            cmp = paired_comparison(x, y)
            diffs = [p - q for p, q in zip(x, y)]
            word = close_verdict(diffs, margin) if test == "close" else verdict([cmp], test)
            p = equivalence_p(diffs, margin) if test == "close" else cmp["p"]
            out.append({
                "dataset": dataset, "table": table, "start": start, "a": a, "b": b, "test": test,
                "claim": text + (f" (within ±{margin:g} point)" if test == "close" else ""),
                "diff": _finite(cmp["diff"]), "ci95": [_finite(v) for v in cmp["ci95"]], "n": cmp["n"],
                "seeds": seeds, "verdict": word, "p": _finite(p), "margin": margin if test == "close" else None,
                "paper": list(paper) if paper else None,
                "paper_diff": round(paper[0] - paper[1], 2) if paper else None,
            })
    return out


def _seed_values(claim: str, c: dict[str, Any]) -> tuple[float, float, float]:
    """A seed's (trained, null, random) means of one claim, from a ``claims.json`` claim object."""
    if claim == "field_size":
        return c["gap"]["trained"]["mean"], 0.0, c["gap"]["random"]["mean"]
    return c["trained"]["mean"], c["null"]["mean"], c["random"]["mean"]


def combine_claims(per_seed: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The analysis claims with seeds as the unit, from one ``claims.json`` object per seed.

    Per setting and claim: each seed contributes its mean over images of the trained value, of the null
    and of the random-weights control; ``vs_null`` and ``vs_random`` are paired comparisons over seeds
    (95% t-intervals, ``p`` the paired t-test's). ``verdict_vs_chance`` reads ``vs_null``, ``verdict_vs_random``
    reads ``vs_random`` (:func:`patchfield.verdicts.claim_verdicts`, direction ``greater``), and ``verdict`` is
    derived from the two (supported when both are, contradicted when either is, else not supported).
    """
    if not per_seed:
        return []
    out = []
    for i, setting in enumerate(per_seed[0]["settings"]):
        claims = {}
        for key in setting["claims"]:
            vals = [_seed_values(key, s["settings"][i]["claims"][key]) for s in per_seed]
            t, n, r = ([math.nan if v[j] is None else float(v[j]) for v in vals] for j in range(3))
            vs_null, vs_random = paired_comparison(t, n), paired_comparison(t, r)
            words = claim_verdicts(vs_null, vs_random, "greater")
            claims[key] = {
                "trained": [_finite(v) for v in mean_interval(t)[:3]],
                "null": [_finite(v) for v in mean_interval(n)[:3]],
                "random": [_finite(v) for v in mean_interval(r)[:3]],
                "vs_null": {"diff": _finite(vs_null["diff"]), "ci95": [_finite(v) for v in vs_null["ci95"]],
                            "n": vs_null["n"], "p": _finite(vs_null["p"])},
                "vs_random": {"diff": _finite(vs_random["diff"]), "ci95": [_finite(v) for v in vs_random["ci95"]],
                              "n": vs_random["n"], "p": _finite(vs_random["p"])},
                "verdict_vs_chance": words.vs_chance, "verdict_vs_random": words.vs_random,
                "verdict": words.combined,
                "seeds": len(per_seed),
            }
        out.append({"alpha": setting["alpha"], "beta": setting["beta"], "claims": claims})
    return out
