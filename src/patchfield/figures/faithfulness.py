"""Deletion and insertion curves of patch orderings (faithfulness, beyond the paper)."""

from __future__ import annotations

from matplotlib.figure import Figure

from ..drawing import new_figure
from ..metrics.faithfulness import FaithfulnessResult

__all__ = ["plot_faithfulness"]

_STYLE = {"dip": ("#d50000", "DIP column variance"), "random": ("#757575", "random"),
          "rollout": ("#2962ff", "attention rollout")}


def plot_faithfulness(result: FaithfulnessResult) -> Figure:
    """Mean deletion and insertion curves per ordering (± std band), AUC in the legend."""
    fig = new_figure(9.5, 3.6)
    axes = fig.subplots(1, 2)
    x = result.fractions
    summary = result.summary()
    for ax, kind, better in zip(axes, ("deletion", "insertion"), ("lower", "higher")):
        for method in result.methods:
            curves = getattr(result, kind)[method]
            colour, label = _STYLE.get(method, (None, method))
            mu, sd = curves.mean(0), curves.std(0)
            a = summary[method][f"{kind}_auc"]
            ax.plot(x, mu, "-", color=colour, linewidth=1.6, label=f"{label} (AUC {a:.3f})")
            ax.fill_between(x, mu - sd, mu + sd, color=colour, alpha=0.12)
        ax.set_xlabel(f"share of patches {'removed' if kind == 'deletion' else 'inserted'}", fontsize=8)
        ax.set_ylabel("probability of the predicted class", fontsize=8)
        ax.set_title(f"{kind} ({better} AUC is better), {len(curves)} images", fontsize=9)
        ax.set_xlim(0, 1)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.suptitle(f"faithfulness of patch orderings (baseline: {result.baseline})", fontsize=10)
    return fig
