"""``ClaimsReport``: per-image claim measures, their statistics and verdicts, as JSON, Markdown, CSV and a figure.

Every claim is judged twice (:data:`patchfield.verdicts.CLAIM_VERDICT_MEANINGS`): ``verdict_vs_chance`` reads
``vs_null`` (trained minus the claim's null), ``verdict_vs_random`` reads ``vs_random`` (trained minus random
weights), each a paired comparison over images with a 95% t-interval and the paired t-test's ``p``; ``verdict`` is
derived from the two (:func:`patchfield.verdicts.combine_verdicts`: *supported* when both are, *contradicted* when
either is, else *not supported*), as older readers of ``claims.json`` expect. ``p_holm`` is Holm's adjustment over
every distinct comparison of the report. "D lies on the background" and the tendency claim have a second row each,
against a content-only and a shuffled-centroid null; the rows of one claim share its ``vs_random`` comparison.
"""

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
from ..verdicts import CLAIM_VERDICT_MEANINGS, claim_verdicts, holm, paired_comparison
from .measures import CLAIMS, MEASURES

__all__ = ["ClaimsReport", "claims_table", "stat"]

Setting = tuple[float, float]

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


def _judged(entry: dict[str, Any]) -> dict[str, Any]:
    """``entry`` with its two verdicts and the derived one (the claim predicts trained > comparison)."""
    v = claim_verdicts(entry["vs_null"], entry["vs_random"], "greater")
    return {**entry, "verdict_vs_chance": v.vs_chance, "verdict_vs_random": v.vs_random, "verdict": v.combined}


def _claims_of(t: dict[str, torch.Tensor], r: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The claims' rows of one setting from per-image trained (``t``) and random (``r``) measures.

    The rows of one claim share its ``vs_random`` comparison (the same object), so that Holm's family counts it
    once (:func:`_add_holm`).
    """
    dip_null, dip_random = paired_comparison(t["dip_background"], t["background_share"]), \
        paired_comparison(t["dip_background"], r["dip_background"])
    dip_content = paired_comparison(t["dip_background"], t["background_share_content"])
    gap_t = t["size_background"] - t["size_object"]
    gap_r = r["size_background"] - r["size_object"]
    size_null, size_random = paired_comparison(gap_t, torch.zeros_like(gap_t)), paired_comparison(gap_t, gap_r)
    cos_null, cos_random = paired_comparison(t["cos_object"], t["cos_center"]), \
        paired_comparison(t["cos_object"], r["cos_object"])
    cos_shuffled = paired_comparison(t["cos_object"], t["cos_shuffled"])
    dip, cos = {"trained": stat(t["dip_background"]), "random": stat(r["dip_background"])}, \
        {"trained": stat(t["cos_object"]), "random": stat(r["cos_object"])}
    return {
        "dip_on_background": _judged({**dip, "null": stat(t["background_share"]), "vs_null": dip_null,
                                      "vs_random": dip_random}),
        "dip_on_background_content": _judged({**dip, "null": stat(t["background_share_content"]),
                                              "vs_null": dip_content, "vs_random": dip_random}),
        "field_size": _judged({
            "trained": {"object": stat(t["size_object"]), "background": stat(t["size_background"])},
            "random": {"object": stat(r["size_object"]), "background": stat(r["size_background"])},
            "gap": {"trained": stat(gap_t), "random": stat(gap_r)},
            "window": {"trained": {"object": stat(t["window_object"]), "background": stat(t["window_background"])},
                       "random": {"object": stat(r["window_object"]), "background": stat(r["window_background"])}},
            "vs_null": size_null, "vs_random": size_random,
        }),
        "tendency_to_object": _judged({**cos, "null": stat(t["cos_center"]), "vs_null": cos_null,
                                       "vs_random": cos_random}),
        "tendency_to_object_shuffled": _judged({**cos, "null": stat(t["cos_shuffled"]), "vs_null": cos_shuffled,
                                                "vs_random": cos_random}),
    }


def _add_holm(settings: Sequence[dict[str, Any]]) -> int:
    """Set ``p_holm`` on every comparison of the settings' claims: Holm over the distinct comparisons (a comparison
    shared by two rows counts once; one without a p-value gets NaN and is not counted). Returns the family's size."""
    tests = list({id(c): c for s in settings for claim in s["claims"].values()
                  for c in (claim["vs_null"], claim["vs_random"])}.values())
    for c, adjusted in zip(tests, holm([c["p"] for c in tests])):
        c["p_holm"] = adjusted
    return sum(not math.isnan(c["p"]) for c in tests)


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
        """The ``claims.json`` object (schema in docs/formats.md, claims in docs/claims.md); NaN stays NaN here.

        Per setting and claim: ``trained``, ``random``, ``null`` (mean, std, n over images), ``vs_null`` and
        ``vs_random`` (``diff``, ``ci95``, ``n``, ``p``, ``p_holm``), ``verdict_vs_chance``, ``verdict_vs_random``
        and ``verdict``, derived from the two. ``holm_tests`` is the size of Holm's family.
        """
        settings = [{"alpha": a, "beta": b, "claims": _claims_of(self.trained[(a, b)], self.random[(a, b)])}
                    for a, b in self.settings]
        tests = _add_holm(settings)
        return {
            "model": self.model,
            "images": self.images,
            "skipped": dict(self.skipped),
            "random_inits": self.random_inits,
            "seed": self.seed,
            "grid": list(self.grid),
            "verdict_meanings": CLAIM_VERDICT_MEANINGS,
            "holm_tests": tests,
            "settings": settings,
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
        """``claims.md``: what was run and what the verdicts mean, then one table per setting with the verdicts."""
        summary = self.summary()
        sections = [self._markdown_header(summary), *(_setting_section(s) for s in summary["settings"])]
        return "\n".join(line for section in sections for line in section)

    def _markdown_header(self, summary: dict[str, Any]) -> list[str]:
        skipped = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in self.skipped.items())
        return [
            f"# Analysis claims of `{self.model}`",
            "",
            f"{self.images} images measured (skipped: {skipped}); patch grid {self.grid[0]}x{self.grid[1]}; "
            f"random-weights control: {self.random_inits} initialisation(s) of the same architecture (seed "
            f"{self.seed} on), averaged per image. Values are mean ± std over images (n); comparisons are mean "
            "paired differences over images with 95% t-intervals, p the paired t-test's (two-sided), p_holm "
            f"Holm's adjustment over the report's {summary['holm_tests']} distinct comparisons.",
            "",
            "**What the verdicts mean.** " + CLAIM_VERDICT_MEANINGS,
            "",
        ]

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
        """Pool the images of several reports with the same settings (e.g. one per seed) into one.

        Per-image values are pooled as measured: an image's shuffled-centroid null keeps the partner drawn in its
        own report.
        """
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


