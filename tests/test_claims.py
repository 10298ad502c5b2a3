"""``patchfield claims``: per-image measures, statistics and verdicts, data sets with masks, the command."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import tiny_hf_vit, tiny_vit
from PIL import Image

from patchfield import Grid, Windows, analyze, responsive_field
from patchfield.claims import MEASURES, ClaimsReport, claim_measures, claims_table, measure_claims, random_copy
from patchfield.claims.measures import (
    content_null_share,
    derangement,
    object_centroids,
    patch_variance,
)
from patchfield.cli import main
from patchfield.data import CocoMasks, MaskFolder, build_mask_dataset
from patchfield.data.coco import polygon_mask
from patchfield.grid import object_patches
from patchfield.verdicts import (
    VERDICTS,
    combine_verdicts,
    equivalent,
    holm,
    mean_interval,
    paired_comparison,
    t_quantile,
    verdict,
)

G = Grid(3, 4)  # 3 rows, 4 columns: patch p at x = p % 4, y = p // 4


def _patches(*idx: int) -> torch.Tensor:
    m = torch.zeros(1, G.n, dtype=torch.bool)
    m[0, list(idx)] = True
    return m


def _windows(bounds: dict[int, tuple[int, int, int, int]]) -> Windows:
    """Windows of ``G``: each patch's own cell, except the ``bounds`` given (left, right, top, bottom)."""
    x, y = G.coords()
    b = torch.stack([x, x, y, y], -1).clone()
    for p, v in bounds.items():
        b[p] = torch.tensor(v)
    return Windows(b[None, :, 0], b[None, :, 1], b[None, :, 2], b[None, :, 3], G)


# ---------------------------------------------------------------- hand-worked masks on a 3x4 grid, one per claim


def test_dip_on_background_hand_worked():
    # object: the top-right 2x2 block (patches 2, 3, 6, 7); D = {0, 5, 7}: two of three outside the object
    f = responsive_field(Windows.full(G, (1,)), _patches(0, 5, 7))
    m = claim_measures(f, _patches(2, 3, 6, 7))
    assert m["dip_background"].item() == pytest.approx(2 / 3)
    assert m["background_share"].item() == pytest.approx(8 / 12)  # the null: 8 of 12 patches are background


def test_field_size_hand_worked():
    # full windows, D = {0, 5, 11} all on the background: |S_p| = 12 - 3 = 9, plus 1 for p in D
    f = responsive_field(Windows.full(G, (1,)), _patches(0, 5, 11))
    m = claim_measures(f, _patches(2, 3, 6, 7))
    assert m["size_object"].item() == 9.0
    assert m["size_background"].item() == pytest.approx((3 * 10 + 5 * 9) / 8)
    assert m["window_object"].item() == m["window_background"].item() == 12.0
    # a window of 2x2 for patch 8 only: the window area differs between object and background
    f = responsive_field(_windows({8: (0, 1, 1, 2)}))
    m = claim_measures(f, _patches(2, 3))
    assert m["window_object"].item() == 1.0 and m["window_background"].item() == pytest.approx((9 + 4) / 10)
    assert m["size_background"].item() == pytest.approx((9 + 4) / 10)


def test_tendency_to_object_hand_worked():
    # object: patches 2, 3 (centroid (2.5, 0)); only patch 8 at (0, 2) has a field beyond itself,
    # [0, 1] x [1, 2], so R_8 = (1 + 0 - 0, 2 + 1 - 4) = (1, -1); every other tendency is zero and left out
    f = responsive_field(_windows({8: (0, 1, 1, 2)}))
    m = claim_measures(f, _patches(2, 3))
    to_object = (1 * 2.5 + (-1) * (-2)) / (math.sqrt(2) * math.hypot(2.5, -2))
    to_centre = (1 * 1.5 + (-1) * (-1)) / (math.sqrt(2) * math.hypot(1.5, -1))  # grid centre (1.5, 1)
    assert m["cos_object"].item() == pytest.approx(to_object, abs=1e-6)  # tendency is float32
    assert m["cos_center"].item() == pytest.approx(to_centre, abs=1e-6)
    # full windows point every patch at the grid centre exactly: the null's cosine is 1
    f = responsive_field(Windows.full(G, (1,)), _patches(0, 5, 11))
    assert claim_measures(f, _patches(2, 3, 6, 7))["cos_center"].item() == pytest.approx(1.0, abs=1e-6)


