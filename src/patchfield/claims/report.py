"""``ClaimsReport``: per-image claim measures, their statistics and verdicts, as JSON, Markdown, CSV and a figure."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..utils.io import atomic_write, write_json_atomic
from ..verdicts import VERDICT_MEANINGS, paired_comparison, verdict
from .measures import MEASURES

__all__ = ["CLAIMS", "ClaimsReport", "claims_table", "stat"]

Setting = tuple[float, float]

#: claim key → (the claim in words, the null in words)
CLAIMS = {
    "dip_on_background": ("D lies on the background: share of D outside the object",
                          "background's share of the patches (chance)"),
    "field_size": ("object fields are smaller: mean size of S_p, background minus object",
                   "no gap (0)"),
    "tendency_to_object": ("background tendencies point at the object: cosine toward its centroid",
                           "cosine toward the grid's centre (geometry)"),
}


def stat(values: torch.Tensor) -> dict[str, Any]:
    """``{"mean", "std", "n"}`` over images, NaN dropped; ``std`` is the sample standard deviation (n − 1).

    >>> stat(torch.tensor([1.0, 3.0, float("nan")]))
    {'mean': 2.0, 'std': 1.4142135623730951, 'n': 2}
    """
    v = values[~torch.isnan(values)].to(torch.float64)
    n = int(v.numel())
    return {"mean": float(v.mean()) if n else math.nan, "std": float(v.std(correction=1)) if n > 1 else math.nan,
            "n": n}


def _finite(obj: Any) -> Any:
    """NaN → ``None`` all through ``obj`` so that the JSON is valid."""
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _claims_of(t: dict[str, torch.Tensor], r: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The three claims of one setting from per-image trained (``t``) and random (``r``) measures."""
    dip_null, dip_random = paired_comparison(t["dip_background"], t["background_share"]), \
        paired_comparison(t["dip_background"], r["dip_background"])
    gap_t = t["size_background"] - t["size_object"]
    gap_r = r["size_background"] - r["size_object"]
    size_null, size_random = paired_comparison(gap_t, torch.zeros_like(gap_t)), paired_comparison(gap_t, gap_r)
    cos_null, cos_random = paired_comparison(t["cos_object"], t["cos_center"]), \
        paired_comparison(t["cos_object"], r["cos_object"])
    return {
        "dip_on_background": {
            "trained": stat(t["dip_background"]), "random": stat(r["dip_background"]),
            "null": stat(t["background_share"]), "vs_null": dip_null, "vs_random": dip_random,
            "verdict": verdict([dip_null, dip_random], "greater"),
        },
        "field_size": {
            "trained": {"object": stat(t["size_object"]), "background": stat(t["size_background"])},
            "random": {"object": stat(r["size_object"]), "background": stat(r["size_background"])},
            "gap": {"trained": stat(gap_t), "random": stat(gap_r)},
            "window": {"trained": {"object": stat(t["window_object"]), "background": stat(t["window_background"])},
                       "random": {"object": stat(r["window_object"]), "background": stat(r["window_background"])}},
            "vs_null": size_null, "vs_random": size_random,
            "verdict": verdict([size_null, size_random], "greater"),
        },
        "tendency_to_object": {
            "trained": stat(t["cos_object"]), "random": stat(r["cos_object"]), "null": stat(t["cos_center"]),
            "vs_null": cos_null, "vs_random": cos_random,
            "verdict": verdict([cos_null, cos_random], "greater"),
        },
    }


