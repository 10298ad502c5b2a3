"""The verdict rules, the paired t-test's p-values and Holm's adjustment, on hand-worked values."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from patchfield.study.stats import combine_claims, table_verdicts
from patchfield.verdicts import (
    ClaimVerdicts,
    claim_verdicts,
    combine_verdicts,
    equivalence_p,
    equivalent,
    holm,
    mean_interval,
    paired_comparison,
    t_quantile,
    t_test_p,
    verdict,
)

UP, FLAT, DOWN, NONE = {"ci95": [0.1, 0.4]}, {"ci95": [-0.1, 0.2]}, {"ci95": [-0.5, -0.2]}, \
    {"ci95": [math.nan, math.nan]}


# ---------------------------------------------------------------- the two verdicts and the derived one


def test_each_verdict_reads_its_own_comparison():
    # D on the background in the committed study: far above chance, below random weights
    v = claim_verdicts({"ci95": [0.143, 0.179]}, {"ci95": [-0.058, -0.026]})
    assert (v.vs_chance, v.vs_random, v.combined) == ("supported", "contradicted", "contradicted")
    assert claim_verdicts(UP, FLAT) == ClaimVerdicts("supported", "not supported")
    assert claim_verdicts(FLAT, UP).combined == "not supported"
    assert claim_verdicts(UP, UP).combined == "supported"
    assert claim_verdicts(NONE, UP) == ClaimVerdicts("not supported", "supported")  # too few units: no verdict
    assert claim_verdicts(DOWN, DOWN, "less") == ClaimVerdicts("supported", "supported")
    assert claim_verdicts(UP, DOWN, "less") == ClaimVerdicts("contradicted", "supported")


def test_the_derived_verdict_is_the_single_verdict_over_both_comparisons():
    """``verdict`` as older claims.json files had it: the one rule over both intervals, for every case."""
    for a, b in itertools.product((UP, FLAT, DOWN, NONE), repeat=2):
        for direction in ("greater", "less"):
            assert claim_verdicts(a, b, direction).combined == verdict([a, b], direction), (a, b, direction)


def test_combine_verdicts_rule():
    assert combine_verdicts("supported", "supported", "supported") == "supported"
    assert combine_verdicts("supported", "not supported") == "not supported"
    assert combine_verdicts("supported", "contradicted") == "contradicted"
    assert combine_verdicts("not supported", "contradicted") == "contradicted"  # contradiction wins
    assert combine_verdicts("not supported") == "not supported"
    with pytest.raises(ValueError, match="not a verdict"):
        combine_verdicts("supported", "yes")
    with pytest.raises(ValueError, match="at least one"):
        combine_verdicts()


# ---------------------------------------------------------------- p-values: the same paired t-test as the intervals


def test_t_test_p_closed_forms():
    # df = 2: P(|T| >= t) = 1 - t / sqrt(2 + t^2); [1, 2, 3]: mean 2, sd 1, t = 2 sqrt(3)
    t = 2 * math.sqrt(3)
    assert t_test_p([1.0, 2.0, 3.0]) == pytest.approx(1 - t / math.sqrt(2 + t * t), abs=1e-12)
    # df = 1 (Cauchy): P(|T| >= t) = 1 - (2 / pi) atan(t); [c - 1, c + 1]: mean c, se 1, t = c
    assert t_test_p([0.0, 2.0]) == pytest.approx(0.5, abs=1e-12)
    assert t_test_p([1e6 - 1, 1e6 + 1]) == pytest.approx(1 - 2 / math.pi * math.atan(1e6), rel=1e-6)  # the far tail
    assert t_test_p([-1.0, -2.0, -3.0]) == t_test_p([1.0, 2.0, 3.0])  # two-sided
    assert t_test_p([2.0, 2.0, 2.0]) == 0.0 and t_test_p([0.0, 0.0]) == 1.0  # no spread
    assert math.isnan(t_test_p([1.0])) and math.isnan(t_test_p([1.0, math.nan]))
    assert t_test_p([1.0, 2.0, 3.0, math.nan]) == t_test_p([1.0, 2.0, 3.0])  # NaN dropped like the interval


@pytest.mark.parametrize("df", [1, 2, 4, 9, 30, 200])
def test_t_test_p_at_the_interval_edge_is_five_percent(df):
    """Values whose 95% interval just touches 0 have p = 0.05: the p-value and the interval are one test."""
    q = t_quantile(0.975, df)
    n = df + 1
    base = torch.linspace(-1.0, 1.0, n, dtype=torch.float64)
    values = base / base.std(correction=1) + q / math.sqrt(n)  # sd 1, mean q / sqrt(n): t = q
    assert t_test_p(values) == pytest.approx(0.05, abs=1e-9)
    assert mean_interval(values)[1] == pytest.approx(0.0, abs=1e-9)


def test_p_below_five_percent_exactly_when_the_interval_excludes_zero():
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        n = int(torch.randint(2, 12, (1,), generator=gen))
        a = torch.randn(n, generator=gen, dtype=torch.float64)
        b = a - 0.6 * torch.randn(1, generator=gen, dtype=torch.float64) + 0.5 * torch.randn(n, generator=gen,
                                                                                              dtype=torch.float64)
        c = paired_comparison(a, b)
        lo, hi = c["ci95"]
        assert (c["p"] < 0.05) == (lo > 0 or hi < 0)
        assert (c["p"] < 0.05) == (verdict([c]) != "not supported")


def test_equivalence_p_closed_form_and_agreement():
    # df = 2, one-sided: P(T >= t) = (1 - t / sqrt(2 + t^2)) / 2; [0.1, 0.2, 0.3] within 0.5: mean 0.2, se 0.1/sqrt(3)
    se = 0.1 / math.sqrt(3)
    t = (0.5 - 0.2) / se  # the upper test, the larger p of the two
    assert equivalence_p([0.1, 0.2, 0.3], 0.5) == pytest.approx((1 - t / math.sqrt(2 + t * t)) / 2, abs=1e-12)
    gen = torch.Generator().manual_seed(1)
    for _ in range(200):
        d = 0.3 * torch.randn(int(torch.randint(2, 9, (1,), generator=gen)), generator=gen, dtype=torch.float64)
        margin = float(torch.rand(1, generator=gen)) + 0.05
        assert (equivalence_p(d, margin) < 0.05) == equivalent(d, margin)
    assert equivalence_p([0.2, 0.2], 0.5) == 0.0 and equivalence_p([0.7, 0.7], 0.5) == 1.0
    assert math.isnan(equivalence_p([0.1], 0.5))


# ---------------------------------------------------------------- Holm


def test_holm_hand_worked():
    # sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04, raised to 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # five: 0.001 x 5, 0.01 x 4, 0.02 x 3, 0.04 x 2, 0.3 x 1
    assert holm([0.02, 0.001, 0.04, 0.3, 0.01]) == pytest.approx([0.06, 0.005, 0.08, 0.3, 0.04])
    # capped at 1, and the cap carried on
    assert holm([0.5, 0.4, 0.01]) == pytest.approx([0.8, 0.8, 0.03])
    assert holm([0.6, 0.7]) == [1.0, 1.0]
    # NaN (no test) stays NaN and is not counted: m = 2
    out = holm([math.nan, 0.01, 0.04])
    assert math.isnan(out[0]) and out[1:] == pytest.approx([0.02, 0.04])
    assert holm([]) == [] and holm([0.2]) == [0.2]
    assert holm([0.01, 0.01, 0.01]) == pytest.approx([0.03, 0.03, 0.03])  # ties
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.1, 1.2])


def test_holm_against_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")  # not a dependency: checked where installed
    gen = torch.Generator().manual_seed(2)
    p = torch.rand(12, generator=gen, dtype=torch.float64).pow(3).tolist()
    want = multitest.multipletests(p, method="holm")[1]
    assert holm(p) == pytest.approx(list(want), abs=1e-12)


# ---------------------------------------------------------------- the study's statistics carry p and both verdicts


def test_combine_claims_gives_both_verdicts_and_p():
    def seed(t: float, n: float, r: float) -> dict:
        c = {"trained": {"mean": t}, "null": {"mean": n}, "random": {"mean": r}}
        return {"settings": [{"alpha": 0.1, "beta": 0.2, "claims": {"dip_on_background": c}}]}

    # above chance on every seed, below random weights on every seed
    out = combine_claims([seed(0.93, 0.79, 0.97), seed(0.95, 0.80, 0.98), seed(0.94, 0.78, 0.975)])
    dip = out[0]["claims"]["dip_on_background"]
    assert (dip["verdict_vs_chance"], dip["verdict_vs_random"], dip["verdict"]) == \
        ("supported", "contradicted", "contradicted")
    assert dip["vs_null"]["p"] == pytest.approx(t_test_p([0.14, 0.15, 0.16]), abs=1e-9)
    assert dip["vs_random"]["p"] < 0.05 < t_test_p([0.0, 0.01, -0.012])


def test_table_verdicts_carry_the_p_of_their_test():
    def run(row: str, s: int, top1: float) -> dict:
        return {"dataset": "d", "row": row, "seed": s, "start": "pretrained", "top1": top1}

    runs = [run("vit", s, 80.0 + s) for s in range(3)] + [run("awd-0.1", s, 81.0 + s + 0.2 * s) for s in range(3)]
    runs += [run("awd-dip-0.5", s, 80.0 + s + (0.05, -0.05, 0.0)[s]) for s in range(3)]
    got = {v["a"]: v for v in table_verdicts(runs, "d", (4, 8), margin=1.0)}
    assert got["awd-0.1"]["p"] == pytest.approx(t_test_p([1.0, 1.2, 1.4]))
    assert got["awd-dip-0.5"]["p"] == pytest.approx(equivalence_p([0.05, -0.05, 0.0], 1.0))
    assert got["awd-dip-0.5"]["p"] < 0.05 and got["awd-dip-0.5"]["verdict"] == "supported"