def test_content_only_null_hand_worked():
    # object: patches 2, 3, 6, 7; eight patches are flat (variance 0): seven on the background and object patch 6
    bg = ~_patches(2, 3, 6, 7)
    v = torch.zeros(1, G.n, dtype=torch.float64)
    v[0, [8, 2, 3, 7]] = torch.tensor([1.0, 1.0, 2.0, 3.0], dtype=torch.float64)

    def share(k: int) -> float:
        return content_null_share(v, torch.tensor([k]), bg).item()

    assert share(3) == pytest.approx(7 / 8)  # three of the eight tied flat patches: 7/8 background in expectation
    assert share(8) == pytest.approx(7 / 8)  # all eight flat patches
    assert share(9) == pytest.approx((7 + 0.5) / 9)  # one of patches 8 (background) and 2 (object), tied at 1.0
    assert share(10) == pytest.approx(8 / 10)
    assert math.isnan(share(0))  # no D: undefined
    distinct = torch.arange(G.n, dtype=torch.float64)[None]
    assert content_null_share(distinct, torch.tensor([3]), bg).item() == pytest.approx(2 / 3)  # patches 0, 1, 2
    # through claim_measures: as many patches as D (three here), from the variance of the image's pixels
    image = torch.zeros(1, 3, 6, 8)  # 2x2 pixels per patch
    image[0, :, 0:2, 4:8] = torch.tensor([[0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0]])  # patches 2, 3: textured
    image[0, 1, 2, 6] = 4.0  # patch 7: one bright pixel in one channel
    image[0, 0, 4:6, 0:2] = 0.5  # patch 8: flat, but not black
    var = patch_variance(image, G)
    assert var[0, [2, 3]].tolist() == [0.25, 0.25] and var[0, 7].item() == pytest.approx(3.0 / 3)
    assert var[0, [0, 1, 4, 5, 6, 8, 9, 10, 11]].tolist() == [0.0] * 9
    f = responsive_field(Windows.full(G, (1,)), _patches(0, 5, 7))
    m = claim_measures(f, _patches(2, 3, 6, 7), variance=var)
    assert m["background_share_content"].item() == pytest.approx(8 / 9)  # 3 of 9 flat patches, 8 on the background


def test_patch_variance_against_a_loop_on_non_divisible_sizes():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 7, 10, generator=gen)
    got = patch_variance(x, G)
    for b in range(2):
        for p in range(G.n):
            pixels = [(r, c) for r in range(7) for c in range(10)
                      if math.floor((r + 0.5) * 3 / 7) * 4 + math.floor((c + 0.5) * 4 / 10) == p]
            per_channel = [np.var([float(x[b, ch, r, c]) for r, c in pixels]) for ch in range(3)]
            assert got[b, p].item() == pytest.approx(np.mean(per_channel), abs=1e-12)


def test_shuffled_centroid_null_hand_worked():
    # patch 8 at (0, 2) has tendency (1, -1)/sqrt(2) (as in the tendency test); image a's object is patches 2, 3
    # (centroid (2.5, 0)), image b's patches 0, 1 (centroid (0.5, 0)); two images: the derangement swaps them
    f = responsive_field(_windows({8: (0, 1, 1, 2)}))
    centroids = object_centroids(torch.cat([_patches(2, 3), _patches(0, 1)]), G)
    assert centroids.tolist() == [[2.5, 0.0], [0.5, 0.0]]
    partner = derangement(2, torch.Generator().manual_seed(0))
    assert partner.tolist() == [1, 0]
    a = claim_measures(f, _patches(2, 3), shuffled_target=centroids[partner][:1])
    b = claim_measures(f, _patches(0, 1), shuffled_target=centroids[partner][1:])
    assert a["cos_shuffled"].item() == pytest.approx((0.5 + 2) / (math.sqrt(2) * math.hypot(0.5, 2)), abs=1e-6)
    assert b["cos_shuffled"].item() == pytest.approx(a["cos_object"].item(), abs=1e-12)  # toward a's centroid
    assert math.isnan(claim_measures(f, _patches(2, 3))["cos_shuffled"].item())  # no partner given


def test_derangement_is_seeded_uniform_and_leaves_the_global_rng():
    state = torch.random.get_rng_state()
    for n in range(2, 9):
        perm = derangement(n, torch.Generator().manual_seed(n))
        assert sorted(perm.tolist()) == list(range(n)) and all(perm[i] != i for i in range(n))
        assert torch.equal(perm, derangement(n, torch.Generator().manual_seed(n)))
    gen = torch.Generator().manual_seed(0)
    seen = {tuple(derangement(3, gen).tolist()) for _ in range(50)}
    assert seen == {(1, 2, 0), (2, 0, 1)}  # both derangements of 3, nothing else
    assert torch.equal(state, torch.random.get_rng_state())
    with pytest.raises(ValueError, match="at least 2"):
        derangement(1, gen)


def test_undefined_measures_are_nan():
    f = responsive_field(Windows.full(G, (1,)))  # beta = 0: D is empty
    m = claim_measures(f, _patches(2, 3))
    assert math.isnan(m["dip_background"].item())
    with pytest.raises(ValueError, match="object_patches"):
        claim_measures(f, torch.zeros(1, 5, dtype=torch.bool))


