"""Plain, slow float64 references for every formula of docs/spec.md, written with explicit loops.

Independent of patchfield's vectorised code on purpose: tests compare the two.
"""

from __future__ import annotations

import math

import numpy as np


def ref_uncertainty(attn: np.ndarray) -> np.ndarray:
    """attn [L, k, N, N] -> U [N, N] (docs/spec.md §2), loops over layers and heads."""
    L, k, N, _ = attn.shape
    a = attn.astype(np.float64)
    layer_var = np.zeros((k, N, N))
    for h in range(k):
        for p in range(N):
            for i in range(N):
                vals = [a[layer, h, p, i] for layer in range(L)]
                m = sum(vals) / L
                layer_var[h, p, i] = sum((v - m) ** 2 for v in vals) / L
    U = np.zeros((N, N))
    for p in range(N):
        for i in range(N):
            vals = [layer_var[h, p, i] for h in range(k)]
            m = sum(vals) / k
            U[p, i] = sum((v - m) ** 2 for v in vals) / k
    return U


def round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def ref_windows(U: np.ndarray, alpha: float, gh: int, gw: int):
    """Windows as a list of (left, right, top, bottom); ties: smaller row-major index first."""
    N = gh * gw
    count = round_half_up(alpha * N * N)
    entries = sorted((-U[p, i], p * N + i) for p in range(N) for i in range(N))
    chosen = {idx for _, idx in entries[:count]}
    out = []
    for p in range(N):
        members = [p] + [i for i in range(N) if p * N + i in chosen]
        xs = [m % gw for m in members]
        ys = [m // gw for m in members]
        out.append((min(xs), max(xs), min(ys), max(ys)))
    return out


def ref_dropped(U: np.ndarray, beta: float) -> set[int]:
    N = U.shape[0]
    var = []
    for p in range(N):
        col = [U[i, p] for i in range(N)]
        m = sum(col) / N
        var.append(sum((c - m) ** 2 for c in col) / N)
    order = sorted(range(N), key=lambda p: (var[p], p))
    return set(order[: round_half_up(beta * N)])


def ref_fields(windows, dropped: set[int], gh: int, gw: int):
    """Per patch: (members of S_p, size, offset R_p)."""
    out = []
    for p, (l, r, t, b) in enumerate(windows):
        members = {p}
        for i in range(gh * gw):
            x, y = i % gw, i // gw
            if l <= x <= r and t <= y <= b and i not in dropped:
                members.add(i)
        xs = [m % gw for m in members]
        ys = [m // gw for m in members]
        xp, yp = p % gw, p // gw
        offset = ((max(xs) - xp) - (xp - min(xs)), (max(ys) - yp) - (yp - min(ys)))
        out.append((members, len(members), offset))
    return out
