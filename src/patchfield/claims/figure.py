"""``claims.png``: per claim, the per-image distributions of trained, random weights and null side by side."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..drawing import new_figure, save_figure
from .measures import CLAIMS

if TYPE_CHECKING:
    from .report import ClaimsReport

__all__ = ["plot_claims"]

_COLORS = {"trained": "#1f77b4", "random": "#ff7f0e", "null": "#7f7f7f", "content null": "#2ca02c",
           "shuffled null": "#9467bd"}
#: one panel per claim; its second null's row (``CLAIMS``) is drawn in the same panel; the rows' nulls in short
_PANELS = {"dip_on_background": {"dip_on_background": "chance", "dip_on_background_content": "content"},
           "field_size": {"field_size": "chance"},
           "tendency_to_object": {"tendency_to_object": "centre", "tendency_to_object_shuffled": "shuffled"}}


def _series(report: ClaimsReport, setting: tuple[float, float], claim: str) -> dict[str, np.ndarray]:
    t, r = report.trained[setting], report.random[setting]
    if claim == "dip_on_background":
        out = {"trained": t["dip_background"], "random": r["dip_background"], "null": t["background_share"],
               "content null": t["background_share_content"]}
    elif claim == "field_size":
        gap_t = t["size_background"] - t["size_object"]
        out = {"trained": gap_t, "random": r["size_background"] - r["size_object"]}  # null: 0, a line
    else:
        out = {"trained": t["cos_object"], "random": r["cos_object"], "null": t["cos_center"],
               "shuffled null": t["cos_shuffled"]}
    return {k: v.numpy() for k, v in out.items()}


def _verdicts(claims: dict, panel: str) -> str:
    """The panel's verdicts under a group: vs chance per null row, then vs random weights (shared by the rows)."""
    rows = _PANELS[panel]
    chance = ", ".join(f"{null}: {claims[k]['verdict_vs_chance']}" for k, null in rows.items())
    return f"vs {chance}\nvs random: {claims[next(iter(rows))]['verdict_vs_random']}"


def plot_claims(report: ClaimsReport, path: Path) -> Path:
    """Box plots with the per-image points, one panel per claim (its nulls side by side), one group per setting;
    the two verdicts under the groups (vs chance, per null, then vs random weights)."""
    summary = report.summary()["settings"]
    settings = report.settings
    fig = new_figure(max(6.0, 1.0 + 2.5 * len(settings)), 10.5)
    axes = fig.subplots(3, 1)
    jitter = np.random.default_rng(0)
    ylabels = {"dip_on_background": "share of D outside the object",
               "field_size": "mean size of S_p: background − object",
               "tendency_to_object": "cosine toward the object's centroid"}
    for ax, claim in zip(axes, _PANELS):
        ticks, labels = [], []
        for g, setting in enumerate(settings):
            series = _series(report, setting, claim)
            for k, (name, values) in enumerate(series.items()):
                values = values[~np.isnan(values)]
                pos = g * 5 + k
                if values.size:
                    box = ax.boxplot([values], positions=[pos], widths=0.7, showfliers=False, patch_artist=True)
                    box["boxes"][0].set(facecolor=_COLORS[name], alpha=0.35)
                    ax.scatter(pos + jitter.uniform(-0.2, 0.2, values.size), values, s=6, color=_COLORS[name],
                               alpha=0.7, label=name if g == 0 else None)
            ticks.append(g * 5 + (len(series) - 1) / 2)
            labels.append(f"α={setting[0]:g} β={setting[1]:g}\n{_verdicts(summary[g]['claims'], claim)}")
        if claim == "field_size":
            ax.axhline(0.0, color=_COLORS["null"], linestyle="--", linewidth=1, label="null (no gap)")
        ax.set_xticks(ticks, labels, fontsize=8)
        ax.set_title(CLAIMS[claim][0].split(":")[0], fontsize=10)
        ax.set_ylabel(ylabels[claim], fontsize=8)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"{report.model}: {report.images} images, random weights: {report.random_inits} init(s)", fontsize=10)
    return save_figure(fig, path)
