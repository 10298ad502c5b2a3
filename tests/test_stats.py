"""patchfield.stats: per-head statistics, the artefact-token mixture and ranks, each against a float64 loop."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import tiny_deit, tiny_hf_vit, tiny_vit
from PIL import Image

import patchfield as pf
from patchfield.cli import main
from patchfield.stats import (
    artefact_overlap,
    artefact_tokens,
    attention_entropy,
    average_ranks,
    class_token_attention,
    fit_two_gaussians,
    head_statistics,
    mean_attention_distance,
    patch_distances,
    spearman,
)

# ---------------------------------------------------------------- float64 loops


def ref_head_stats(block: np.ndarray, gh: int, gw: int, ph: float, pw: float) -> tuple[float, float]:
    """One head's patch block [N, N] -> (mean distance in pixels, entropy in nats), rows renormalised."""
    n = gh * gw
    dist_sum = ent_sum = 0.0
    for p in range(n):
        total = sum(float(block[p, i]) for i in range(n))
        d = h = 0.0
        for i in range(n):
            a = float(block[p, i]) / total if total > 0 else 0.0
            dx, dy = (p % gw - i % gw) * pw, (p // gw - i // gw) * ph
            d += a * math.sqrt(dx * dx + dy * dy)
            h -= a * math.log(a) if a > 0 else 0.0
        dist_sum += d
        ent_sum += h
    return dist_sum / n, ent_sum / n


def ref_ranks(x: list[float]) -> list[float]:
    out = []
    for v in x:
        below = sum(1 for u in x if u < v)
        equal = sum(1 for u in x if u == v)
        out.append(below + (equal + 1) / 2)
    return out


def ref_spearman(x: list[float], y: list[float]) -> float:
    rx, ry = ref_ranks(x), ref_ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    return cov / math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))


# ---------------------------------------------------------------- per-head statistics


def test_self_attention_has_distance_and_entropy_zero():
    eye = torch.eye(12).expand(3, 12, 12)  # 3 heads on a 3x4 grid, each patch attends only to itself
    assert mean_attention_distance(eye, (3, 4), (16, 8)).tolist() == [0.0, 0.0, 0.0]
    assert attention_entropy(eye).tolist() == [0.0, 0.0, 0.0]
    with_prefix = torch.zeros(13, 13)  # a class token takes 40% of every row; the patch block is 0.6 * I
    with_prefix[:, 0] = 0.4
    with_prefix[1:, 1:] += 0.6 * torch.eye(12)
    block = with_prefix[1:, 1:]
    assert float(mean_attention_distance(block, (3, 4), 16)) == 0.0 and float(attention_entropy(block)) == 0.0


def test_uniform_attention_closed_forms():
    # a 1 x w row of s-pixel patches: E|i - j| over all pairs = (w^2 - 1) / (3w) patches
    for w, s in ((2, 16), (5, 16), (7, 14)):
        got = float(mean_attention_distance(torch.full((w, w), 1 / w, dtype=torch.float64), (1, w), s))
        assert got == pytest.approx(s * (w * w - 1) / (3 * w), rel=1e-12)
    # 2 x 2 grid of 16-pixel patches: distances 0, 16, 16, 16*sqrt(2) from every patch
    got = float(mean_attention_distance(torch.full((4, 4), 0.25, dtype=torch.float64), (2, 2), 16))
    assert got == pytest.approx(8 + 4 * math.sqrt(2), rel=1e-12)
    # any h x w grid with (ph, pw) patches: pairs at offset (dx, dy) number (w - |dx|)(h - |dy|)
    for h, w, ph, pw in ((3, 5, 16, 16), (4, 2, 8, 16)):
        n = h * w
        closed = sum((w - abs(dx)) * (h - abs(dy)) * math.hypot(dx * pw, dy * ph)
                     for dx in range(-w + 1, w) for dy in range(-h + 1, h)) / n**2
        uniform = torch.full((n, n), 1 / n, dtype=torch.float64)
        assert float(mean_attention_distance(uniform, (h, w), (ph, pw))) == pytest.approx(closed, rel=1e-12)
        assert float(attention_entropy(uniform)) == pytest.approx(math.log(n), rel=1e-12)
        # rows renormalised: uniform attention on patches with a prefix share gives the same numbers
        assert float(mean_attention_distance(0.3 * uniform, (h, w), (ph, pw))) == pytest.approx(closed, rel=1e-12)


