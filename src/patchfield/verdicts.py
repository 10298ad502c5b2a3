"""Paired comparisons and verdicts: the statistics every claim of patchfield's studies is judged by.

A claim compares a model's per-image values with a control's on the same images. Each comparison is
the mean paired difference with a 95% Student-t interval (:func:`paired_comparison`); the verdict
(:func:`verdict`) reads the intervals of all of a claim's comparisons:

- ``supported``: every interval excludes 0 in the claim's direction;
- ``contradicted``: some interval excludes 0 in the opposite direction;
- ``not supported``: otherwise (some interval holds 0, or too few images to tell).

"Stays close" claims use an equivalence test instead (:func:`equivalent`, two one-sided tests).
:data:`VERDICT_MEANINGS` says this in words for reports. The t quantile is computed here
(:func:`t_quantile`, bisection on the regularised incomplete beta) so scipy is not needed.

The analysis claims are judged twice (:func:`claim_verdicts`): **vs chance** (the claim's null) and **vs
random weights** (the same architecture untrained), each by the rule above applied to that one comparison;
the single ``verdict`` older reports carry is derived from the two (:func:`combine_verdicts`, the same word
:func:`verdict` gives over both comparisons). :data:`CLAIM_VERDICT_MEANINGS` says this in words.

p-values come from the same paired t-test that makes the intervals (:func:`t_test_p`, two-sided, so
``p < 0.05`` exactly when the 95% interval excludes 0); :func:`holm` adjusts a family of them (Holm's
step-down method) and :func:`equivalence_p` is the p-value of the two one-sided tests.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "CLAIM_VERDICT_MEANINGS",
    "VERDICT_MEANINGS",
    "VERDICTS",
    "ClaimVerdicts",
    "claim_verdicts",
    "combine_verdicts",
    "equivalence_p",
    "equivalent",
    "holm",
    "mean_interval",
    "paired_comparison",
    "t_quantile",
    "t_test_p",
    "verdict",
]

VERDICTS = ("supported", "not supported", "contradicted")

#: The verdict words' definitions, quoted by every report that uses them.
VERDICT_MEANINGS = (
    "Each claim compares the trained model with its controls on the same images: per control, the mean "
    "paired difference (trained minus control) over images with a 95% Student-t interval. "
    "**supported**: every interval excludes 0 in the direction the claim predicts, so the trained model "
    "beats chance and random weights alike. **contradicted**: some interval excludes 0 in the opposite "
    "direction, so the data point against the claim. **not supported**: neither; some interval holds 0 "
    "(or there are too few images to tell), so the effect cannot be told apart from that control. "
    "A value far above chance but not above random weights is *not supported*: the architecture alone, "
    "untrained, already shows it, so it says nothing about what training taught the model."
)

#: The two-verdict rule of the analysis claims in words, quoted by ``claims.md``/``claims.json`` and the study.
CLAIM_VERDICT_MEANINGS = (
    "Every claim is judged twice on the same units (images here; seeds when a study combines runs), each time "
    "by the mean paired difference (trained minus the comparison) with a 95% Student-t interval and the "
    "two-sided p-value of that same paired t-test. **vs chance**: against the claim's null, the value the "
    "measure takes by chance, by image content alone or by geometry alone (a claim tested against two nulls "
    "has a row per null). **vs random weights**: against the same architecture with random weights (the "
    "library's initialisation), the same images. For each, **supported**: the interval excludes 0 in the "
    "direction the claim predicts; **contradicted**: it excludes 0 in the opposite direction; **not "
    "supported**: it holds 0 (or there are too few units to tell). The two answer different questions: above "
    "chance says the trained model shows the effect; above random weights says training, not the untrained "
    "architecture, put it there. `verdict` is derived from the two: *supported* when both are supported, "
    "*contradicted* when either is contradicted, else *not supported*. **p_holm**: Holm's step-down "
    "adjustment of the p-values over every distinct comparison of the report (every setting, both kinds; a "
    "comparison shown on two rows counts once); a finding whose p_holm is below 0.05 survives family-wise "
    "correction at 5%. The verdict words read the unadjusted intervals."
)


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        step = d * c
        h *= step
        if abs(step - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function ``I_x(a, b)``."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def _t_central(t: float, df: float) -> float:
    """``P(|T| <= t)`` for Student's t with ``df`` degrees of freedom."""
    return _betainc(0.5, df / 2.0, t * t / (df + t * t))