@dataclass
class ClaimsReport:
    """Per-image measures of a :func:`patchfield.claims.measure_claims` run and what they say.

    Attributes:
        model: the model's name.
        names: the measured images, in order.
        skipped: images left out, by reason (``missing``, ``unreadable``, ``no_mask``, ``degenerate_mask``).
        random_inits, seed: the random-weights controls.
        grid: the patch grid ``(gh, gw)``.
        trained, random: per setting ``(alpha, beta)``, per measure (:data:`patchfield.claims.MEASURES`), float64
            ``[images]``; ``random`` is the mean over the initialisations.
    """

    model: str
    names: list[str]
    skipped: dict[str, int]
    random_inits: int
    seed: int
    grid: tuple[int, int]
    trained: dict[Setting, dict[str, torch.Tensor]]
    random: dict[Setting, dict[str, torch.Tensor]]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def settings(self) -> list[Setting]:
        return list(self.trained)

    @property
    def images(self) -> int:
        return len(self.names)

    def summary(self) -> dict[str, Any]:
        """The ``claims.json`` object (schema in docs/formats.md); NaN stays NaN here."""
        return {
            "model": self.model,
            "images": self.images,
            "skipped": dict(self.skipped),
            "random_inits": self.random_inits,
            "seed": self.seed,
            "grid": list(self.grid),
            "verdict_meanings": VERDICT_MEANINGS,
            "settings": [{"alpha": a, "beta": b, "claims": _claims_of(self.trained[(a, b)], self.random[(a, b)])}
                         for a, b in self.settings],
            **self.extra,
        }

    def to_json(self) -> dict[str, Any]:
        """:meth:`summary` with undefined values (NaN) as ``None``, ready for ``json.dumps``."""
        return _finite(self.summary())

    def per_image(self) -> list[dict[str, Any]]:
        """One row per image and setting: ``image``, ``alpha``, ``beta``, then ``trained_<m>``, ``random_<m>``."""
        rows = []
        for s in self.settings:
            t, r = self.trained[s], self.random[s]
            cols = {f"trained_{m}": t[m].tolist() for m in MEASURES} | {f"random_{m}": r[m].tolist() for m in MEASURES}
            for i, name in enumerate(self.names):
                rows.append({"image": name, "alpha": s[0], "beta": s[1], **{k: v[i] for k, v in cols.items()}})
        return rows

    def to_csv(self) -> str:
        """:meth:`per_image` as CSV text (empty cells where a value is undefined)."""
        buf = io.StringIO()
        fields = ["image", "alpha", "beta", *(f"{w}_{m}" for w in ("trained", "random") for m in MEASURES)]
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for row in self.per_image():
            writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
        return buf.getvalue()

    def to_markdown(self) -> str:
        """``claims.md``: what was run, one table per setting with the verdicts, and what the verdicts mean."""
        skipped = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in self.skipped.items())
        lines = [
            f"# Analysis claims of `{self.model}`",
            "",
            f"{self.images} images measured (skipped: {skipped}); patch grid {self.grid[0]}x{self.grid[1]}; "
            f"random-weights control: {self.random_inits} initialisation(s) of the same architecture (seed "
            f"{self.seed} on), averaged per image. Values are mean ± std over images (n); comparisons are mean "
            "paired differences over images with 95% t-intervals.",
            "",
            "**What the verdicts mean.** " + VERDICT_MEANINGS,
            "",
        ]
        summary = self.summary()
        for setting in summary["settings"]:
            lines += [f"## α = {setting['alpha']:g}, β = {setting['beta']:g}", "", *claims_table(setting["claims"]), ""]
        return "\n".join(lines)

    def plot(self, path: str | Path) -> Path:
        """``claims.png``: per claim, the per-image distributions of trained, random and null side by side."""
        from .figure import plot_claims

        return plot_claims(self, Path(path))

    def _repr_html_(self) -> str:
        """Jupyter: the verdict table of every setting and the plot."""
        from ..display import claims_html

        return claims_html(self)

    def write(self, out: str | Path) -> dict[str, Path]:
        """Write ``per_image.csv``, ``claims.png``, ``claims.md`` and, last, ``claims.json`` into ``out`` (atomic)."""
        out = Path(out)
        paths = {name: out / name for name in ("per_image.csv", "claims.png", "claims.md", "claims.json")}
        with atomic_write(paths["per_image.csv"]) as tmp:
            tmp.write_text(self.to_csv())
        self.plot(paths["claims.png"])
        with atomic_write(paths["claims.md"]) as tmp:
            tmp.write_text(self.to_markdown())
        write_json_atomic(paths["claims.json"], self.to_json())
        return paths

    @classmethod
    def merge(cls, reports: Sequence[ClaimsReport], model: str | None = None) -> ClaimsReport:
        """Pool the images of several reports with the same settings (e.g. one per seed) into one."""
        if not reports:
            raise ValueError("nothing to merge")
        first = reports[0]
        if any(r.settings != first.settings for r in reports):
            raise ValueError("reports to merge must have the same settings")
        skipped = {k: sum(r.skipped.get(k, 0) for r in reports) for k in first.skipped}

        def cat(attr: str) -> dict[Setting, dict[str, torch.Tensor]]:
            return {s: {m: torch.cat([getattr(r, attr)[s][m] for r in reports]) for m in MEASURES}
                    for s in first.settings}

        return cls(model or first.model, [n for r in reports for n in r.names], skipped, first.random_inits,
                   first.seed, first.grid, cat("trained"), cat("random"))


def _f(value: Any, fmt: str = ".3f") -> str:
    """A number for a table, ``—`` when undefined (NaN here, ``None`` once read back from JSON)."""
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def _ms(s: dict[str, Any]) -> str:
    return f"{_f(s['mean'])} ± {_f(s['std'])} ({s['n']})" if s["n"] else "—"


def _cmp(c: dict[str, Any]) -> str:
    lo, hi = c["ci95"]
    return f"{_f(c['diff'], '+.3f')} [{_f(lo, '+.3f')}, {_f(hi, '+.3f')}]"


def claims_table(claims: dict[str, Any]) -> list[str]:
    """A Markdown table (6 columns) of one setting's claims (a ``settings[i]["claims"]`` object of ``claims.json``)."""
    lines = ["| claim | trained | random weights | null | trained − null; trained − random (95% CI) | verdict |",
             "|---|---|---|---|---|---|"]
    for key, (text, null) in CLAIMS.items():
        c = claims[key]
        if key == "field_size":
            trained, random = (f"{_ms(c['gap'][w])}: object {_f(c[w]['object']['mean'], '.1f')}, background "
                               f"{_f(c[w]['background']['mean'], '.1f')}" for w in ("trained", "random"))
            null_cell = null
        else:
            trained, random, null_cell = _ms(c["trained"]), _ms(c["random"]), f"{_ms(c['null'])}: {null}"
        lines.append(f"| {text} | {trained} | {random} | {null_cell} | {_cmp(c['vs_null'])}; {_cmp(c['vs_random'])} "
                     f"| **{c['verdict']}** |")
    return lines