def _reference(f, obj, variance, shuffled) -> dict[str, list[float]]:
    """Every measure by plain float64 loops over images and patches (``variance`` without ties)."""
    out = {k: [] for k in MEASURES}
    g = f.grid
    for b in range(obj.shape[0]):
        o = obj[b].tolist()
        d = f.dropped[b].tolist()
        size = [float(s) for s in f.size[b].tolist()]
        area = [float(a) for a in f.windows.area()[b].tolist()]
        tend = f.tendency[b].double().tolist()
        mag = f.magnitude[b].tolist()
        pos = [(p % g.width, p // g.width) for p in range(g.n)]
        obj_idx = [p for p in range(g.n) if o[p]]
        bg_idx = [p for p in range(g.n) if not o[p]]
        in_d = [p for p in range(g.n) if d[p]]

        def mean(v):
            return sum(v) / len(v) if v else float("nan")

        out["dip_background"].append(mean([0.0 if o[p] else 1.0 for p in in_d]))
        out["background_share"].append(len(bg_idx) / g.n)
        out["size_object"].append(mean([size[p] for p in obj_idx]))
        out["size_background"].append(mean([size[p] for p in bg_idx]))
        out["window_object"].append(mean([area[p] for p in obj_idx]))
        out["window_background"].append(mean([area[p] for p in bg_idx]))
        cx = sum(pos[p][0] for p in obj_idx) / len(obj_idx)
        cy = sum(pos[p][1] for p in obj_idx) / len(obj_idx)
        lowest = sorted(range(g.n), key=lambda p: float(variance[b, p]))[:len(in_d)]
        out["background_share_content"].append(mean([0.0 if o[p] else 1.0 for p in lowest]))
        targets = (("cos_object", (cx, cy)), ("cos_center", ((g.width - 1) / 2, (g.height - 1) / 2)),
                   ("cos_shuffled", tuple(float(v) for v in shuffled[b])))
        for key, (tx, ty) in targets:
            cosines = []
            for p in bg_idx:
                dx, dy = tx - pos[p][0], ty - pos[p][1]
                dist = math.hypot(dx, dy)
                if mag[p] > 0 and dist > 0:
                    cosines.append((tend[p][0] * dx + tend[p][1] * dy) / dist)
            out[key].append(mean(cosines))
    return out


def test_measures_match_float64_loops():
    gen = torch.Generator().manual_seed(3)
    b = 6
    x0 = torch.randint(0, 4, (b, G.n), generator=gen)
    x1 = torch.randint(0, 4, (b, G.n), generator=gen)
    y0 = torch.randint(0, 3, (b, G.n), generator=gen)
    y1 = torch.randint(0, 3, (b, G.n), generator=gen)
    w = Windows(torch.minimum(x0, x1), torch.maximum(x0, x1), torch.minimum(y0, y1), torch.maximum(y0, y1), G)
    f = responsive_field(w, torch.rand(b, G.n, generator=gen) < 0.3)
    obj = torch.rand(b, G.n, generator=gen) < 0.4
    obj[:, 0], obj[:, 11] = True, False  # some but not all patches
    variance = torch.rand(b, G.n, generator=gen, dtype=torch.float64)  # continuous: no ties
    shuffled = torch.rand(b, 2, generator=gen, dtype=torch.float64) * torch.tensor([3.0, 2.0])
    shuffled[0] = torch.tensor([1.0, 1.0])  # on a patch: that patch has no direction and is left out
    got = claim_measures(f, obj, variance=variance, shuffled_target=shuffled)
    want = _reference(f, obj, variance, shuffled)
    for k in MEASURES:
        np.testing.assert_allclose(got[k].numpy(), np.array(want[k]), rtol=0, atol=1e-12, equal_nan=True, err_msg=k)


def test_mask_to_patch_rule_on_non_divisible_sizes():
    # 7x10 pixels over the 3x4 grid: pixel (r, c) lies in patch (floor((r+.5)*3/7), floor((c+.5)*4/10))
    gen = torch.Generator().manual_seed(0)
    mask = torch.rand(7, 10, generator=gen) < 0.5
    inside, total = np.zeros(12), np.zeros(12)
    for r in range(7):
        for c in range(10):
            p = math.floor((r + 0.5) * 3 / 7) * 4 + math.floor((c + 0.5) * 4 / 10)
            total[p] += 1
            inside[p] += float(mask[r, c])
    assert object_patches(mask, G).tolist() == (inside / total >= 0.5).tolist()


# ---------------------------------------------------------------- statistics and verdicts


@pytest.mark.parametrize("p, df, table", [
    (0.975, 1, 12.7062), (0.975, 2, 4.3027), (0.975, 3, 3.1824), (0.975, 5, 2.5706), (0.975, 10, 2.2281),
    (0.975, 30, 2.0423), (0.975, 120, 1.9799), (0.95, 1, 6.3138), (0.95, 10, 1.8125), (0.995, 4, 4.6041),
    (0.9, 20, 1.3253), (0.025, 10, -2.2281),
])
def test_t_quantile_against_table(p, df, table):
    assert abs(t_quantile(p, df) - table) < 1e-4
    assert abs(t_quantile(0.975, 1e7) - 1.959964) < 1e-5  # the normal limit


def test_paired_comparison_against_float64_loop():
    a = [0.9, 0.7, 0.85, float("nan"), 0.6, 0.95]
    b = [0.5, 0.6, 0.8, 0.1, 0.65, 0.5]
    d = [x - y for x, y in zip(a, b) if not math.isnan(x)]
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in d) / (n - 1))
    half = 2.7764451051977987 * sd / math.sqrt(n)  # t_{0.975, 4}
    got = paired_comparison(a, b)
    assert got["n"] == 5 and got["diff"] == pytest.approx(mean, abs=1e-12)
    assert got["ci95"] == pytest.approx([mean - half, mean + half], abs=1e-9)
    assert all(math.isnan(v) for v in paired_comparison([1.0], [0.0])["ci95"])  # one pair: no interval
    assert mean_interval([])[3] == 0


