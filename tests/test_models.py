"""AWD-ViT, AWD+DIP and WinfT as in-place patches of timm ViTs (docs/spec.md §4, §7, §8)."""

from __future__ import annotations

import copy
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from conftest import tiny_deit, tiny_vit

import patchfield as pf
import patchfield.models as pm
from patchfield.models import winft as winft_module

MODELS = {
    "vit": (lambda: tiny_vit(), 1, (32, 32)),
    "deit_distilled": (tiny_deit, 2, (32, 32)),
    "registers_no_cls": (
        lambda: tiny_vit(reg_tokens=3, class_token=False, global_pool="avg", no_embed_class=True), 3, (32, 32)
    ),
    "non_square": (lambda: tiny_vit(img_size=(24, 48)), 1, (24, 48)),
}


def _images(b: int, size=(32, 32), seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, *size, generator=g)


def _random_fields(b: int, grid: tuple[int, int], alpha: float, beta: float | None = None, seed: int = 0):
    """Windows (and D) from random uncertainty maps: a different field for every image."""
    g = torch.Generator().manual_seed(seed)
    n = grid[0] * grid[1]
    U = torch.rand(b, n, n, generator=g, dtype=torch.float64)
    windows = pf.adaptive_windows(U, alpha, grid)
    dropped = pf.indiscriminative_patches(U, beta) if beta else None
    return windows, dropped


def _first_block_output(model, x, **kwargs) -> torch.Tensor:
    out = {}
    handle = model.blocks[0].register_forward_hook(lambda _m, _i, o: out.setdefault("x", o))
    try:
        with torch.no_grad():
            model(x, **kwargs)
    finally:
        handle.remove()
    return out["x"]


# ---------------------------------------------------------------- equivalence with the plain ViT


@pytest.mark.parametrize("name", list(MODELS))
def test_awd_with_full_windows_equals_plain_vit(name):
    build, prefix, size = MODELS[name]
    plain = build()
    x = _images(3, size)
    with torch.no_grad():
        ref = plain(x)
    model = pm.apply_awd(copy.deepcopy(plain))
    grid = tuple(model.patch_embed.grid_size)
    windows, _ = _random_fields(3, grid, alpha=1.0)  # alpha = 1: every window is the whole grid
    assert int(windows.interactions().min()) == (grid[0] * grid[1]) ** 2
    with torch.no_grad():
        torch.testing.assert_close(model(x, field_mask=windows.mask()), ref, atol=1e-5, rtol=0)
        torch.testing.assert_close(model(x), ref, atol=1e-5, rtol=0)  # field_mask=None: global attention
    assert model.num_prefix_tokens == prefix


@pytest.mark.parametrize("mode", ["paper", "restrict"])
@pytest.mark.parametrize("name", ["vit", "deit_distilled", "registers_no_cls"])
def test_winft_with_all_ones_window_equals_plain_vit(name, mode, monkeypatch):
    build, _, size = MODELS[name]
    plain = build()
    x = _images(3, size)
    with torch.no_grad():
        ref = plain(x)
    model = pm.apply_winft(copy.deepcopy(plain), mode)
    calls = []

    def ones(s, p):
        calls.append(p)
        return torch.ones(s.shape[0], s.shape[1] - p, s.shape[2] - p, dtype=torch.bool)

    monkeypatch.setattr(winft_module, "window_mask", ones)
    with torch.no_grad():
        out, counts = model(x, return_interactions=True)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    assert len(calls) == len(model.blocks)
    n = math.prod(model.patch_embed.grid_size)
    torch.testing.assert_close(counts, torch.full((3,), float(n * n)))