def test_head_statistics_match_a_float64_loop():
    g = torch.Generator().manual_seed(0)
    gh, gw, ph, pw, prefix = 3, 4, 8, 16, 2
    t = prefix + gh * gw
    attn = torch.softmax(3 * torch.randn(2, 3, t, t, generator=g), -1)  # [B, k, T, T]
    attn[0, 1, :, prefix + 5] = 0.0  # a key nobody attends to: 0 log 0 = 0
    block = attn[..., prefix:, prefix:]
    dist = mean_attention_distance(block, (gh, gw), (ph, pw))
    ent = attention_entropy(block)
    mass, cmap = class_token_attention(attn, prefix)
    for b in range(2):
        for h in range(3):
            d_ref, e_ref = ref_head_stats(block[b, h].double().numpy(), gh, gw, ph, pw)
            assert float(dist[b, h]) == pytest.approx(d_ref, rel=1e-5)
            assert float(ent[b, h]) == pytest.approx(e_ref, rel=1e-5)
        row = [sum(float(attn[b, h, 0, prefix + i]) for h in range(3)) / 3 for i in range(gh * gw)]
        np.testing.assert_allclose(cmap[b].numpy(), row, rtol=1e-6)
        assert float(mass[b]) == pytest.approx(sum(row), rel=1e-6)
    d = patch_distances((2, 3), (8, 16))
    assert d[0, 5].item() == pytest.approx(math.hypot(2 * 16, 8)) and d.shape == (6, 6)
    with pytest.raises(ValueError, match="patches but the grid"):
        mean_attention_distance(block, (3, 3), 16)


# ---------------------------------------------------------------- ranks


def test_average_ranks_and_spearman_match_loops():
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 6, (40,), generator=g).double()  # many ties
    y = x * 0.5 + torch.randn(40, generator=g, dtype=torch.float64)
    assert average_ranks(x).tolist() == ref_ranks(x.tolist())
    assert spearman(x, y) == pytest.approx(ref_spearman(x.tolist(), y.tolist()), rel=1e-12)
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert math.isnan(spearman(x, torch.ones(40)))


# ---------------------------------------------------------------- artefact tokens


def _planted(n: int, seed: int, k: int) -> tuple[torch.Tensor, list[int]]:
    g = torch.Generator().manual_seed(seed)
    logn = 3 + 0.3 * torch.randn(n, generator=g, dtype=torch.float64)
    idx = torch.randperm(n, generator=g)[:k]
    logn[idx] = 3 + math.log(10) + 0.1 * torch.randn(k, generator=g, dtype=torch.float64)  # ten times the norm
    return logn.exp(), sorted(idx.tolist())


@pytest.mark.parametrize("seed", range(4))
def test_mixture_finds_planted_outliers(seed):
    for n, k in ((196, 4), (196, 1), (64, 3)):
        norms, planted = _planted(n, seed, k)
        fit = artefact_tokens(norms)
        assert fit.found and fit.tokens == planted, (n, k, fit.reason)
        assert fit.separation >= 2 and fit.bic1 - fit.bic2 >= 10 and fit.weights[1] < 0.25
        assert norms.log().sort().values[-k - 1] < math.log(fit.crossover) < norms.log()[planted].min()


def test_mixture_finds_none_in_unimodal_norms():
    for n in (64, 196, 576):
        for seed in range(6):
            g = torch.Generator().manual_seed(seed)
            fit = artefact_tokens((3 + 0.3 * torch.randn(n, generator=g)).exp())
            assert not fit.found and fit.tokens == [] and fit.crossover is None, (n, seed)
            assert fit.reason.startswith("not bimodal")
    halves = torch.cat([10 + torch.linspace(0, 1, 30), 100 + torch.linspace(0, 1, 30)])  # bimodal, but half the tokens
    fit = artefact_tokens(halves)
    assert not fit.found and fit.separation > 2 and "holds 50%" in fit.reason
    assert "equal" in artefact_tokens(torch.ones(20)).reason
    assert not artefact_tokens(torch.tensor([1.0, 2.0, 100.0])).found  # too few tokens
    with pytest.raises(ValueError, match="positive"):
        artefact_tokens(torch.tensor([1.0, 0.0] * 5))