def _setting_section(setting: dict[str, Any]) -> list[str]:
    """One setting of ``claims.md``: its heading and its claims' table."""
    return [f"## α = {setting['alpha']:g}, β = {setting['beta']:g}", "", *claims_table(setting["claims"]), ""]


def _f(value: Any, fmt: str = ".3f") -> str:
    """A number for a table, ``—`` when undefined (NaN here, ``None`` once read back from JSON)."""
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def _ms(s: dict[str, Any]) -> str:
    return f"{_f(s['mean'])} ± {_f(s['std'])} ({s['n']})" if s["n"] else "—"


def _cmp(c: dict[str, Any]) -> str:
    lo, hi = c["ci95"]
    return f"{_f(c['diff'], '+.3f')} [{_f(lo, '+.3f')}, {_f(hi, '+.3f')}]"


def _p(c: dict[str, Any]) -> str:
    """``p_holm``, ``—`` when undefined."""
    p = c.get("p_holm")
    return "—" if p is None or math.isnan(p) else (f"{p:.2g}" if p >= 1e-4 else "<1e-4")


def _cells(key: str, null: str, c: dict[str, Any]) -> tuple[str, str, str]:
    """The trained, random-weights and null cells of a claim's row."""
    if key == "field_size":
        trained, random = (f"{_ms(c['gap'][w])}: object {_f(c[w]['object']['mean'], '.1f')}, background "
                           f"{_f(c[w]['background']['mean'], '.1f')}" for w in ("trained", "random"))
        return trained, random, null
    return _ms(c["trained"]), _ms(c["random"]), f"{_ms(c['null'])}: {null}"


def claims_table(claims: dict[str, Any]) -> list[str]:
    """A Markdown table of one setting's claims (a ``settings[i]["claims"]`` object of ``claims.json``).

    A row per claim (and null): the values, each comparison with its 95% interval and ``p_holm`` beside its
    verdict, and the derived verdict. A ``claims.json`` written before the two verdicts (no
    ``verdict_vs_chance``) renders as it did then: 6 columns, its one verdict.
    """
    if not any("verdict_vs_chance" in c for c in claims.values()):
        return _single_verdict_table(claims)
    lines = ["| claim | trained | random weights | null | vs chance: trained − null (95% CI); p_holm | verdict vs "
             "chance | vs random weights: trained − random (95% CI); p_holm | verdict vs random weights | verdict "
             "(derived) |", "|---|---|---|---|---|---|---|---|---|"]
    for key, (text, null) in CLAIMS.items():
        if key not in claims:
            continue
        c = claims[key]
        trained, random, null_cell = _cells(key, null, c)
        lines.append(f"| {text} | {trained} | {random} | {null_cell} | {_cmp(c['vs_null'])}; {_p(c['vs_null'])} | "
                     f"**{c['verdict_vs_chance']}** | {_cmp(c['vs_random'])}; {_p(c['vs_random'])} | "
                     f"**{c['verdict_vs_random']}** | {c['verdict']} |")
    return lines


def _single_verdict_table(claims: dict[str, Any]) -> list[str]:
    """The 6-column table of a ``claims.json`` with one verdict per claim (written before the two verdicts)."""
    lines = ["| claim | trained | random weights | null | trained − null; trained − random (95% CI) | verdict |",
             "|---|---|---|---|---|---|"]
    for key, (text, null) in CLAIMS.items():
        if key not in claims:
            continue
        c = claims[key]
        trained, random, null_cell = _cells(key, null, c)
        lines.append(f"| {text} | {trained} | {random} | {null_cell} | {_cmp(c['vs_null'])}; {_cmp(c['vs_random'])} "
                     f"| **{c['verdict']}** |")
    return lines