def test_remove_patch_and_repatching():
    plain = tiny_vit()
    x = _images(2)
    ref = plain(x)
    keys = set(plain.state_dict())
    model = pm.apply_winft(plain, "restrict")
    assert model is plain and pm.patched_kind(model) == "winft" and set(model.state_dict()) == keys
    pm.apply_awd(model)  # switching kind restores first
    assert pm.patched_kind(model) == "awd"
    assert type(model.blocks[0].attn) is timm.layers.Attention
    pm.apply_winft(model)
    pm.apply_winft(model, "paper")  # re-patching is allowed
    twin = copy.deepcopy(model)  # e.g. an EMA copy: same outputs, no state shared with the original
    assert pm.patched_kind(twin) == "winft" and twin.blocks[0].attn is not model.blocks[0].attn
    torch.testing.assert_close(twin(x), model(x))
    # the model, each block (its forward returns the windows) and each block's attention
    assert sum(pm.patched_kind(m) == "winft" for m in model.modules()) == 1 + 2 * len(model.blocks)
    pm.remove_patch(model)
    assert type(model) is timm.models.vision_transformer.VisionTransformer
    assert type(model.blocks[0]) is timm.models.vision_transformer.Block
    assert type(model.blocks[0].attn) is timm.layers.Attention
    assert not hasattr(model, "winft_mode") and not hasattr(model.blocks[0].attn, "winft_mode")
    torch.testing.assert_close(model(x), ref)
    assert pm.patched_kind(model) is None


# ---------------------------------------------------------------- AWD: locality, DIP, masks