def test_verdict_rule_on_constructed_values():
    up, flat, down = {"ci95": [0.1, 0.4]}, {"ci95": [-0.1, 0.2]}, {"ci95": [-0.5, -0.2]}
    assert verdict([up, up]) == "supported"
    assert verdict([up, flat]) == "not supported"  # far above one control, not the other
    assert verdict([up, down]) == "contradicted"
    assert verdict([down, down], "less") == "supported"
    assert verdict([up, {"ci95": [float("nan"), float("nan")]}]) == "not supported"
    with pytest.raises(ValueError, match="direction"):
        verdict([up], "up")
    assert equivalent([0.01, -0.02, 0.0, 0.02], 0.1) and not equivalent([0.5, 0.6, 0.55], 0.1)


def _report(trained: dict[str, list[float]], random: dict[str, list[float]]) -> ClaimsReport:
    def t(d):
        return {(0.1, 0.2): {m: torch.tensor(d[m], dtype=torch.float64) for m in MEASURES}}

    n = len(trained["dip_background"])
    return ClaimsReport("m", [str(i) for i in range(n)], {"missing": 0, "unreadable": 0, "no_mask": 0,
                                                           "degenerate_mask": 0}, 2, 0, (3, 4), t(trained), t(random))


def _values(**over: list[float]) -> dict[str, list[float]]:
    base = {m: [0.5, 0.5, 0.5, 0.5] for m in MEASURES}
    return {**base, **over}


def test_report_verdicts_and_schema():
    trained = _values(dip_background=[0.9, 0.95, 0.85, 0.9], background_share=[0.6, 0.7, 0.65, 0.6],
                      background_share_content=[0.95, 0.97, 0.9, 0.92],
                      size_object=[3.0, 2.0, 3.0, 2.5], size_background=[6.0, 5.0, 6.5, 5.0],
                      cos_object=[0.2, 0.1, 0.3, 0.2], cos_center=[0.5, 0.6, 0.55, 0.5],
                      cos_shuffled=[0.0, -0.1, 0.1, 0.05])
    random = _values(dip_background=[0.6, 0.7, 0.6, 0.65], size_object=[4.0, 4.0, 4.5, 4.0],
                     size_background=[4.5, 4.0, 5.0, 4.5], cos_object=[0.2, 0.1, 0.25, 0.3])
    rep = _report(trained, random)
    out = json.loads(json.dumps(rep.to_json()))
    assert {"model", "images", "skipped", "random_inits", "settings", "verdict_meanings", "holm_tests"} <= set(out)
    assert set(out["skipped"]) == {"missing", "unreadable", "no_mask", "degenerate_mask"}
    claims = out["settings"][0]["claims"]
    assert out["settings"][0]["alpha"] == 0.1 and out["settings"][0]["beta"] == 0.2
    assert list(claims) == ["dip_on_background", "dip_on_background_content", "field_size", "tendency_to_object",
                            "tendency_to_object_shuffled"]
    words = {k: (c["verdict_vs_chance"], c["verdict_vs_random"], c["verdict"]) for k, c in claims.items()}
    assert words == {
        "dip_on_background": ("supported", "supported", "supported"),
        "dip_on_background_content": ("contradicted", "supported", "contradicted"),  # below the low-variance null
        "field_size": ("supported", "supported", "supported"),
        "tendency_to_object": ("contradicted", "not supported", "contradicted"),  # below the geometric null
        "tendency_to_object_shuffled": ("supported", "not supported", "not supported"),  # level with random
    }
    dip = claims["dip_on_background"]
    assert set(dip) == {"trained", "random", "null", "vs_null", "vs_random", "verdict", "verdict_vs_chance",
                        "verdict_vs_random"}
    assert set(dip["vs_null"]) == {"diff", "ci95", "n", "p", "p_holm"}
    assert dip["trained"] == {"mean": pytest.approx(0.9), "std": pytest.approx(np.std([.9, .95, .85, .9], ddof=1)),
                              "n": 4}
    assert dip["vs_random"]["diff"] == pytest.approx(0.9 - 0.6375)
    content = claims["dip_on_background_content"]
    assert content["null"]["mean"] == pytest.approx(0.935) and content["vs_null"]["diff"] == pytest.approx(-0.035)
    assert content["vs_random"] == dip["vs_random"]  # one claim, one comparison with random weights
    shuffled = claims["tendency_to_object_shuffled"]
    assert shuffled["vs_null"]["diff"] == pytest.approx(0.1875) and shuffled["null"]["mean"] == pytest.approx(0.0125)
    size = claims["field_size"]
    assert set(size["trained"]) == {"object", "background"} and "null" not in size["trained"]
    gaps_t, gaps_r = np.array([3.0, 3.0, 3.5, 2.5]), np.array([0.5, 0.0, 0.5, 0.5])
    assert size["vs_random"]["diff"] == pytest.approx((gaps_t - gaps_r).mean())
    assert size["vs_null"]["diff"] == pytest.approx(gaps_t.mean())
    # Holm over the 8 distinct comparisons: 5 nulls, 3 random-weights comparisons (shared by a claim's rows)
    tests = [c["vs_null"] for c in claims.values()] + [claims[k]["vs_random"] for k in
                                                      ("dip_on_background", "field_size", "tendency_to_object")]
    assert out["holm_tests"] == 8
    assert [c["p_holm"] for c in tests] == pytest.approx(holm([c["p"] for c in tests]))
    assert all(c["p"] <= c["p_holm"] <= 1.0 for c in tests)
    # not supported: above the null, level with random weights
    rep = _report(trained, {**trained, "dip_background": [0.92, 0.93, 0.84, 0.91]})
    dip = rep.to_json()["settings"][0]["claims"]["dip_on_background"]
    assert (dip["verdict_vs_chance"], dip["verdict_vs_random"], dip["verdict"]) == \
        ("supported", "not supported", "not supported")
    md = rep.to_markdown()
    assert "What the verdicts mean" in md and "p_holm" in md and "8 distinct comparisons" in md
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 5 and all(line.count("|") == 10 for line in table)
    assert "| **supported** | " in table[1] and table[1].endswith("| not supported |")
    rows = rep.per_image()
    assert len(rows) == 4 and rows[2]["trained_size_object"] == 3.0 and rows[2]["random_size_object"] == 3.0