def test_mixture_fit_and_crossover_against_plain_formulas():
    norms, _ = _planted(120, 7, 5)
    x = norms.log().double()
    w, m, v, loglik = fit_two_gaussians(x)
    ref = 0.0
    for xi in x.tolist():
        ref += math.log(sum(w[c].item() / math.sqrt(2 * math.pi * v[c].item())
                            * math.exp(-(xi - m[c].item()) ** 2 / (2 * v[c].item())) for c in range(2)))
    assert loglik == pytest.approx(ref, rel=1e-10)
    assert float(w.sum()) == pytest.approx(1.0) and m[0] < m[1]
    fit = artefact_tokens(norms)
    c = math.log(fit.crossover)
    dens = [fit.weights[j] / fit.stds[j] * math.exp(-0.5 * ((c - fit.means[j]) / fit.stds[j]) ** 2) for j in range(2)]
    assert dens[0] == pytest.approx(dens[1], rel=1e-8)  # the weighted components cross there
    n = x.numel()
    var = x.var(correction=0).item()
    assert fit.bic1 == pytest.approx(n * (math.log(2 * math.pi * var) + 1) + 2 * math.log(n), rel=1e-10)
    assert fit.bic2 == pytest.approx(-2 * ref + 5 * math.log(n), rel=1e-10)


def test_artefact_overlap_by_hand():
    art = torch.tensor([False, True, True, False, False])
    dropped = torch.tensor([False, False, True, True, False])
    norms = torch.tensor([1.0, 5.0, 4.0, 2.0, 3.0])
    colvar = torch.tensor([0.5, 0.1, 0.2, 0.4, 0.3])  # the exact reverse order of the norms
    out = artefact_overlap(art, dropped, norms, colvar)
    assert out == {"artefact_share_in_D": 0.5, "D_share": 0.4, "spearman_norm_colvar": -1.0}
    assert artefact_overlap(torch.zeros(5, dtype=torch.bool), dropped, norms, colvar)["artefact_share_in_D"] is None


# ---------------------------------------------------------------- one forward on real models


def _block_norms(model, images) -> torch.Tensor:
    x = model.patch_embed(images)
    x = model.norm_pre(model.patch_drop(model._pos_embed(x)))
    out = []
    for blk in model.blocks:
        x = blk(x)
        out.append(x.norm(dim=-1))
    return torch.stack(out, 1)[..., model.num_prefix_tokens:]