def test_awd_locality_changing_a_patch_outside_the_window_changes_nothing():
    model = pm.apply_awd(tiny_vit())
    b, p_len, gw, ps = 3, 1, 4, 8
    windows, _ = _random_fields(b, (4, 4), alpha=0.03, seed=3)
    mask = windows.mask()
    x = _images(b)
    base = _first_block_output(model, x, field_mask=mask)
    checked_out = checked_in = 0
    for img in range(b):
        for j in range(16):  # perturb the pixels of patch j in image img only
            x2 = x.clone()
            y0, x0 = (j // gw) * ps, (j % gw) * ps
            x2[img, :, y0 : y0 + ps, x0 : x0 + ps] += 3.0 * torch.randn(3, ps, ps)
            out = _first_block_output(model, x2, field_mask=mask)
            others = [i for i in range(b) if i != img]
            torch.testing.assert_close(out[others], base[others], atol=0, rtol=0)  # other images untouched
            for p in range(16):
                diff = (out[img, p_len + p] - base[img, p_len + p]).abs().max()
                if not mask[img, p, j]:
                    assert diff <= 1e-6, (img, p, j, float(diff))
                    checked_out += 1
                elif p != j:
                    checked_in += diff > 1e-4
    assert checked_out > 50 and checked_in > 10  # both cases occurred, and inside the window it matters


def test_awd_dip_zeroes_dropped_tokens_and_hides_them_as_keys():
    model = pm.apply_awd(tiny_vit())
    windows, dropped = _random_fields(2, (4, 4), alpha=0.2, beta=0.25, seed=5)
    field = pf.responsive_field(windows, dropped)
    x = _images(2)
    base = _first_block_output(model, x, field_mask=field.mask(), dropped=dropped)
    img, j = 1, int(dropped[1].nonzero()[0])
    x2 = x.clone()
    x2[img, :, (j // 4) * 8 : (j // 4) * 8 + 8, (j % 4) * 8 : (j % 4) * 8 + 8] = 10.0
    out = _first_block_output(model, x2, field_mask=field.mask(), dropped=dropped)
    # token j is multiplied by 0 at the block input, so nothing, j's own output included, sees its pixels
    torch.testing.assert_close(out, base, atol=1e-6, rtol=0)
    # and its zeroed token is no key: without D the same change reaches the class token
    out_nodip = _first_block_output(model, x2, field_mask=field.mask())
    base_nodip = _first_block_output(model, x, field_mask=field.mask())
    assert (out_nodip[img, 0] - base_nodip[img, 0]).abs().max() > 1e-4


def test_awd_mask_against_loops():
    windows, dropped = _random_fields(2, (3, 4), alpha=0.05, beta=0.3, seed=2)
    fm = pf.responsive_field(windows, dropped).mask()
    P, n = 2, 12
    mask = pm.awd_attention_mask(fm, dropped, P)
    assert mask.shape == (2, 1, P + n, P + n) and mask.dtype == torch.bool
    for b in range(2):
        for q in range(P + n):
            for k in range(P + n):
                if q < P:
                    want = k < P or not dropped[b, k - P]
                elif k < P:
                    want = True
                else:
                    want = k == q or (bool(fm[b, q - P, k - P]) and not dropped[b, k - P])
                assert bool(mask[b, 0, q, k]) == want, (b, q, k)


def test_capture_of_awd_model_shows_zero_attention_outside_windows():
    model = pm.apply_awd(tiny_vit())
    windows, dropped = _random_fields(3, (4, 4), alpha=0.05, beta=0.2, seed=7)
    fm = pf.responsive_field(windows, dropped).mask()
    x = _images(3)
    store = {}
    with pf.attention_hooks(model, lambda layer, a: store.__setitem__(layer, a.detach())):
        with torch.no_grad():
            logits = model(x, field_mask=fm, dropped=dropped)
    assert sorted(store) == [0, 1]
    with torch.no_grad():  # the explicit path used for capture gives the fused path's result
        torch.testing.assert_close(logits, model(x, field_mask=fm, dropped=dropped), atol=1e-5, rtol=0)
    allowed = pm.awd_attention_mask(fm, dropped, 1)[:, 0]  # [B, T, T]
    for attn in store.values():
        assert (attn.masked_select(~allowed[:, None].expand_as(attn)) == 0).all()
        assert (attn[..., 1:, 1:].masked_select(fm[:, None].expand(-1, 2, -1, -1)) > 0).any()
        torch.testing.assert_close(attn.sum(-1), torch.ones(attn.shape[:-1]))
    # the library's capture, given the field, reads the same masked attention: zero outside the windows
    maps = pf.capture_attention(model, x, forward_kwargs={"field_mask": fm, "dropped": dropped})
    torch.testing.assert_close(maps.attn, torch.stack([store[0], store[1]], dim=1))
    assert (maps.patch_block().masked_select(~fm[:, None, None].expand_as(maps.patch_block())) == 0).all()
    stream = pf.capture_uncertainty(model, x, forward_kwargs={"field_mask": fm, "dropped": dropped})
    assert (stream.mean_attention.masked_select(~fm[:, None].expand_as(stream.mean_attention)) == 0).all()
    # without a field capture refuses (it would see a forward the model never runs) ...
    with pytest.raises(ValueError, match="field_mask"):
        pf.capture_attention(model, x)
    with pytest.raises(ValueError, match="forward_kwargs"):
        pf.analyze(model, x)
    # ... and with field_mask=None it sees exactly the plain model's global attention
    plain = tiny_vit()
    torch.testing.assert_close(
        pf.capture_attention(model, x, forward_kwargs={"field_mask": None}).attn, pf.capture_attention(plain, x).attn
    )
    res = pf.analyze(model, x, alpha=0.1, forward_kwargs={"field_mask": fm, "dropped": dropped})
    assert res.U.shape == (3, 16, 16)


def test_awd_bad_inputs_raise_clear_errors():
    model = pm.apply_awd(tiny_vit())
    x = _images(2)
    with pytest.raises(ValueError, match="shape"):
        model(x, field_mask=torch.ones(2, 9, 9, dtype=torch.bool))
    with pytest.raises(ValueError, match="boolean"):
        model(x, field_mask=torch.ones(2, 16, 16))
    with pytest.raises(ValueError, match="batch size"):
        model(x, field_mask=torch.ones(3, 16, 16, dtype=torch.bool))
    with pytest.raises(ValueError, match="dropped"):
        model(x, dropped=torch.zeros(2, 15, dtype=torch.bool))
    with pytest.raises(TypeError, match="VisionTransformer"):
        pm.apply_awd(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="mode"):
        pm.apply_winft(tiny_vit(), mode="soft")


def test_awd_grad_checkpointing_matches():
    torch.manual_seed(0)
    model = pm.apply_awd(tiny_vit()).train()
    windows, dropped = _random_fields(2, (4, 4), alpha=0.1, beta=0.2)
    x = _images(2)
    out = model(x, field_mask=windows.mask(), dropped=dropped).square().sum()
    out.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_grad_checkpointing(True)
    out2 = model(x, field_mask=windows.mask(), dropped=dropped).square().sum()
    out2.backward()
    torch.testing.assert_close(out2, out)
    for g, p in zip(grads, model.parameters()):
        torch.testing.assert_close(p.grad, g)


# ---------------------------------------------------------------- WinfT: formula, locality, loss


def _ref_winft_layer(x: np.ndarray, attn: torch.nn.Module, P: int, mode: str):
    """Float64 loops for one image: attention [h, T, T], ones of W on the patch block, s, full mask [T, T]."""
    W_qkv = attn.qkv.weight.detach().double().numpy()
    b_qkv = attn.qkv.bias.detach().double().numpy()
    h, d = attn.num_heads, attn.head_dim
    T, C = x.shape
    qkv = x @ W_qkv.T + b_qkv
    q = [qkv[:, i * d : (i + 1) * d] for i in range(h)]
    k = [qkv[:, C + i * d : C + (i + 1) * d] for i in range(h)]
    dot = np.zeros((h, T, T))
    for head in range(h):
        for i in range(T):
            for j in range(T):
                dot[head, i, j] = sum(q[head][i, c] * k[head][j, c] for c in range(d))
    s = dot.mean(0)
    keep = np.ones((T, T), dtype=bool)
    for i in range(T):
        w = [1 / (1 + math.exp(-s[i, j])) for j in range(T)]
        thr = sum(w) / T
        for j in range(T):
            if i >= P and j >= P:
                keep[i, j] = w[j] > thr or (mode == "restrict" and i == j)
    A = np.zeros((h, T, T))
    for head in range(h):
        for i in range(T):
            logits = []
            for j in range(T):
                z = dot[head, i, j] / math.sqrt(d)
                logits.append(z if keep[i, j] else (0.0 if mode == "paper" else -math.inf))
            m = max(logits)
            e = [math.exp(z - m) for z in logits]
            A[head, i] = [v / sum(e) for v in e]
    return A, int(keep[P:, P:].sum()), s[P:, P:], keep


@pytest.mark.parametrize("mode", ["paper", "restrict"])
def test_winft_attention_matches_float64_reference(mode):
    model = pm.apply_winft(tiny_deit(), mode)  # two prefix tokens
    P = 2
    x = _images(2)
    inputs, attns = {}, {}
    handles = [
        blk.attn.register_forward_pre_hook(lambda m, a, i=i: inputs.__setitem__(i, a[0].detach()))
        for i, blk in enumerate(model.blocks)
    ]
    try:
        with pf.attention_hooks(model, lambda layer, a: attns.__setitem__(layer, a.detach())):
            with torch.no_grad():
                logits, window_logits, windows = model(x, return_window_logits=True, return_windows=True)
    finally:
        for hd in handles:
            hd.remove()
    counts = np.zeros(2)
    for layer, blk in enumerate(model.blocks):
        for img in range(2):
            A, ones, s, keep = _ref_winft_layer(inputs[layer][img].double().numpy(), blk.attn, P, mode)
            np.testing.assert_allclose(attns[layer][img].numpy(), A, atol=2e-6)
            np.testing.assert_array_equal(windows[img, layer].numpy(), keep[P:, P:])
            np.testing.assert_allclose(window_logits[img, layer].numpy(), s, atol=1e-5, rtol=1e-5)
            counts[img] += ones / len(model.blocks)
    with torch.no_grad():
        _, interactions = model(x, return_interactions=True)
    np.testing.assert_allclose(interactions.numpy(), counts)
    assert windows.dtype == torch.bool and windows.shape == (2, 2, 16, 16)
    torch.testing.assert_close(interactions, windows.sum((-2, -1)).float().mean(1))
    with torch.no_grad():  # fused path (restrict: SDPA with the window mask) gives the same logits
        torch.testing.assert_close(model(x), logits, atol=1e-5, rtol=0)
    maps = pf.capture_attention(model, x)  # the library's capture reads the patched attention
    assert maps.num_prefix_tokens == P
    torch.testing.assert_close(maps.attn, torch.stack([attns[0], attns[1]], dim=1))
    torch.testing.assert_close(maps.logits, logits, atol=1e-5, rtol=0)


def test_winft_restrict_locality_and_paper_mode_leak():
    """Restrict mode: p's output does not depend on tokens where W = 0. Paper mode: it does."""
    x = _images(2)
    for mode in ("restrict", "paper"):
        model = pm.apply_winft(tiny_vit(), mode)
        blk = model.blocks[0]
        with torch.no_grad():
            tokens = model.norm_pre(model._pos_embed(model.patch_embed(x)))
        tokens.requires_grad_(True)
        out = blk(tokens)
        leak = 0.0
        for img in range(2):
            keep = _ref_winft_layer(blk.norm1(tokens[img]).detach().double().numpy(), blk.attn, 1, mode)[3]
            W = torch.from_numpy(keep[1:, 1:])
            assert 0 < int(W.sum()) < 256
            for p in range(0, 16, 3):
                (g,) = torch.autograd.grad(out[img, 1 + p].sum(), tokens, retain_graph=True)
                assert (g[1 - img] == 0).all()
                dep = g[img, 1:].abs().amax(-1)  # how much p's output moves with each patch token
                if mode == "restrict":
                    assert (dep[~W[p]] == 0).all(), (img, p)
                    assert (dep[W[p]] > 0).all(), (img, p)
                elif (~W[p]).any():
                    leak = max(leak, float(dep[~W[p]].max()))
        if mode == "paper":
            assert leak > 1e-4  # masked logits are 0, not -inf: masked patches still inform p
    # the same by perturbation: move a W = 0 token a little (W unchanged), p's output stays put
    model = pm.apply_winft(tiny_vit(), "restrict")
    blk = model.blocks[0]
    with torch.no_grad():
        tokens = model.norm_pre(model._pos_embed(model.patch_embed(x)))
        keep = _ref_winft_layer(blk.norm1(tokens[0]).double().numpy(), blk.attn, 1, "restrict")[3][1:, 1:]
        p = 5
        j = int(np.flatnonzero(~keep[p])[0])
        t2 = tokens.clone()
        t2[0, 1 + j] += 1e-3 * torch.randn(t2.shape[-1], generator=torch.Generator().manual_seed(0))
        keep2 = _ref_winft_layer(blk.norm1(t2[0]).double().numpy(), blk.attn, 1, "restrict")[3][1:, 1:]
        out, out2 = blk(tokens), blk(t2)
    assert (keep == keep2).all()
    torch.testing.assert_close(out2[0, 1 + p], out[0, 1 + p], atol=1e-6, rtol=0)
    assert (out2[0, 1 + j] - out[0, 1 + j]).abs().max() > 1e-5
    torch.testing.assert_close(out2[1], out[1], atol=0, rtol=0)


def _ref_bce(s: np.ndarray, t: np.ndarray) -> float:
    B, L, N, _ = s.shape
    total = 0.0
    for b in range(B):
        for layer in range(L):
            for i in range(N):
                for j in range(N):
                    z, y = float(s[b, layer, i, j]), float(t[b, i, j])
                    sig = 1 / (1 + math.exp(-z))
                    total -= y * math.log(sig) + (1 - y) * math.log(1 - sig)
    return total / (B * L * N * N)


def test_window_bce_loss_matches_float64_loops():
    g = torch.Generator().manual_seed(0)
    s = 3 * torch.randn(2, 3, 5, 5, generator=g)
    t = torch.rand(2, 5, 5, generator=g) > 0.6
    loss = pm.window_bce_loss(s, t)
    assert loss.dtype == torch.float32
    assert abs(float(loss) - _ref_bce(s.double().numpy(), t.numpy())) < 1e-6
    assert abs(float(pm.window_bce_loss(s.double(), t)) - _ref_bce(s.double().numpy(), t.numpy())) < 1e-12
    # bf16 logits are promoted; [N, N] target broadcasts to every image
    ref_low = _ref_bce(s.bfloat16().double().numpy(), t[[0, 0]].numpy())
    assert abs(float(pm.window_bce_loss(s.bfloat16(), t[0])) - ref_low) < 1e-5
    with pytest.raises(ValueError, match="target"):
        pm.window_bce_loss(s, t[:, :4])
    with pytest.raises(ValueError, match="window_logits"):
        pm.window_bce_loss(s[0], t)


@pytest.mark.parametrize("mode", ["paper", "restrict"])
def test_bce_gradients_reach_query_and_key_weights_of_every_layer(mode):
    model = pm.apply_winft(tiny_vit(depth=3), mode).train()
    x = _images(2)
    windows, dropped = _random_fields(2, (4, 4), alpha=0.1, beta=0.2)
    logits, s = model(x, return_window_logits=True)
    assert s.shape == (2, 3, 16, 16) and s.dtype == torch.float32
    pm.window_bce_loss(s, pf.responsive_field(windows, dropped).mask()).backward()
    C = model.embed_dim
    for i, blk in enumerate(model.blocks):
        g = blk.attn.qkv.weight.grad
        assert g[:C].abs().sum() > 0 and g[C : 2 * C].abs().sum() > 0, f"layer {i}: no gradient to q or k"
    # the last layer's values do not enter its own s
    assert (model.blocks[-1].attn.qkv.weight.grad[2 * C :] == 0).all()


# ---------------------------------------------------------------- train/eval, autocast, compile, batches


@pytest.mark.parametrize("kind", ["awd", "winft_paper", "winft_restrict"])
def test_autocast_bf16_and_train_mode(kind):
    plain = tiny_vit(attn_drop_rate=0.1)
    model = pm.apply_awd(plain) if kind == "awd" else pm.apply_winft(plain, kind.split("_")[1])
    windows, dropped = _random_fields(3, (4, 4), alpha=0.1, beta=0.2)
    kwargs = {"field_mask": windows.mask(), "dropped": dropped} if kind == "awd" else {}
    x = _images(3)
    with torch.no_grad():
        ref = model(x, **kwargs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x, **kwargs)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), ref, atol=0.05, rtol=0.05)
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        if kind == "awd":
            loss = model(x, **kwargs).float().logsumexp(-1).mean()
        else:
            out, s = model(x, return_window_logits=True)
            loss = out.float().logsumexp(-1).mean() + pm.window_bce_loss(s, windows.mask())
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.blocks.parameters())