def test_claims_table_renders_an_older_claims_json_as_before():
    """A claims.json written before the two verdicts (the study's committed per-seed files): 6 columns, 3 claims."""
    old = {"trained": {"mean": 0.9, "std": 0.1, "n": 3}, "random": {"mean": 0.8, "std": 0.1, "n": 3},
           "null": {"mean": 0.7, "std": 0.1, "n": 3}, "vs_null": {"diff": 0.2, "ci95": [0.1, 0.3], "n": 3},
           "vs_random": {"diff": 0.1, "ci95": [0.05, 0.15], "n": 3}, "verdict": "supported"}
    lines = claims_table({"dip_on_background": old, "tendency_to_object": {**old, "verdict": "not supported"}})
    assert lines[0] == ("| claim | trained | random weights | null | trained − null; trained − random (95% CI) "
                        "| verdict |")
    assert len(lines) == 4 and lines[2].endswith("| +0.200 [+0.100, +0.300]; +0.100 [+0.050, +0.150] | "
                                                 "**supported** |")


def test_nan_becomes_null_in_json():
    rep = _report(_values(dip_background=[float("nan")] * 4), _values())
    dip = rep.to_json()["settings"][0]["claims"]["dip_on_background"]
    assert dip["trained"]["mean"] is None and dip["verdict"] == "not supported"
    assert dip["vs_null"]["p"] is None and dip["vs_null"]["p_holm"] is None  # no test: out of Holm's family
    assert dip["verdict_vs_chance"] == dip["verdict_vs_random"] == "not supported"
    json.dumps(rep.to_json(), allow_nan=False)
    assert rep.to_csv().splitlines()[1].split(",")[3] == ""  # trained_dip_background, undefined


# ---------------------------------------------------------------- a user's own data set, skip counting


class _Pairs:
    """The protocol at its smallest: a list of ``(image, mask)`` pairs, ``None`` for an unreadable image."""

    def __init__(self, items, skipped=None):
        self.items, self.skipped = items, skipped or {}

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_own_data_set_counts_skipped_images(one_thread):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, 32, 32, generator=gen)
    half = torch.zeros(32, 32, dtype=torch.bool)
    half[:, :16] = True  # the left half: 8 of 16 patches
    items = [(x[0], half), None, (x[1], None), (x[2], torch.zeros(32, 32, dtype=torch.bool)),
             (x[3], torch.ones(32, 32, dtype=torch.bool)), (x[4], half.flip(0).T), (x[5], half)]
    model = tiny_vit()
    rep = measure_claims(model, _Pairs(items, {"missing": 2}), [0.1], [0.2], random_inits=1, batch_size=3)
    assert rep.skipped == {"missing": 2, "unreadable": 1, "no_mask": 1, "degenerate_mask": 2}
    assert rep.names == ["0", "5", "6"] and rep.images == 3
    assert measure_claims(model, _Pairs(items), [0.1], [0.2], 1, limit=1).images == 1
    # the same numbers as claim_measures on analyze's fields for those images
    res = analyze(model, x[[0, 4, 5]], 0.1, 0.2)
    obj = object_patches(torch.stack([half, half.flip(0).T, half]), res.grid)
    partner = derangement(3, torch.Generator().manual_seed(0))  # the default: a generator seeded with `seed`
    want = claim_measures(res.field, obj, variance=patch_variance(x[[0, 4, 5]], res.grid),
                          shuffled_target=object_centroids(obj, res.grid)[partner])
    for m in MEASURES:
        torch.testing.assert_close(rep.trained[(0.1, 0.2)][m], want[m], equal_nan=True)
    with pytest.raises(ValueError, match="mask is"):
        measure_claims(model, _Pairs([(x[0], half[:16])]), [0.1], [0.2], 1)
    with pytest.raises(ValueError, match="has an object mask"):
        measure_claims(model, _Pairs([(x[0], None), None]), [0.1], [0.2], 1)
    with pytest.raises(ValueError, match="no image could be measured"):
        measure_claims(model, _Pairs([(x[3], torch.ones(32, 32, dtype=torch.bool))]), [0.1], [0.2], 1)
    with pytest.raises(ValueError, match="at least 1"):
        measure_claims(model, _Pairs(items), [0.1], [0.2], random_inits=0)


