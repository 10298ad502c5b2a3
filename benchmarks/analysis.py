"""Speed and memory of capture + analysis against the model's own forward.

Prints, for ViT-S/16 and ViT-B/16 at 224 with batch 16, the median time of: the plain forward
with fused attention, the forward with unfused attention, and ``patchfield.analyze`` (streaming
capture + U + windows + DIP + responsive fields), measured interleaved in one run so that the
ratios are comparable on a shared, noisy machine. Then the peak memory of the streaming path
for ViT-B/16 at 384 with batch 16, measured in fresh subprocesses (the largest of ``--peak-runs``:
the resident peak varies by about 0.2 GiB from run to run with the allocator).

The last line is one JSON object with ``analysis_over_fused``, ``analysis_over_unfused``
(ViT-B/16), ``small_analysis_over_fused`` (ViT-S/16) and ``stream_peak_gib``. Targets (issue 22):
analysis ≤ 1.15x fused at ViT-B/16 and ≤ 1.3x at ViT-S/16 (one unfused forward is the floor);
streaming peak < 3.0 GiB for the whole process.

Usage: ``python benchmarks/analysis.py [--quick] [--batch 16] [--repeats 3] [--peak-runs 2]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import timm
import torch

import patchfield as pf


def _set_fused(model: torch.nn.Module, fused: bool) -> None:
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = fused


def _time(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def bench_model(name: str, batch: int, repeats: int, img_size: int | None = None) -> dict[str, float]:
    kw = {"img_size": img_size} if img_size else {}
    model = timm.create_model(name, pretrained=False, **kw).eval()
    size = model.patch_embed.img_size
    x = torch.randn(batch, 3, *size)

    def fused():
        _set_fused(model, True)
        with torch.inference_mode():
            model(x)

    def unfused():
        _set_fused(model, False)
        with torch.inference_mode():
            model(x)
        _set_fused(model, True)

    def analysis():
        pf.analyze(model, x, alpha=0.1, beta=0.2)

    fused()  # warm-up
    times: dict[str, list[float]] = {"fused": [], "unfused": [], "analysis": []}
    for _ in range(repeats):  # interleaved rounds: noise hits all three alike
        for key, fn in (("fused", fused), ("unfused", unfused), ("analysis", analysis)):
            times[key] += _time(fn, 1)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        **{f"{k}_s": round(v, 4) for k, v in med.items()},
        "analysis_over_fused": round(med["analysis"] / med["fused"], 3),
        "analysis_over_unfused": round(med["analysis"] / med["unfused"], 3),
    }


_PEAK_SCRIPT = """
import resource, sys, timm, torch, patchfield as pf
torch.manual_seed(0)
name, size, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
model = timm.create_model(name, pretrained=False, img_size=size).eval()
x = torch.randn(batch, 3, size, size)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
pf.analyze(model, x, alpha=0.1, beta=0.2)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(peak / 2**20, base / 2**20)
"""


def stream_peak_gib(name: str, size: int, batch: int) -> tuple[float, float]:
    """Peak resident memory (GiB) of a fresh process running the streaming analysis, and its
    resident memory before the analysis (libraries, model, inputs)."""
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, name, str(size), str(batch)],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    return float(out[0]), float(out[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peak-runs", type=int, default=2, help="fresh processes measuring the peak (the largest is kept)")
    ap.add_argument("--quick", action="store_true", help="tiny models, seconds (a smoke run)")
    args = ap.parse_args()
    torch.manual_seed(0)
    if args.quick:
        configs = [("vit_tiny_patch16_224", 64)]
        batch, peak_cfg = 2, ("vit_tiny_patch16_224", 96, 2)
    else:
        configs = [("vit_small_patch16_224", None), ("vit_base_patch16_224", None)]
        batch, peak_cfg = args.batch, ("vit_base_patch16_224", 384, args.batch)
    results = {}
    for name, size in configs:
        r = bench_model(name, batch, args.repeats, size)
        results[name] = r
        print(f"{name:24s} batch {batch}: fused {r['fused_s']:.3f}s  unfused {r['unfused_s']:.3f}s  "
              f"analysis {r['analysis_s']:.3f}s  -> {r['analysis_over_fused']:.3f}x fused, "
              f"{r['analysis_over_unfused']:.3f}x unfused", flush=True)
    peaks = [stream_peak_gib(*peak_cfg) for _ in range(max(1, args.peak_runs))]
    peak, base = max(p for p, _ in peaks), peaks[0][1]
    print(f"streaming analysis peak RSS, {peak_cfg[0]} at {peak_cfg[1]} batch {peak_cfg[2]}: "
          f"{peak:.2f} GiB, largest of {' '.join(f'{p:.2f}' for p, _ in peaks)} "
          f"(process before analysis: {base:.2f} GiB); target < 3.0 GiB", flush=True)
    last, first = results[configs[-1][0]], results[configs[0][0]]
    print(json.dumps({
        "analysis_over_fused": last["analysis_over_fused"],
        "analysis_over_unfused": last["analysis_over_unfused"],
        "small_analysis_over_fused": first["analysis_over_fused"],
        "stream_peak_gib": round(peak, 3),
        "models": results,
    }))


if __name__ == "__main__":
    main()