@pytest.mark.parametrize("kind", ["awd", "winft"])
def test_torch_compile_traces_the_patched_forward(kind):
    """Dynamo with the ``aot_eager`` backend (the inductor backend works too but compiles for ~1 min on CPU)."""
    model = tiny_vit()
    model = pm.apply_awd(model) if kind == "awd" else pm.apply_winft(model, "restrict")
    windows, dropped = _random_fields(2, (4, 4), alpha=0.1, beta=0.2)
    x = _images(2)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    if kind == "awd":
        kwargs = {"field_mask": windows.mask(), "dropped": dropped}
        torch.testing.assert_close(compiled(x, **kwargs), model(x, **kwargs))
    else:
        out, s, counts = compiled(x, return_window_logits=True, return_interactions=True)
        ref, s_ref, counts_ref = model(x, return_window_logits=True, return_interactions=True)
        torch.testing.assert_close(out, ref)
        torch.testing.assert_close(s, s_ref)
        torch.testing.assert_close(counts, counts_ref)


def test_batches_mixing_windows_equal_one_image_at_a_time():
    model = pm.apply_awd(tiny_vit())
    windows, dropped = _random_fields(4, (4, 4), alpha=0.05, beta=0.2, seed=11)
    fm = pf.responsive_field(windows, dropped).mask()
    x = _images(4)
    with torch.no_grad():
        batched = model(x, field_mask=fm, dropped=dropped)
        single = torch.cat(
            [model(x[i : i + 1], field_mask=fm[i : i + 1], dropped=dropped[i : i + 1]) for i in range(4)]
        )
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)
    winft = pm.apply_winft(tiny_vit())
    with torch.no_grad():
        batched, counts = winft(x, return_interactions=True)
        single = torch.cat([winft(x[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)
    assert counts.shape == (4,)


# ---------------------------------------------------------------- timm names and checkpoints


def test_plain_checkpoint_loads_into_every_registered_name(tmp_path):
    tiny = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=5)
    plain = timm.create_model("vit_base_patch16_224", **tiny)
    sd = plain.state_dict()
    path = tmp_path / "vit.pth"
    torch.save(sd, path)
    x = _images(2)
    with torch.no_grad():
        ref = plain.eval()(x)
    assert len(pm.AWD_NAMES) >= 5 and len(pm.WINFT_NAMES) >= 6
    paper_names = ("awd_vit_base_patch16_224", "winft_base_patch16_224", "winft_base_patch16_384",
                   "winft_base_patch32_224", "winft_base_patch32_384", "winft_tiny_patch16_224")
    for name in paper_names:
        assert name in pm.REGISTERED_NAMES and name in timm.list_models("*")
    for name in pm.REGISTERED_NAMES:
        model = timm.create_model(name, checkpoint_path=str(path), **tiny)  # timm loads strictly
        result = model.load_state_dict(sd, strict=False)
        assert not result.missing_keys and not result.unexpected_keys, name
        assert pm.patched_kind(model) == ("awd" if name.startswith("awd") else "winft")
        assert all(torch.equal(v, sd[k]) for k, v in model.state_dict().items())
        if name.startswith("awd"):
            with torch.no_grad():
                torch.testing.assert_close(model.eval()(x), ref)
    model = timm.create_model("winft_base_patch16_224", checkpoint_path=str(path), winft_mode="restrict", **tiny)
    assert model.winft_mode == "restrict"


def test_registered_name_loads_local_file_through_pretrained_cfg(tmp_path):
    from safetensors.torch import save_file

    plain = timm.create_model("vit_base_patch16_224", img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
    path = tmp_path / "vit.safetensors"
    save_file(plain.state_dict(), str(path))
    model = timm.create_model(
        "winft_base_patch16_384", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
        img_size=48, patch_size=8, embed_dim=32, depth=2, num_heads=2,
    )
    assert model.pos_embed.shape == (1, 1 + 36, 32)  # resampled from the 4x4 grid to 6x6
    torch.testing.assert_close(model.blocks[1].attn.qkv.weight, plain.blocks[1].attn.qkv.weight)
    with pytest.raises(ValueError, match="never downloads"):
        timm.create_model("awd_vit_tiny_patch16_224", pretrained=True, depth=1)
    with pytest.raises(ValueError, match="winft_mode"):
        timm.create_model("awd_vit_tiny_patch16_224", winft_mode="paper", depth=1)


# ---------------------------------------------------------------- benchmark smoke test


def test_benchmark_runs_on_a_tiny_config():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "models.py"
    spec = importlib.util.spec_from_file_location("bench_models", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    r = bench.bench("vit_tiny_patch16_224", dict(img_size=32, patch_size=8, depth=1, embed_dim=32, num_heads=2), 2, 1)
    for key in ("infer_awd_over_vit", "infer_winft_paper_over_vit", "train_winft_paper_over_vit"):
        assert key not in r  # ratios are added by _ratios
    ratios = bench._ratios(r)
    assert {"infer_awd_over_vit", "infer_winft_paper_over_vit", "train_winft_paper_over_vit"} <= set(ratios)
    assert 0 < r["removed_awd"] < 1 and r["removed_awd_dip"] >= r["removed_awd"]


# ---------------------------------------------------------------- no side channels: pickle, features, checkpointing


def _patched(kind: str):
    model = tiny_vit(depth=3)
    return pm.apply_awd(model) if kind == "awd" else pm.apply_winft(model, kind.split("_")[1])


@pytest.mark.parametrize("kind", ["awd", "winft_paper", "winft_restrict"])
def test_torch_save_whole_patched_model_round_trips(kind, tmp_path):
    import subprocess
    import sys

    model = _patched(kind)
    x = _images(2)
    windows, dropped = _random_fields(2, (4, 4), alpha=0.1, beta=0.2)
    kwargs = {"field_mask": pf.responsive_field(windows, dropped).mask(), "dropped": dropped} if kind == "awd" else {}
    with torch.no_grad():
        ref = model(x, **kwargs)
    path = tmp_path / "model.pt"
    torch.save(model, path)
    loaded = torch.load(path, weights_only=False)
    assert type(loaded) is type(model) and pm.patched_kind(loaded) == pm.patched_kind(model)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, **kwargs), ref, atol=0, rtol=0)
    torch.save({"x": x, "kwargs": kwargs, "ref": ref}, tmp_path / "io.pt")
    # a fresh process that never patched a model of this kind
    code = (
        "import torch, sys; import patchfield.models as pm; "
        f"m = torch.load(r'{path}', weights_only=False); d = torch.load(r'{tmp_path / 'io.pt'}'); "
        "out = m(d['x'], **d['kwargs']); torch.testing.assert_close(out, d['ref']); print(pm.patched_kind(m))"
    )
    src = str(Path(__file__).resolve().parents[1] / "src")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": src, "OMP_NUM_THREADS": "1", "PATH": ""})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == kind.split("_")[0]


def test_awd_forward_intermediates_applies_the_field():
    model = _patched("awd")
    x = _images(2)
    windows, dropped = _random_fields(2, (4, 4), alpha=0.05, beta=0.25, seed=5)
    fm = pf.responsive_field(windows, dropped).mask()
    with torch.no_grad():
        for kwargs in ({"field_mask": fm, "dropped": dropped}, {"field_mask": windows.mask()}, {"field_mask": None}):
            feats = model.forward_features(x, **kwargs)
            final, inter = model.forward_intermediates(x, indices=[2], output_fmt="NLC", **kwargs)
            torch.testing.assert_close(final, feats, atol=1e-5, rtol=0)
            last = model.norm(inter[0])
            torch.testing.assert_close(last, feats[:, 1:], atol=1e-5, rtol=0)
        glob = model.forward_features(x, field_mask=None)
        assert (glob - model.forward_features(x, field_mask=fm, dropped=dropped)).abs().max() > 1e-3
    with pytest.raises(ValueError, match="field_mask"):
        model.forward_intermediates(x)
    with pytest.raises(ValueError, match="attn_mask"):
        model.forward_intermediates(x, field_mask=None, attn_mask=torch.ones(1, 1, 17, 17, dtype=torch.bool))
    assert all(not blk._forward_pre_hooks for blk in model.blocks)


@pytest.mark.parametrize("mode", ["paper", "restrict"])
def test_winft_forward_intermediates_and_grad_checkpointing_run_winft(mode):
    model = _patched(f"winft_{mode}")
    plain = tiny_vit(depth=3)
    x = _images(2)
    with torch.no_grad():
        feats = model.forward_features(x)
        final, inter = model.forward_intermediates(x, indices=[0, 2], output_fmt="NLC")
        plain_final = plain.forward_intermediates(x, indices=[2], output_fmt="NLC")[0]
    torch.testing.assert_close(final, feats, atol=1e-5, rtol=0)
    torch.testing.assert_close(model.norm(inter[1]), feats[:, 1:], atol=1e-5, rtol=0)
    assert (final - plain_final).abs().max() > 1e-4  # not the unpatched ViT (rounding is ~1e-6)
    # gradient checkpointing: same loss and gradients, attention recomputed in the backward
    model.train()
    windows, dropped = _random_fields(2, (4, 4), alpha=0.1, beta=0.2)
    target = pf.responsive_field(windows, dropped).mask()

    def step():
        model.zero_grad()
        out, s, counts = model(x, return_window_logits=True, return_interactions=True)
        loss = out.square().mean() + pm.window_bce_loss(s, target)
        loss.backward()
        return loss.detach(), counts, [p.grad.clone() for p in model.parameters()]

    loss, counts, grads = step()
    calls = []
    handles = [blk.attn.register_forward_pre_hook(lambda *_: calls.append(1)) for blk in model.blocks]
    model.set_grad_checkpointing(True)
    loss2, counts2, grads2 = step()
    for h in handles:
        h.remove()
    assert len(calls) == 2 * len(model.blocks)  # forward + recomputation
    torch.testing.assert_close(loss2, loss)
    torch.testing.assert_close(counts2, counts)
    for g, g2 in zip(grads, grads2):
        torch.testing.assert_close(g2, g)


def test_two_winft_models_and_data_parallel_keep_their_own_outputs():
    a, b = _patched("winft_restrict"), pm.apply_winft(tiny_vit(depth=3, embed_dim=48, num_heads=3), "restrict")
    x = _images(2)
    with torch.no_grad():
        ra = a(x, return_windows=True, return_interactions=True)
        rb = b(x, return_windows=True, return_interactions=True)
        ra2 = a(x, return_windows=True, return_interactions=True)  # after b ran: unchanged
        dp = torch.nn.DataParallel(a)(x, return_windows=True, return_interactions=True)
    for one, two, three in zip(ra, ra2, dp):
        torch.testing.assert_close(one, two)
        torch.testing.assert_close(one, three)
    assert not torch.equal(ra[1], rb[1])
    torch.testing.assert_close(ra[2], ra[1].sum((-2, -1)).float().mean(1))
