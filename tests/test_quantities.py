"""docs/spec.md §2-§6 against hand-worked examples and a plain float64 reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import ref_dropped, ref_fields, ref_uncertainty, ref_windows

from patchfield import (
    Grid,
    Windows,
    adaptive_windows,
    decode_field,
    encode_field,
    indiscriminative_patches,
    interaction_uncertainty,
    responsive_field,
)
from patchfield.uncertainty import UncertaintyAccumulator

# ---------------------------------------------------------------- hand-worked, 2x3 grid, 2 layers, 2 heads


def hand_attention() -> torch.Tensor:
    """Head 0: identity in layer 0, uniform in layer 1. Head 1: uniform in both layers."""
    n = 6
    eye, uni = torch.eye(n, dtype=torch.float64), torch.full((n, n), 1 / 6, dtype=torch.float64)
    return torch.stack([torch.stack([eye, uni]), torch.stack([uni, uni])])  # [L=2, k=2, 6, 6]


def test_uncertainty_hand_worked():
    # 𝒰_0 = ((A0 - A1)/2)^2, 𝒰_1 = 0, so U = (𝒰_0 / 2)^2 = (A0 - A1)^4 / 64:
    # diagonal (5/6)^4 / 64, off-diagonal (1/6)^4 / 64.
    U = interaction_uncertainty(hand_attention())
    expected = torch.full((6, 6), (1 / 6) ** 4 / 64, dtype=torch.float64)
    expected.fill_diagonal_(((5 / 6) ** 4) / 64)
    torch.testing.assert_close(U, expected, rtol=1e-12, atol=0)


def test_windows_on_hand_uncertainty():
    U = interaction_uncertainty(hand_attention())
    assert int(adaptive_windows(U, 6 / 36, (2, 3)).interactions()) == 6  # diagonal only: identity windows
    w = adaptive_windows(U, 7 / 36, (2, 3))  # one of 30 tied off-diagonal entries: (0, 1) by index
    assert w.area().tolist() == [2, 1, 1, 1, 1, 1]
    assert int(adaptive_windows(U, 1.0, (2, 3)).interactions()) == 36


def hand_map() -> torch.Tensor:
    """U on a 2x3 grid (patches 0 1 2 / 3 4 5) with five non-zero entries."""
    U = torch.zeros(6, 6)
    U[0, 5], U[4, 3], U[2, 1], U[1, 1], U[3, 0] = 9.0, 8.0, 7.0, 6.0, 5.0
    return U


def test_windows_hand_worked():
    w = adaptive_windows(hand_map(), 4 / 36, Grid(2, 3))  # T = 4: the entries 9, 8, 7, 6
    assert w.left.tolist() == [0, 1, 1, 0, 0, 2]
    assert w.right.tolist() == [2, 1, 2, 0, 1, 2]
    assert w.top.tolist() == [0, 0, 0, 1, 1, 1]
    assert w.bottom.tolist() == [1, 0, 0, 1, 1, 1]
    assert w.area().tolist() == [6, 1, 2, 1, 2, 1]
    assert int(w.interactions()) == 13
    mask = w.mask()
    assert mask[0].all() and mask[2].tolist() == [False, True, True, False, False, False]


def test_dip_hand_worked():
    # column variances: 125/36, 341/36, 0, 320/36, 0, 405/36
    assert torch.nonzero(indiscriminative_patches(hand_map(), 0.34)).flatten().tolist() == [2, 4]
    assert torch.nonzero(indiscriminative_patches(hand_map(), 0.5)).flatten().tolist() == [0, 2, 4]
    assert not indiscriminative_patches(hand_map(), 0.0).any()


def test_field_hand_worked():
    w = adaptive_windows(hand_map(), 4 / 36, (2, 3))
    f = responsive_field(w, indiscriminative_patches(hand_map(), 0.34))  # D = {2, 4}
    assert f.size.tolist() == [4, 1, 2, 1, 2, 1]
    assert int(f.interactions()) == 11
    assert f.offset.tolist() == [[2, 1], [0, 0], [-1, 0], [0, 0], [-1, 0], [0, 0]]
    torch.testing.assert_close(f.tendency[0], torch.tensor([2, 1]) / math.sqrt(5))
    assert f.tendency[1].tolist() == [0.0, 0.0] and f.tendency[2].tolist() == [-1.0, 0.0]
    torch.testing.assert_close(f.magnitude, torch.tensor([math.sqrt(5), 0, 1, 0, 1, 0]))
    assert f.mask()[0].tolist() == [True, True, False, True, False, True]
    assert f.mask()[4].tolist() == [False, False, False, True, True, False]  # p in D keeps itself


def test_tendency_axis_directions():
    g = Grid(3, 3)
    z = torch.zeros(9, dtype=torch.long)
    # centre patch 4 (x=1, y=1) with a window reaching right only, then down only
    right = responsive_field(Windows(z + 1, z + 2, z + 1, z + 1, g))
    down = responsive_field(Windows(z + 1, z + 1, z + 1, z + 2, g))
    assert right.tendency[4].tolist() == [1.0, 0.0]
    assert down.tendency[4].tolist() == [0.0, 1.0]


# ---------------------------------------------------------------- the paper's full-attention E_O


@pytest.mark.parametrize(
    "image,patch,expected",
    [(224, 16, 38_416), (224, 32, 2_401), (384, 32, 20_736), (384, 16, 331_776), (448, 16, 614_656)],
)
def test_full_attention_interactions_match_paper(image, patch, expected):
    g = Grid(image // patch, image // patch)
    U = torch.rand(1, g.n, g.n)
    assert int(adaptive_windows(U, 1.0, g).interactions()) == expected
    f = responsive_field(adaptive_windows(U, 1.0, g))
    assert int(f.interactions()) == expected


def test_dip_scales_full_interactions_by_one_minus_beta():
    # docs/spec.md §4: with full windows, Σ|S_p| = N·(N − |D|) + |D|.
    g = Grid(14, 14)
    U = torch.rand(2, g.n, g.n)
    d = indiscriminative_patches(U, 0.2)
    f = responsive_field(adaptive_windows(U, 1.0, g), d)
    n_d = round(0.2 * 196)
    assert f.interactions().tolist() == [196 * (196 - n_d) + n_d] * 2


# ---------------------------------------------------------------- property tests against the float64 reference

grids = st.tuples(st.integers(1, 4), st.integers(1, 4))


@st.composite
def attention_cases(draw):
    gh, gw = draw(grids)
    L, k = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    prefix = draw(st.integers(0, 2))
    t = prefix + gh * gw
    logits = torch.randn(L, k, t, t, generator=g, dtype=torch.float64) * draw(st.sampled_from([0.5, 2.0, 6.0]))
    attn = logits.softmax(-1)[..., prefix:, prefix:]
    return gh, gw, attn


@settings(max_examples=40, deadline=None)
@given(attention_cases(), st.floats(0.01, 1.0), st.floats(0.0, 0.95))
def test_all_quantities_match_reference(case, alpha, beta):
    gh, gw, attn = case
    U = interaction_uncertainty(attn.float())
    U_ref = ref_uncertainty(attn.numpy())
    U64 = interaction_uncertainty(attn)
    np.testing.assert_allclose(U64.numpy(), U_ref, rtol=1e-9, atol=1e-18)
    if np.linalg.norm(U_ref) > 0:
        assert np.linalg.norm(U.double().numpy() - U_ref) / np.linalg.norm(U_ref) <= 1e-5
    # windows, D and fields on the float64 map, so ties are the same for both sides
    w = adaptive_windows(U64, alpha, (gh, gw))
    assert w.bounds().tolist() == [list(b) for b in ref_windows(U_ref, alpha, gh, gw)] or _tied(U_ref)
    d = indiscriminative_patches(U64, beta)
    f = responsive_field(w, d)
    ref_w = [tuple(b) for b in w.bounds().tolist()]  # compare fields on the same windows
    ref = ref_fields(ref_w, set(torch.nonzero(d).flatten().tolist()), gh, gw)
    assert f.size.tolist() == [r[1] for r in ref]
    assert f.offset.tolist() == [list(r[2]) for r in ref]
    assert int(f.interactions()) == sum(r[1] for r in ref)
    for p, (members, _, _) in enumerate(ref):
        assert set(torch.nonzero(f.mask()[p]).flatten().tolist()) == members


def _tied(U: np.ndarray) -> bool:
    """Float rounding may order near-equal entries differently from the reference."""
    flat = np.sort(U.ravel())
    return bool(np.any(np.isclose(np.diff(flat), 0, atol=1e-15)))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**16), grids, st.floats(0.0, 0.95))
def test_dip_matches_reference(seed, grid, beta):
    n = grid[0] * grid[1]
    U = torch.rand(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    got = set(torch.nonzero(indiscriminative_patches(U, beta)).flatten().tolist())
    assert got == ref_dropped(U.numpy(), beta)


def test_batched_equals_per_image():
    torch.manual_seed(0)
    attn = torch.rand(4, 3, 2, 12, 12).softmax(-1)
    U = interaction_uncertainty(attn)
    w = adaptive_windows(U, 0.1, (3, 4))
    d = indiscriminative_patches(U, 0.25)
    f = responsive_field(w, d)
    for b in range(4):
        ub = interaction_uncertainty(attn[b])
        torch.testing.assert_close(ub, U[b])
        wb = adaptive_windows(ub, 0.1, (3, 4))
        assert torch.equal(wb.bounds(), w.bounds()[b])
        assert torch.equal(responsive_field(wb, d[b]).size, f.size[b])


def test_streaming_accumulator_matches_two_pass_float64():
    torch.manual_seed(0)
    attn = torch.rand(2, 12, 3, 20, 20, dtype=torch.float64).softmax(-1)
    acc = UncertaintyAccumulator()
    for layer in range(12):
        acc.update(attn[:, layer].float())
    ref = interaction_uncertainty(attn)
    assert ((acc.result().double() - ref).norm() / ref.norm()) <= 1e-5


def test_renormalize_option():
    torch.manual_seed(0)
    attn = torch.rand(2, 2, 5, 5).softmax(-1) * 0.5
    U = interaction_uncertainty(attn, renormalize=True)
    torch.testing.assert_close(U, interaction_uncertainty(attn * 2))


# ---------------------------------------------------------------- encoding


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**16), grids, st.floats(0.01, 1.0), st.floats(0.0, 0.9))
def test_encoding_roundtrip_is_exact(seed, grid, alpha, beta):
    n = grid[0] * grid[1]
    U = torch.rand(3, n, n, generator=torch.Generator().manual_seed(seed))
    f = responsive_field(adaptive_windows(U, alpha, grid), indiscriminative_patches(U, beta))
    code = encode_field(f)
    assert code.nbytes() <= 3 * (4 * n + (n + 7) // 8)
    back = decode_field(code)
    assert torch.equal(back.mask(), f.mask())
    assert torch.equal(back.size, f.size) and torch.equal(back.dropped, f.dropped)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("alpha", [0.0, -0.1, 1.5, float("nan")])
def test_alpha_out_of_range(alpha):
    with pytest.raises(ValueError, match="alpha"):
        adaptive_windows(torch.rand(4, 4), alpha, (2, 2))


@pytest.mark.parametrize("beta", [1.0, -0.1, float("nan")])
def test_beta_out_of_range(beta):
    with pytest.raises(ValueError, match="beta"):
        indiscriminative_patches(torch.rand(4, 4), beta)


def test_grid_mismatch():
    with pytest.raises(ValueError, match="grid 2x3"):
        adaptive_windows(torch.rand(4, 4), 0.1, (2, 3))


def test_nan_and_non_distributions_rejected():
    a = torch.rand(2, 2, 4, 4).softmax(-1)
    bad = a.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        interaction_uncertainty(bad)
    with pytest.raises(ValueError, match="probability"):
        interaction_uncertainty(a * 3)
    with pytest.raises(ValueError, match="shape"):
        interaction_uncertainty(torch.rand(4, 4))
    with pytest.raises(ValueError, match="NaN"):
        adaptive_windows(torch.full((4, 4), float("inf")), 0.5, (2, 2))


def _near_uniform_attention(layers: int, dtype: torch.dtype) -> torch.Tensor:
    """[B, L, k, N, N] rows near 1/N that change little from layer to layer (docs/spec.md §2's hard case)."""
    g = torch.Generator().manual_seed(0)
    base = 0.05 * torch.randn(2, 1, 4, 64, 64, generator=g, dtype=torch.float64)
    drift = 0.002 * torch.randn(2, layers, 4, 64, 64, generator=g, dtype=torch.float64)
    return (base + drift).softmax(-1).to(dtype)


@pytest.mark.parametrize("layers", [12, 24])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_streaming_uncertainty_meets_spec_bound_on_near_uniform_attention(layers, dtype):
    attn = _near_uniform_attention(layers, dtype)
    ref = interaction_uncertainty(attn.double(), validate=False)  # the same rounded inputs, float64
    acc = UncertaintyAccumulator()
    for layer in range(layers):
        acc.update(attn[:, layer])
    U = acc.result()
    assert U.dtype == torch.float32
    assert float((U.double() - ref).norm() / ref.norm()) <= 1e-5
    assert acc.layer_variance().dtype == acc.mean.dtype == torch.float32
    torch.testing.assert_close(acc.mean.double(), attn.double().mean(1), atol=1e-7, rtol=1e-6)
    direct = interaction_uncertainty(attn.float(), validate=False)
    assert float((direct.double() - ref).norm() / ref.norm()) <= 1e-5


def test_streaming_uncertainty_keeps_float64():
    attn = _near_uniform_attention(3, torch.float64)
    acc = UncertaintyAccumulator()
    for layer in range(3):
        acc.update(attn[:, layer])
    assert acc.result().dtype == torch.float64
    torch.testing.assert_close(acc.result(), interaction_uncertainty(attn), atol=0, rtol=1e-10)