def _t_two_sided(t: float, df: float) -> float:
    """``P(|T| >= |t|)`` for Student's t, accurate in the far tail (no ``1 - x`` cancellation)."""
    if math.isinf(t):
        return 0.0
    return min(1.0, max(0.0, _betainc(df / 2.0, 0.5, df / (df + t * t))))  # a probability, rounding aside


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (bisection, ~1e-12 absolute).

    >>> round(t_quantile(0.975, 10), 4), round(t_quantile(0.95, 1), 4)
    (2.2281, 6.3138)
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if not df > 0:
        raise ValueError(f"df must be positive, got {df}")
    if p == 0.5:
        return 0.0
    central = abs(2.0 * p - 1.0)
    lo, hi = 0.0, 1.0
    while _t_central(hi, df) < central:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _t_central(mid, df) < central:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * max(1.0, hi):
            break
    t = 0.5 * (lo + hi)
    return t if p > 0.5 else -t


def _clean(values: Any) -> torch.Tensor:
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    return v[~torch.isnan(v)]


def mean_interval(values: Any, level: float = 0.95) -> tuple[float, float, float, int]:
    """Mean and Student-t interval at ``level`` of ``values`` (NaN dropped): ``(mean, low, high, n)``.

    With fewer than two values the interval is ``(nan, nan)``.

    >>> m, lo, hi, n = mean_interval([1.0, 2.0, 3.0])
    >>> m, round(lo, 4), round(hi, 4), n
    (2.0, -0.4841, 4.4841, 3)
    """
    v = _clean(values)
    n = int(v.numel())
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(v.mean())
    if n < 2:
        return mean, math.nan, math.nan, n
    half = t_quantile(0.5 + level / 2.0, n - 1) * float(v.std(correction=1)) / math.sqrt(n)
    return mean, mean - half, mean + half, n


def t_test_p(values: Any) -> float:
    """Two-sided p-value of the one-sample t-test that the mean of ``values`` (NaN dropped) is 0.

    The test behind :func:`mean_interval`'s interval: ``p < 1 - level`` exactly when that interval excludes 0.
    NaN with fewer than two values; with no spread, 0 when the mean is not 0 and 1 when it is.

    >>> round(t_test_p([1.0, 2.0, 3.0]), 4), t_test_p([2.0, 2.0]), t_test_p([1.0])
    (0.0742, 0.0, nan)
    """
    v = _clean(values)
    n = int(v.numel())
    if n < 2:
        return math.nan
    mean, sd = float(v.mean()), float(v.std(correction=1))
    if sd == 0.0:
        return 1.0 if mean == 0.0 else 0.0
    return _t_two_sided(mean / (sd / math.sqrt(n)), n - 1)


def paired_comparison(a: Any, b: Any) -> dict[str, Any]:
    """Mean paired difference ``a - b`` with its 95% Student-t interval and paired t-test p-value:
    ``{"diff", "ci95", "n", "p"}``.

    Pairs where either value is NaN are dropped; ``n`` (pairs used) is included; ``p`` is two-sided
    (:func:`t_test_p` of the differences), below 0.05 exactly when ``ci95`` excludes 0.

    >>> [round(v, 4) for v in paired_comparison([3.0, 4.0, 5.0], [1.0, 1.0, 1.0])["ci95"]]
    [0.5159, 5.4841]
    """
    x = torch.as_tensor(a, dtype=torch.float64).flatten()
    y = torch.as_tensor(b, dtype=torch.float64).flatten()
    if x.shape != y.shape:
        raise ValueError(f"paired values need equal lengths, got {x.numel()} and {y.numel()}")
    mean, lo, hi, n = mean_interval(x - y)
    return {"diff": mean, "ci95": [lo, hi], "n": n, "p": t_test_p(x - y)}


def verdict(comparisons: Sequence[Mapping[str, Any]], direction: str = "greater") -> str:
    """``supported`` / ``contradicted`` / ``not supported`` from a claim's comparisons (see the module doc).

    Args:
        comparisons: :func:`paired_comparison` results (``ci95`` is read).
        direction: ``"greater"`` when the claim predicts trained > control, ``"less"`` for trained < control.

    >>> verdict([{"ci95": [0.1, 0.3]}, {"ci95": [0.05, 0.2]}])
    'supported'
    >>> verdict([{"ci95": [0.1, 0.3]}, {"ci95": [-0.1, 0.2]}])
    'not supported'
    >>> verdict([{"ci95": [0.1, 0.3]}, {"ci95": [-0.3, -0.1]}])
    'contradicted'
    """
    if direction not in ("greater", "less"):
        raise ValueError(f"direction must be 'greater' or 'less', got {direction!r}")
    if not comparisons:
        raise ValueError("a verdict needs at least one comparison")
    sign = 1.0 if direction == "greater" else -1.0
    toward, against = [], []
    for c in comparisons:
        lo, hi = (float(v) for v in c["ci95"])
        lo, hi = sorted((sign * lo, sign * hi))
        toward.append(lo > 0)  # NaN compares False: too few images never support nor contradict
        against.append(hi < 0)
    if any(against):
        return "contradicted"
    return "supported" if all(toward) else "not supported"