# ---------------------------------------------------------------- random-weights control


def test_random_copy_is_seeded_and_leaves_the_global_rng(one_thread):
    model = tiny_vit()
    state = torch.random.get_rng_state()
    a, b, c = random_copy(model, 5), random_copy(model, 5), random_copy(model, 6)
    assert torch.equal(state, torch.random.get_rng_state())
    wa, wb, wc = (dict(m.named_parameters())["blocks.0.attn.qkv.weight"] for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    assert not torch.equal(wa, dict(model.named_parameters())["blocks.0.attn.qkv.weight"])
    with torch.no_grad():
        model.norm.weight.fill_(3.0)  # trained norms are reset too
    assert torch.equal(random_copy(model, 5).norm.weight, torch.ones(32))
    hf = tiny_hf_vit()
    h1, h2 = random_copy(hf, 1), random_copy(hf, 2)
    assert type(h1) is type(hf) and not torch.equal(h1.vit.embeddings.patch_embeddings.projection.weight,
                                                     h2.vit.embeddings.patch_embeddings.projection.weight)
    with pytest.raises(ValueError, match="re-initialise"):
        random_copy(torch.nn.Linear(2, 2), 0)


# ---------------------------------------------------------------- data sets with masks


@pytest.fixture(scope="module")
def coco_folder(tmp_path_factory):
    """The embedded set's first 6 val images as PNGs with COCO instances: polygons, compressed and uncompressed RLE."""
    from pycocotools import mask as mask_utils

    from patchfield.data import SyntheticShapes

    root = tmp_path_factory.mktemp("coco")
    ds = SyntheticShapes(6, image_size=32, split="val")
    raw, masks, _ = ds.render(range(6))
    images, anns = [], []
    for i in range(6):
        name = f"img{i}.png"
        Image.fromarray(raw[i]).save(root / name)
        images.append({"id": 100 + i, "file_name": name, "height": 32, "width": 32})
        m = masks[i]
        if i < 3:  # polygons: one rectangle per run of object pixels, split into two instances (union)
            polys = []
            for r in range(32):
                cols = np.flatnonzero(np.diff(np.concatenate([[0], m[r].astype(int), [0]])))
                polys += [[float(a), r, float(b), r, float(b), r + 1, float(a), r + 1]
                          for a, b in zip(cols[::2], cols[1::2])]
            half = len(polys) // 2
            for k, part in enumerate((polys[:half], polys[half:])):
                anns.append({"id": len(anns), "image_id": 100 + i, "category_id": 1 + k, "segmentation": part})
        elif i < 5:  # compressed RLE
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            anns.append({"id": len(anns), "image_id": 100 + i, "category_id": 1, "iscrowd": 1,
                         "segmentation": {"size": [32, 32], "counts": rle["counts"].decode()}})
        else:  # uncompressed RLE: column-major runs, starting with background
            flat = m.T.reshape(-1).astype(int)
            edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
            counts = np.diff(np.concatenate([[0], edges])).tolist()
            anns.append({"id": len(anns), "image_id": 100 + i, "category_id": 2, "iscrowd": 1,
                         "segmentation": {"size": [32, 32], "counts": counts}})
    images.append({"id": 999, "file_name": "absent.png", "height": 32, "width": 32})
    cats = [{"id": 1, "name": "shape"}, {"id": 2, "name": "other"}]
    (root / "instances.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return root


def test_polygon_rasterisation_by_pixel_centres():
    tri = polygon_mask([0, 0, 4, 0, 0, 4], 4, 4)  # pixel centres strictly below the diagonal x + y = 4
    assert tri.astype(int).tolist() == [[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]]
    assert not polygon_mask([1, 1, 2, 2], 4, 4).any()


def test_coco_fixture_equals_the_synthetic_path(coco_folder, one_thread):
    coco = CocoMasks(coco_folder, coco_folder / "instances.json", 32, crop_pct=1.0)
    synth = build_mask_dataset("synthetic", "val", 32, num_images=6)
    assert len(coco) == 6 and coco.skipped == {"missing": 1}
    for i in range(6):
        (xc, mc), (xs, ms) = coco[i], synth[i]
        assert torch.equal(mc, ms), f"mask {i}"
        torch.testing.assert_close(xc, xs, rtol=0, atol=1e-6)
    model = tiny_vit()
    a = measure_claims(model, coco, [0.1], [0.2, 0.5], random_inits=1, batch_size=4)
    b = measure_claims(model, synth, [0.1], [0.2, 0.5], random_inits=1, batch_size=4)
    assert a.skipped["missing"] == 1 and b.skipped["missing"] == 0
    assert a.images == b.images and a.images + a.skipped["degenerate_mask"] == 6
    for s in a.settings:
        for m in MEASURES:
            torch.testing.assert_close(a.trained[s][m], b.trained[s][m], equal_nan=True)
            torch.testing.assert_close(a.random[s][m], b.random[s][m], equal_nan=True)
    only = CocoMasks(coco_folder, coco_folder / "instances.json", 32, crop_pct=1.0, category=["other"])
    assert only[0][1].sum() < synth[0][1].sum() and only[3][1] is None  # image 3's instance is category 1


def test_mask_folder_and_bad_masks(coco_folder, tmp_path):
    synth = build_mask_dataset("synthetic", "val", 32, num_images=2)
    (tmp_path / "img").mkdir()
    (tmp_path / "mask").mkdir()
    for i in range(2):
        Image.open(coco_folder / f"img{i}.png").save(tmp_path / "img" / f"img{i}.png")
        Image.fromarray(synth[i][1].numpy().astype(np.uint8) * 255).save(tmp_path / "mask" / f"img{i}.png")
    folder = MaskFolder(tmp_path / "img", tmp_path / "mask", 32, crop_pct=1.0)
    assert torch.equal(folder[1][1], synth[1][1])
    Image.new("L", (20, 32)).save(tmp_path / "mask" / "img1.png")
    with pytest.raises(ValueError, match="masks must have their image's size"):
        folder[1]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has a mask"):
        MaskFolder(tmp_path / "img", tmp_path / "empty", 32)


# ---------------------------------------------------------------- the command, as a new user runs it


@pytest.fixture(scope="module")
def user_model(tmp_path_factory):
    """A timm ViT (``test_vit`` at 64 px: a 4x4 grid) with local weights."""
    import timm
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("model") / "w.safetensors"
    torch.manual_seed(0)
    model = timm.create_model("test_vit", img_size=64, num_classes=4).eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def _cli(user_model, coco_folder, out, *extra: str) -> list[str]:
    return ["claims", "--model", "test_vit", "--weights", str(user_model), "--image-size", "64", "--data", "coco",
            "--data-root", str(coco_folder), "--annotations", str(coco_folder / "instances.json"),
            "--random-inits", "2", "--batch-size", "8", "--out", str(out), *extra]


def test_cli_end_to_end_on_a_coco_folder(user_model, coco_folder, tmp_path, capsys, one_thread):
    out = tmp_path / "out"
    assert main(_cli(user_model, coco_folder, out, "--alpha", "0.1", "0.5", "--beta", "0.2")) == 0
    written = ["claims.json", "claims.md", "claims.png", "per_image.csv"]
    assert {p.name for p in out.iterdir()} == {*written, "outputs.json"}  # outputs.json: the run's record, last
    assert json.loads((out / "outputs.json").read_text())["files"] == written
    report = json.loads((out / "claims.json").read_text())
    assert report["model"] == "test_vit" and report["random_inits"] == 2
    assert report["skipped"]["missing"] == 1
    assert report["images"] + report["skipped"]["degenerate_mask"] == 6
    assert [(s["alpha"], s["beta"]) for s in report["settings"]] == [(0.1, 0.2), (0.5, 0.2)]
    for s in report["settings"]:
        for claim in s["claims"].values():
            assert claim["verdict"] in ("supported", "not supported", "contradicted")
            lo, hi = claim["vs_random"]["ci95"]
            assert lo <= claim["vs_random"]["diff"] <= hi
    rows = (out / "per_image.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2 * report["images"] and rows[0].startswith("image,alpha,beta,trained_dip_background")
    dip = [float(r.split(",")[3]) for r in rows[1:] if r.split(",")[1:3] == ["0.1", "0.2"]]
    assert report["settings"][0]["claims"]["dip_on_background"]["trained"]["mean"] == pytest.approx(np.mean(dip))
    md = (out / "claims.md").read_text()
    assert "## α = 0.1, β = 0.2" in md and "What the verdicts mean" in md
    with Image.open(out / "claims.png") as im:
        assert im.width > 300 and im.height > 300
    captured = capsys.readouterr()
    assert "measured" in captured.out and "claims" in captured.err  # the progress bar


@pytest.mark.parametrize("case, match", [
    ("not_coco", "not a COCO instances file"),
    ("inits0", "--random-inits must be a whole number of at least 1"),
    ("no_masks", "has an object mask"),
    ("no_attention", "attention"),
])
def test_cli_bad_input_one_line_exit_2(case, match, user_model, coco_folder, tmp_path, capsys, one_thread):
    out = tmp_path / "out"
    args = _cli(user_model, coco_folder, out, "--no-progress", "--random-inits", "1")
    ann = tmp_path / "ann.json"
    data = json.loads((coco_folder / "instances.json").read_text())
    if case == "not_coco":
        ann.write_text(json.dumps({"info": {}}))
    elif case == "no_masks":
        ann.write_text(json.dumps({**data, "annotations": []}))
    else:
        ann = coco_folder / "instances.json"
    args[args.index("--annotations") + 1] = str(ann)
    if case == "inits0":
        args += ["--random-inits", "0"]
    if case == "no_attention":
        drop = {args.index(k) + j for k in ("--weights", "--image-size") for j in (0, 1)}
        args = [a for i, a in enumerate(args) if i not in drop]
        args[args.index("test_vit")] = "resnet10t"
        args += ["--random-weights"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0], err
    assert not (out / "claims.json").exists()


def test_cli_an_image_whose_annotations_misstate_its_size_is_skipped(user_model, coco_folder, tmp_path, one_thread):
    # one image never ends a run: it is named with its reason in claims.json and the exit code is 1
    out, ann = tmp_path / "out", tmp_path / "ann.json"
    data = json.loads((coco_folder / "instances.json").read_text())
    data["images"][0]["width"] = 40
    ann.write_text(json.dumps(data))
    args = _cli(user_model, coco_folder, out, "--no-progress", "--random-inits", "1")
    args[args.index("--annotations") + 1] = str(ann)
    assert main(args) == 1
    report = json.loads((out / "claims.json").read_text())
    (entry,) = report["skipped_images"]
    assert entry["image"] == data["images"][0]["file_name"] and "masks must have their image's size" in entry["reason"]
    assert report["skipped"]["unreadable"] == 1


def test_cli_on_cub_and_mask_folder(user_model, coco_folder, tmp_path, one_thread):
    from fixtures_data import write_cub

    info = write_cub(tmp_path / "CUB_200_2011", num_images=8, size=(80, 64), segmented=(2, 4), corrupt_id=6)
    base = ["claims", "--model", "test_vit", "--weights", str(user_model), "--image-size", "64", "--random-inits", "1",
            "--no-progress"]
    assert main([*base, "--data", "cub", "--data-root", str(info["root"]), "--split", "val",
                 "--out", str(tmp_path / "cub")]) == 1  # an image was skipped
    report = json.loads((tmp_path / "cub" / "claims.json").read_text())
    assert report["skipped"]["unreadable"] == 1  # id 6, a test image, is corrupt
    assert len(report["skipped_images"]) == 1 and report["skipped_images"][0]["reason"]
    assert report["images"] + report["skipped"]["degenerate_mask"] == 3  # test ids 2, 4, 8
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(tmp_path / "masks" / "img0.png")  # all object
    assert main([*base, "--data", "masks", "--data-root", str(coco_folder), "--mask-root", str(tmp_path / "masks"),
                 "--out", str(tmp_path / "m")]) == 2  # the only mask covers every patch: nothing to measure
    assert not (tmp_path / "m" / "claims.json").exists()


# ---------------------------------------------------------------- the shipped demo model, end to end


def test_cli_on_the_demo_model_writes_both_verdicts(tmp_path, one_thread):
    from patchfield.demo import demo_models_dir

    out = tmp_path / "demo"
    assert main(["claims", "--model", str(demo_models_dir() / "vit"), "--data", "synthetic", "--limit", "4",
                 "--random-inits", "1", "--batch-size", "4", "--no-progress", "--out", str(out)]) == 0
    report = json.loads((out / "claims.json").read_text())
    assert report["grid"] == [8, 8] and report["images"] >= 2
    assert "vs chance" in report["verdict_meanings"] and "derived" in report["verdict_meanings"]
    claims = report["settings"][0]["claims"]
    assert set(claims) == {"dip_on_background", "dip_on_background_content", "field_size", "tendency_to_object",
                           "tendency_to_object_shuffled"}
    family = {}
    for key, c in claims.items():
        assert {c["verdict_vs_chance"], c["verdict_vs_random"], c["verdict"]} <= set(VERDICTS), key
        assert c["verdict"] == combine_verdicts(c["verdict_vs_chance"], c["verdict_vs_random"])
        for which in ("vs_null", "vs_random"):
            cmp = c[which]
            lo, hi = cmp["ci95"]
            assert lo <= cmp["diff"] <= hi and 0.0 <= cmp["p"] <= cmp["p_holm"] <= 1.0, (key, which)
            family[(cmp["diff"], cmp["p"])] = cmp["p_holm"]
    assert report["holm_tests"] == len(family) == 8
    assert claims["dip_on_background_content"]["null"]["n"] == claims["dip_on_background"]["trained"]["n"]
    md = (out / "claims.md").read_text()
    assert "verdict vs chance" in md and "shuffled" in md and "content only" in md
    header = (out / "per_image.csv").read_text().splitlines()[0].split(",")
    assert "trained_background_share_content" in header and "random_cos_shuffled" in header