def test_head_statistics_on_a_timm_vit_agree_with_capture(images, one_thread):
    model = tiny_vit()
    calls = []
    hook = model.patch_embed.register_forward_hook(lambda *_: calls.append(1))
    s = head_statistics(model, images, beta=0.25)
    hook.remove()
    assert len(calls) == 1  # one forward pass serves every statistic
    maps = pf.capture_attention(model, images)
    block = maps.patch_block().double()
    for b in range(images.shape[0]):
        for layer in range(2):
            for h in range(2):
                d_ref, e_ref = ref_head_stats(block[b, layer, h].numpy(), 4, 4, 8, 8)
                assert float(s.mean_distance[b, layer, h]) == pytest.approx(d_ref, rel=1e-5)
                assert float(s.entropy[b, layer, h]) == pytest.approx(e_ref, rel=1e-5)
    cls = maps.attn[:, :, :, 0, 1:].mean(2)  # [B, L, N]
    torch.testing.assert_close(s.cls_map, cls, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(s.cls_attention, cls.sum(-1), rtol=1e-5, atol=1e-7)
    with torch.no_grad():
        torch.testing.assert_close(s.norms, _block_norms(model, images), rtol=1e-5, atol=1e-5)
    ref = pf.analyze(model, images, 0.1, 0.25)
    assert torch.equal(s.dropped, ref.dropped)
    torch.testing.assert_close(s.column_variance, pf.column_variance(ref.U))
    assert s.patch_size == (8.0, 8.0) and s.num_prefix_tokens == 1 and s.artefact_block == 1
    rec = s.image_record(0)
    assert len(rec["mean_distance"]) == 2 and len(rec["mean_distance"][0]) == 2 and len(rec["norms"]) == 16
    assert rec["D_share"] == 0.25 and rec["dropped"] == torch.nonzero(ref.dropped[0]).flatten().tolist()
    assert rec["spearman_norm_colvar"] == pytest.approx(
        ref_spearman(s.norms[0, 1].tolist(), s.column_variance[0].tolist()), rel=1e-9)
    with pytest.raises(ValueError, match="out of range"):
        head_statistics(model, images, block=5)


def test_head_statistics_on_other_families(images, one_thread):
    hf = head_statistics(tiny_hf_vit(), images[:1])
    assert hf.mean_distance.shape == (1, 2, 2) and hf.norms.shape == (1, 2, 16) and hf.cls_attention is not None
    deit = head_statistics(tiny_deit(), images[:1])
    assert deit.num_prefix_tokens == 2 and deit.cls_attention.shape == (1, 2)
    gap = head_statistics(tiny_vit(class_token=False, global_pool="avg"), images[:1])
    assert gap.num_prefix_tokens == 0 and gap.cls_attention is None and gap.image_record(0)["cls_attention"] is None
    wide = head_statistics(tiny_vit(img_size=(32, 48), patch_size=(8, 16)), torch.randn(1, 3, 32, 48))
    assert wide.grid == pf.Grid(4, 3) and wide.patch_size == (8.0, 16.0)


# ---------------------------------------------------------------- the command, as a new user runs it


def test_stats_cli_end_to_end(tmp_path, one_thread):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    for name, seed in (("a", 0), ("b", 1)):
        torch.manual_seed(seed)
        m = timm.create_model("test_vit", img_size=64, num_classes=3).eval()
        save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(tmp_path / f"{name}.safetensors"))
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (70, 90, 3), dtype=np.uint8)).save(tmp_path / "one.png")
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "two.jpg")
    out = tmp_path / "out"
    args = ["stats", str(tmp_path / "one.png"), str(tmp_path / "two.jpg"), "--image-size", "64", "--out", str(out),
            "--model", "test_vit", "--weights", str(tmp_path / "a.safetensors"),
            "--model", "test_vit", "--weights", str(tmp_path / "b.safetensors")]
    assert main(args) == 0
    data = json.loads((out / "stats.json").read_text())
    assert [m["label"] for m in data["models"]] == ["test_vit", "test_vit_2"]
    first = data["models"][0]
    layers, heads = first["layers"], first["heads"]
    assert first["images"] == 2 and first["grid"] == [4, 4] and first["patch_size"] == [16.0, 16.0]
    assert np.shape(first["mean_distance"]) == (layers, heads) and np.shape(first["entropy"]) == (layers, heads)
    per = first["per_image"]
    assert [p["image"] for p in per] == [str(tmp_path / "one.png"), str(tmp_path / "two.jpg")]
    np.testing.assert_allclose(first["mean_distance"], np.mean([p["mean_distance"] for p in per], 0), atol=2e-6)
    assert all(0 <= e <= math.log(16) + 1e-6 for row in first["entropy"] for e in row)
    assert set(per[0]["artefacts"]) >= {"found", "reason", "tokens", "crossover"} and len(per[0]["norms"]) == 16
    pngs = [data["comparison"], *first["figures"].values(), *per[0]["figures"].values()]
    for png in pngs:
        with Image.open(png) as im:
            assert im.format == "PNG" and im.width > 300
    assert data["models"][0]["mean_distance"] != data["models"][1]["mean_distance"]  # two different models


def test_stats_cli_user_errors(tmp_path, capsys):
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    with pytest.raises(SystemExit) as e:
        main(["stats", str(tmp_path / "x.png"), "--weights", "w.safetensors", "--model", "test_vit", "--out", "o"])
    assert e.value.code == 2 and "follows the --model" in capsys.readouterr().err
    assert main(["stats", str(tmp_path / "x.png"), "--model", "test_vit", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no weights for test_vit" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["stats", str(tmp_path / "x.png"), "--model", "test_vit", "--random-weights", "--beta", "1",
                 "--out", str(tmp_path / "o")]) == 2
    assert "--beta" in capsys.readouterr().err