def equivalent(diffs: Any, margin: float) -> bool:
    """Two one-sided tests at 5%: True when the 90% t-interval of the mean of ``diffs`` lies inside ``±margin``.

    For "stays close" claims: the paired differences are equivalent to 0 within ``margin``.

    >>> equivalent([0.1, -0.1, 0.05, -0.05], 0.5), equivalent([0.1, -0.1, 0.05, -0.05], 0.1)
    (True, False)
    """
    if not margin > 0:
        raise ValueError(f"margin must be positive, got {margin}")
    _, lo, hi, n = mean_interval(diffs, level=0.90)
    return n >= 2 and -margin < lo and hi < margin


def equivalence_p(diffs: Any, margin: float) -> float:
    """p-value of :func:`equivalent`'s two one-sided t-tests (the larger of the two): below 0.05 exactly when
    :func:`equivalent` holds. NaN with fewer than two values.

    >>> round(equivalence_p([0.1, -0.1, 0.05, -0.05], 0.5), 4), round(equivalence_p([0.1, -0.1, 0.05, -0.05], 0.1), 4)
    (0.0008, 0.0581)
    """
    if not margin > 0:
        raise ValueError(f"margin must be positive, got {margin}")
    v = _clean(diffs)
    n = int(v.numel())
    if n < 2:
        return math.nan
    mean, se = float(v.mean()), float(v.std(correction=1)) / math.sqrt(n)

    def above(t: float) -> float:  # P(T >= t), one-sided
        tail = 0.5 * _t_two_sided(t, n - 1)
        return tail if t > 0 else 1.0 - tail

    if se == 0.0:
        return 0.0 if -margin < mean < margin else 1.0
    return max(above((mean + margin) / se), above((margin - mean) / se))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values, in the input's order.

    Sorted ascending, the ``i``-th smallest (from 0) of ``m`` becomes ``min(1, (m - i) * p)``, then the running
    maximum keeps the adjusted values in the same order as the raw ones. NaN values (no test) stay NaN and are
    not counted in ``m``. Controls the family-wise error rate under any dependence between the tests.

    >>> holm([0.01, 0.04, 0.03, 0.005])
    [0.03, 0.06, 0.06, 0.02]

    Raises:
        ValueError: a p-value outside ``[0, 1]``.
    """
    values = [float(p) for p in pvalues]
    bad = [p for p in values if not math.isnan(p) and not 0.0 <= p <= 1.0]
    if bad:
        raise ValueError(f"p-values must lie in [0, 1], got {bad[0]}")
    order = sorted((i for i, p in enumerate(values) if not math.isnan(p)), key=lambda i: values[i])
    m = len(order)
    out = [math.nan] * len(values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * values[i]))
        out[i] = running
    return out


def combine_verdicts(*words: str) -> str:
    """The single verdict derived from a claim's separate verdicts: *contradicted* when any is, *supported* when
    all are, else *not supported*. Over one-comparison verdicts this is :func:`verdict` over the comparisons.

    >>> combine_verdicts("supported", "supported"), combine_verdicts("supported", "not supported")
    ('supported', 'not supported')
    >>> combine_verdicts("not supported", "contradicted")
    'contradicted'
    """
    if not words:
        raise ValueError("combine at least one verdict")
    unknown = [w for w in words if w not in VERDICTS]
    if unknown:
        raise ValueError(f"not a verdict: {unknown[0]!r} (one of {', '.join(VERDICTS)})")
    if "contradicted" in words:
        return "contradicted"
    return "supported" if all(w == "supported" for w in words) else "not supported"


@dataclass(frozen=True)
class ClaimVerdicts:
    """A claim's two verdicts (:data:`CLAIM_VERDICT_MEANINGS`) and the one derived from them.

    Attributes:
        vs_chance: against the claim's null.
        vs_random: against the same architecture with random weights.
    """

    vs_chance: str
    vs_random: str

    @property
    def combined(self) -> str:
        """The derived verdict (:func:`combine_verdicts`), ``claims.json``'s ``verdict``."""
        return combine_verdicts(self.vs_chance, self.vs_random)


def claim_verdicts(vs_null: Mapping[str, Any], vs_random: Mapping[str, Any],
                   direction: str = "greater") -> ClaimVerdicts:
    """The two verdicts of an analysis claim from its comparisons with the null and with random weights.

    >>> v = claim_verdicts({"ci95": [0.14, 0.18]}, {"ci95": [-0.05, -0.02]})
    >>> v.vs_chance, v.vs_random, v.combined
    ('supported', 'contradicted', 'contradicted')
    """
    return ClaimVerdicts(verdict([vs_null], direction), verdict([vs_random], direction))
