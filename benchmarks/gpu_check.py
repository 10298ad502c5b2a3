"""The prepared device check: correctness, speed, training and torch.compile of patchfield on one GPU.

Run ``make gpu-check`` (or ``python benchmarks/gpu_check.py``) once on a machine with a CUDA GPU; it
writes one JSON file (``--out``, default ``docs/gpu_check.json``), prints it as its LAST line, and
exits 1 when a correctness check fails or a part breaks. Each part is guarded: one failing part
still lets the others report. ``--quick`` runs every part on the CPU in seconds (tiny models, gloo),
which is what ``tests/test_gpu_check.py`` does so that the script never rots.

Parts, with the expected time on one H100 (about 5 minutes in all, at most 8):

- ``correctness`` (~20 s): capture and ``U`` on the device against a CPU float64 reference on the
  same model and images (relative error ``‖U − U_ref‖ / ‖U_ref‖``; float32 with TF32 off must stay
  within ``1e-4``, bf16 autocast within ``0.1``); AWD-ViT (fused SDPA with a boolean mask) and WinfT
  (paper and restrict mode) logits on the device against the CPU (float32, ``1e-4``); the masked SDPA
  path with ``-inf`` in bf16: no NaN anywhere, also for a patch whose field is itself alone.
- ``distributed`` (~5 s): a one-process nccl group (gloo with ``--quick``), an all-reduce and one
  DDP step whose gradients equal the plain model's.
- ``speed`` (~60 s): analysis images/s over timm's fused inference images/s, ViT-B/16 at 224 and
  384, batch 64 and 256, float32 and bf16 autocast (target: at least 0.5 at 224 bf16), with the
  peak GPU memory of each (``torch.cuda.max_memory_allocated``). A configuration that runs out of
  memory is recorded as such, not as a failure.
- ``models`` (~30 s): AWD-ViT (+DIP) forward, WinfT inference and training step over the plain ViT's,
  ViT-B/16 224, batch 64, bf16 autocast, with peak memory.
- ``groundtruth`` (~40 s): ``build_groundtruth`` images/s end to end from a synthetic data set
  (generation and loading included, 8 workers), float32 and bf16, with peak memory.
- ``training`` (~120 s): ``torchrun --nproc_per_node 1`` of ``patchfield train`` on the synthetic
  data, 300 steps, bf16 autocast, killed with SIGKILL after its first checkpoint and resumed; the
  final parameters must equal an uninterrupted run's (bitwise, or within ``‖Δθ‖/‖θ‖ ≤ 1e-3``, the
  stated bf16 tolerance for non-deterministic GPU kernels, or 10 times the difference between two
  uninterrupted runs where that is larger: the measured noise). The same for WinfT, on fields built by
  ``patchfield groundtruth`` from the ViT just trained. One process means no process group:
  the ``distributed`` part is the nccl check.
- ``compile`` (~90 s, never past ``--budget-s``, default 450 s, from the start): ``torch.compile``
  (inductor) of a 4-layer ViT-Ti/16, AWD-ViT and WinfT (both modes): logits against eager (``1e-3``),
  WinfT's interaction counts, then a training step's loss (``1e-3``) and gradients (``1e-2``), and
  dynamo's graph-break count (reported: a break is slower, not wrong). ``--quick`` checks dynamo's
  graph capture of the tiniest models (backend ``eager``: inductor's CPU code generation takes
  minutes on a small CPU), skipped with its reason where the CPU has no C++ compiler.

The JSON is rewritten after every part (``"complete": false`` until the end), so a check cut short
by its caller still leaves what it measured.

Usage: ``python benchmarks/gpu_check.py [--quick] [--out FILE] [--device cuda] [--parts speed,models]``
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F

import patchfield as pf
import patchfield.models as pm
from patchfield.capture import capture_uncertainty
from patchfield.utils.io import write_json_atomic

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("correctness", "distributed", "speed", "models", "groundtruth", "training", "compile")
TOL = {"capture_fp32": 1e-4, "capture_bf16": 0.1, "logits_fp32": 1e-4, "sdpa_bf16": 5e-2, "compile": 1e-3,
       "resume_bf16": 1e-3}
#: The tiniest model (quick mode): 32x32 images, 8x8 patches (a 4x4 grid), 2 layers, 2 heads.
TINY = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0,
        "num_classes": 5}


@dataclass
class Ctx:
    """What every part needs: the device, quick or full, a scratch folder."""

    device: torch.device
    quick: bool
    tmp: Path
    deadline: float = float("inf")  # time.monotonic() by which the check should end (the compile part obeys it)
    compile_backend: str | None = None  # None: inductor, or eager with --quick

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


# ----------------------------------------------------------------------------------------------- helpers


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


def _rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    a, ref = a.detach().double().cpu(), ref.detach().double().cpu()
    return float((a - ref).norm() / ref.norm().clamp_min(1e-300))


def peaky_qk_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Make a randomly initialised timm ViT's attention far from uniform, in place (also used by the tests).

    timm's initialisation gives near-uniform attention, whose ``U`` sits at the rounding level; query and
    key weights of standard deviation ``1.5/√C`` give logits of unit order, as a trained model has.
    """
    g = torch.Generator().manual_seed(seed)
    for blk in model.blocks:
        w = blk.attn.qkv.weight
        c = w.shape[1]
        with torch.no_grad():
            w[: 2 * c].copy_(torch.randn(2 * c, c, generator=g) * (1.5 / c**0.5))
    return model


def _peaky_vit(name: str, seed: int = 0, **kwargs) -> torch.nn.Module:
    """A randomly initialised timm ViT (seeded) whose attention is far from uniform (:func:`peaky_qk_`)."""
    torch.manual_seed(seed)
    return peaky_qk_(timm.create_model(name, pretrained=False, **kwargs).eval(), seed)


def _small_model(ctx: Ctx) -> tuple[torch.nn.Module, torch.Tensor]:
    """The correctness model and images: the tiniest ViT (quick) or ViT-S/16 at 224, batch 4."""
    if ctx.quick:
        model, batch, size = _peaky_vit("vit_tiny_patch16_224", **TINY), 2, 32
    else:
        model, batch, size = _peaky_vit("vit_small_patch16_224", num_classes=10), 4, 224
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    return model, x


def _timed(fn: Callable[[], Any], device: torch.device, repeats: int) -> dict[str, float]:
    """Median seconds of ``fn`` after one warm-up, and the peak GPU memory (GiB) of one call."""
    fn()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    out = {"seconds": statistics.median(times)}
    if device.type == "cuda":
        out["peak_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    return out


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------ correctness


def _block_outputs_finite(model: torch.nn.Module, run: Callable[[], torch.Tensor]) -> bool:
    """Whether every block's output and the logits of ``run()`` are free of NaN and Inf (a WinfT block returns
    its tokens with its windows: the tokens are checked)."""
    bad = []

    def hook(_m: torch.nn.Module, _i: Any, out: Any) -> None:
        tokens = out[0] if isinstance(out, tuple) else out
        bad.append(not bool(torch.isfinite(tokens).all()))

    handles = [blk.register_forward_hook(hook) for blk in model.blocks]
    try:
        logits = run()
    finally:
        for h in handles:
            h.remove()
    return not any(bad) and bool(torch.isfinite(logits).all())


def part_correctness(ctx: Ctx) -> dict[str, Any]:
    dev = ctx.device
    model, x = _small_model(ctx)
    checks: dict[str, dict[str, Any]] = {}

    def check(name: str, value: float, tol: float, **extra: Any) -> None:
        checks[name] = {"value": value, "tol": tol, "ok": bool(value <= tol), **extra}

    # capture and U: CPU float64 reference, the device in float32 and under bf16 autocast
    ref = capture_uncertainty(copy.deepcopy(model).double(), x.double()).U
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        m = copy.deepcopy(model).to(dev)
        xd = x.to(dev)
        cap = capture_uncertainty(m, xd)
        check("capture_fp32", _rel(cap.U, ref), TOL["capture_fp32"], dtype=str(cap.U.dtype))
        with _autocast(dev, True):
            cap16 = capture_uncertainty(m, xd)
        check("capture_bf16", _rel(cap16.U, ref), TOL["capture_bf16"], dtype=str(cap16.U.dtype))
        checks["capture_bf16"]["ok"] &= cap16.U.dtype in (torch.float32, torch.float64)  # statistics stay in float
        res = pf.analyze(m, xd, 0.1, 0.2, amp=True)
        full = pf.analyze(copy.deepcopy(model).double(), x.double(), 0.1, 0.2)
        same = (res.windows.bounds().cpu() == full.windows.bounds().cpu()).all(-1).float().mean().item()
        checks["windows_bf16_vs_fp64"] = {"value": same, "note": "share of windows identical (reported)", "ok": True}

        # AWD (fused SDPA, boolean mask) and WinfT logits: device against CPU, float32
        n = model.patch_embed.num_patches
        b = x.shape[0]
        g = torch.Generator().manual_seed(2)
        U = torch.rand(b, n, n, generator=g)
        windows = pf.adaptive_windows(U, 0.1, tuple(model.patch_embed.grid_size))
        dropped = pf.indiscriminative_patches(U, 0.2)
        field_mask = pf.responsive_field(windows, dropped).mask()
        field_mask[:, 0] = False  # patch 0's field: itself alone
        dropped[:, 1] = True  # a dropped patch still sees itself
        awd = pm.apply_awd(copy.deepcopy(model))
        with torch.inference_mode():
            want = awd(x, field_mask=field_mask, dropped=dropped)
            awd_d = awd.to(dev)
            got = awd_d(xd, field_mask=field_mask.to(dev), dropped=dropped.to(dev))
        check("awd_logits_fp32", _rel(got, want), TOL["logits_fp32"])
        for mode in ("paper", "restrict"):
            w = pm.apply_winft(copy.deepcopy(model), mode)
            with torch.inference_mode():
                want, eo = w(x, return_interactions=True)
                got, eo_d = w.to(dev)(xd, return_interactions=True)
            check(f"winft_{mode}_logits_fp32", _rel(got, want), TOL["logits_fp32"],
                  interactions_equal=bool(torch.equal(eo_d.cpu(), eo)))
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32

    # the masked SDPA path with -inf in bf16: no NaN rows, incl. a patch whose field is itself alone
    with torch.inference_mode(), _autocast(dev, True):
        ok_awd = _block_outputs_finite(awd_d, lambda: awd_d(xd, field_mask=field_mask.to(dev), dropped=dropped.to(dev)))
        w = pm.apply_winft(copy.deepcopy(model), "restrict").to(dev)
        ok_winft = _block_outputs_finite(w, lambda: w(xd))
    t, heads, d = 17, 2, 16
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, heads, t, d, generator=g, dtype=torch.float64) for _ in range(3))
    allow = torch.rand(2, 1, t, t, generator=g) < 0.3
    allow[:, :, 0] = False
    allow |= torch.eye(t, dtype=torch.bool)  # row 0: the query itself alone
    bias = torch.zeros(allow.shape, dtype=torch.float64).masked_fill(~allow, float("-inf"))
    want = ((q @ k.transpose(-2, -1)) / d**0.5 + bias).softmax(-1) @ v
    qb, kb, vb = (a.to(dev, torch.bfloat16) for a in (q, k, v))
    got_bool = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=allow.to(dev))
    got_inf = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=bias.to(dev, torch.bfloat16))
    finite = bool(torch.isfinite(got_bool).all() and torch.isfinite(got_inf).all())
    err = max(_rel(got_bool, want), _rel(got_inf, want))
    alone = float((got_inf[:, :, 0].double().cpu() - v[:, :, 0]).abs().max())  # row 0 must return its own value
    checks["sdpa_bf16_masked"] = {"value": err, "tol": TOL["sdpa_bf16"], "finite": finite,
                                  "self_alone_row_error": alone,
                                  "ok": bool(finite and err <= TOL["sdpa_bf16"] and alone <= 5e-2)}
    checks["awd_bf16_no_nan"] = {"ok": ok_awd}
    checks["winft_restrict_bf16_no_nan"] = {"ok": ok_winft}
    return {"checks": checks, "ok": all(c["ok"] for c in checks.values())}


# ------------------------------------------------------------------------------------------ distributed


def part_distributed(ctx: Ctx) -> dict[str, Any]:
    import torch.distributed as dist

    if dist.is_initialized():
        return {"skipped": "a process group is already initialised in this process", "ok": True}
    backend = "nccl" if ctx.cuda else "gloo"
    store = dist.FileStore(str(ctx.tmp / "dist-store"), 1)
    dist.init_process_group(backend, store=store, rank=0, world_size=1)
    try:
        t = torch.arange(4.0, device=ctx.device)
        dist.all_reduce(t)
        model = _peaky_vit("vit_tiny_patch16_224", **TINY).to(ctx.device).train()
        plain = copy.deepcopy(model)
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.cuda else None)
        x = torch.randn(4, 3, 32, 32, device=ctx.device)
        ddp(x).square().mean().backward()
        plain(x).square().mean().backward()
        diff = max(float((a.grad - b.grad).abs().max()) for a, b in zip(model.parameters(), plain.parameters()))
        ok = bool(torch.equal(t.cpu(), torch.arange(4.0))) and diff <= 1e-6
        return {"backend": backend, "all_reduce_ok": bool(torch.equal(t.cpu(), torch.arange(4.0))),
                "ddp_grad_max_diff": diff, "ok": ok}
    finally:
        dist.destroy_process_group()


# ------------------------------------------------------------------------------------------------ speed


def part_speed(ctx: Ctx) -> dict[str, Any]:
    """Analysis images/s over timm's fused inference images/s (ratios from one run)."""
    dev = ctx.device
    if ctx.quick:
        configs, repeats = [("vit_tiny_patch16_224", 32, 2, TINY)], 2
    else:
        configs, repeats = [("vit_base_patch16_224", 224, b, {}) for b in (64, 256)], 3
        configs += [("vit_base_patch16_384", 384, b, {}) for b in (64, 256)]
    out: dict[str, Any] = {}
    for name, size, batch, kw in configs:
        model = _peaky_vit(name, **{**kw, "img_size": size}).to(dev)
        x = torch.randn(batch, 3, size, size, device=dev)
        for bf16 in (False, True):
            key = f"{size}_b{batch}_{'bf16' if bf16 else 'fp32'}"

            def fused(bf16=bf16, m=model, inp=x):
                with torch.inference_mode(), _autocast(dev, bf16):
                    m(inp)

            def analysis(bf16=bf16, m=model, inp=x):
                pf.analyze(m, inp, 0.1, 0.2, amp=bf16)

            row: dict[str, Any] = {}
            for label, fn in (("fused", fused), ("analysis", analysis)):
                try:
                    t = _timed(fn, dev, repeats)
                    row[f"{label}_images_per_s"] = round(batch / t["seconds"], 1)
                    if "peak_gib" in t:
                        row[f"{label}_peak_gib"] = t["peak_gib"]
                except Exception as e:  # noqa: BLE001
                    if not _is_oom(e):
                        raise
                    row[f"{label}_oom"] = True
                _free(dev)
            if "analysis_images_per_s" in row and "fused_images_per_s" in row:
                row["analysis_over_fused"] = round(row["analysis_images_per_s"] / row["fused_images_per_s"], 3)
            out[key] = row
        _free(dev)
    main = out.get("224_b64_bf16") or out.get("224_b256_bf16") or next(iter(out.values()))
    target = {"config": "224 bf16", "want": ">= 0.5", "value": main.get("analysis_over_fused")}
    target["met"] = bool(target["value"] is not None and target["value"] >= 0.5)
    return {"configs": out, "target": target, "ok": True}


# ----------------------------------------------------------------------------------------------- models


def part_models(ctx: Ctx) -> dict[str, Any]:
    """AWD forward, WinfT inference and training step over the plain ViT's."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import models as model_bench  # benchmarks/models.py: the random local fields

    dev = ctx.device
    if ctx.quick:
        name, kw, batch, repeats, bf16 = "vit_tiny_patch16_224", dict(TINY, num_classes=100), 2, 2, False
    else:
        name, kw, batch, repeats, bf16 = "vit_base_patch16_224", {"num_classes": 100}, 64, 5, True
    vit = _peaky_vit(name, **kw).to(dev)
    nets = {"vit": vit, "awd": pm.apply_awd(copy.deepcopy(vit)),
            "winft_paper": pm.apply_winft(copy.deepcopy(vit), "paper"),
            "winft_restrict": pm.apply_winft(copy.deepcopy(vit), "restrict")}
    size = vit.patch_embed.img_size
    x = torch.randn(batch, 3, *size, device=dev)
    labels = torch.randint(0, 100, (batch,), device=dev)
    window_mask, field_mask, dropped, _n = model_bench._fields(vit, batch, 0.1, 0.2)
    window_mask, field_mask, dropped = window_mask.to(dev), field_mask.to(dev), dropped.to(dev)

    def step(key: str, grad: bool, dip: bool = False):
        model = nets[key]

        def fn() -> None:
            model.train(grad)
            with (torch.enable_grad() if grad else torch.inference_mode()), _autocast(dev, bf16):
                if key == "awd":
                    out = model(x, field_mask=field_mask if dip else window_mask, dropped=dropped if dip else None)
                    s = None
                elif key.startswith("winft") and grad:
                    out, s = model(x, return_window_logits=True)
                else:
                    out, s = model(x), None
            if grad:
                loss = F.cross_entropy(out.float(), labels)
                if s is not None:
                    loss = loss + pm.window_bce_loss(s, field_mask)
                loss.backward()
                model.zero_grad(set_to_none=True)

        return fn

    res: dict[str, Any] = {"batch": batch, "bf16": bf16, "model": name}
    for phase, grad in (("infer", False), ("train", True)):
        keys = list(nets) + (["awd_dip"] if not grad else [])
        for key in keys:
            t = _timed(step(key.replace("_dip", ""), grad, dip=key == "awd_dip"), dev, repeats)
            res[f"{phase}_{key}_s"] = round(t["seconds"], 5)
            if "peak_gib" in t:
                res[f"{phase}_{key}_peak_gib"] = t["peak_gib"]
        base = res[f"{phase}_vit_s"]
        for key in keys:
            if key != "vit":
                res[f"{phase}_{key}_over_vit"] = round(res[f"{phase}_{key}_s"] / base, 3)
    return {**res, "ok": True}


# ------------------------------------------------------------------------------------------ groundtruth


def part_groundtruth(ctx: Ctx) -> dict[str, Any]:
    """``build_groundtruth`` images/s end to end from a synthetic data set (loading included)."""
    from patchfield.data import build_dataset
    from patchfield.groundtruth import build_groundtruth

    dev = ctx.device
    if ctx.quick:
        name, kw, size, n, batch, workers = "vit_tiny_patch16_224", TINY, 32, 32, 8, 1
    else:
        name, kw, size, n, batch, workers = "vit_base_patch16_224", {}, 224, 4096, 128, 8
    model = _peaky_vit(name, **kw)
    ds = build_dataset("synthetic", "train", size, num_images=n)
    out: dict[str, Any] = {"images": n, "batch": batch, "workers": workers, "model": name}
    for amp in (False, True):
        key = "bf16" if amp else "fp32"
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        t0 = time.perf_counter()
        store = build_groundtruth(model, ds, ctx.tmp / f"gt-{key}", 0.1, 0.2, batch_size=batch, shard_size=4 * batch,
                                  num_workers=workers, device=dev, amp=amp, progress=False)
        _sync(dev)
        seconds = time.perf_counter() - t0
        out[f"{key}_images_per_s"] = round(n / seconds, 1)
        out[f"{key}_expected_interactions"] = store.expected_interactions()
        if dev.type == "cuda":
            out[f"{key}_peak_gib"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 3)
    return {**out, "ok": True}


# --------------------------------------------------------------------------------------------- training


def _cli_in_child(args: list[str]) -> None:
    """A forked child's body (quick mode): ``patchfield ARGS`` with the modules this process already imported."""
    from patchfield.cli import main as cli_main

    os._exit(cli_main(args))


class _Runner:
    """Runs ``patchfield`` commands: under ``torchrun --nproc_per_node 1`` (full), or, in quick mode, in this
    process (``patchfield.cli.main``) except the run to be killed, which is a forked child (no import time)."""

    def __init__(self, log: Path, quick: bool, timeout: float) -> None:
        self.log, self.quick, self.timeout = log, quick, timeout

    def launch(self, args: list[str]) -> subprocess.Popen:
        """``torchrun`` in its own session, so that a kill of its process group takes the worker too."""
        head = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "-m",
                "patchfield"]
        path = os.pathsep.join([str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
        env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": path}
        with open(self.log, "ab") as fh:
            return subprocess.Popen([*head, *args], env=env, stdout=fh, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    def run(self, args: list[str]) -> None:
        """Run to the end; raise with the log's tail when it fails."""
        if self.quick:
            from patchfield.cli import main as cli_main

            code = cli_main(args)
            if code != 0:
                raise RuntimeError(f"patchfield {args[0]} exited {code}")
            return
        proc = self.launch(args)
        try:
            proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.returncode != 0:
            tail = self.log.read_text(errors="replace")[-1500:]
            raise RuntimeError(f"patchfield {args[0]} exited {proc.returncode}: {tail}")

    def run_and_kill(self, args: list[str], run: Path) -> int:
        """Start a training run, SIGKILL it once its first checkpoint exists; that checkpoint's step."""
        child = _Child(self, args)
        alive, kill, wait = child.alive, child.kill, child.wait
        deadline = time.monotonic() + self.timeout
        ckpt = run / "checkpoint.pt"
        try:
            while not ckpt.exists():
                if not alive():
                    tail = self.log.read_text(errors="replace")[-1500:] if self.log.exists() else ""
                    raise RuntimeError(f"the run to kill ended before its first checkpoint: {tail}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no checkpoint in {run} after {self.timeout} s")
                time.sleep(0.005)
        finally:
            if alive():
                kill()
            wait()
        if (run / "model.safetensors").exists():
            raise RuntimeError("the run finished before it could be killed: give it more steps")
        return int(torch.load(ckpt, weights_only=True)["step"])


class _Child:
    """The run to be killed: a forked child (quick) or a ``torchrun`` process group."""

    def __init__(self, runner: _Runner, args: list[str]) -> None:
        self.quick = runner.quick
        if self.quick:
            import multiprocessing

            self.proc = multiprocessing.get_context("fork").Process(target=_cli_in_child, args=(args,))
            self.proc.start()
        else:
            self.proc = runner.launch(args)

    def alive(self) -> bool:
        return self.proc.exitcode is None if self.quick else self.proc.poll() is None

    def kill(self) -> None:
        if self.quick:
            os.kill(self.proc.pid, signal.SIGKILL)
        else:
            os.killpg(self.proc.pid, signal.SIGKILL)

    def wait(self) -> None:
        if self.quick:
            self.proc.join(60)
        else:
            self.proc.wait(timeout=60)


def _compare_runs(a: Path, b: Path, tol: float) -> dict[str, Any]:
    """Parameters and logs of two finished runs: bitwise, or ``‖θ_a − θ_b‖ / ‖θ_a‖ <= tol``."""
    from safetensors.torch import load_file

    x, y = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    if x.keys() != y.keys():
        return {"ok": False, "error": "different parameter names"}
    diff = sum(float((x[k].double() - y[k].double()).square().sum()) for k in x) ** 0.5
    norm = sum(float(x[k].double().square().sum()) for k in x) ** 0.5
    bitwise = all(torch.equal(x[k], y[k]) for k in x)
    max_abs = max(float((x[k].double() - y[k].double()).abs().max()) for k in x)
    rel = diff / max(norm, 1e-300)
    la = [json.loads(s) for s in (a / "log.jsonl").read_text().splitlines()]
    lb = [json.loads(s) for s in (b / "log.jsonl").read_text().splitlines()]
    same_steps = [r["step"] for r in la] == [r["step"] for r in lb]
    return {"bitwise_equal": bitwise, "max_abs_diff": max_abs, "relative_l2": rel, "tol": tol,
            "logged_steps_equal": same_steps, "final_loss": [la[-1]["loss"], lb[-1]["loss"]],
            "ok": bool((bitwise or rel <= tol) and same_steps)}


def part_training(ctx: Ctx) -> dict[str, Any]:
    """Kill-and-resume of a ViT and a WinfT run; the WinfT's fields built from the ViT just trained."""
    quick, tmp = ctx.quick, ctx.tmp / "train"
    tmp.mkdir(parents=True, exist_ok=True)
    if quick:
        model_kw = {"img_size": 16, "patch_size": 4, "embed_dim": 16, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0}
        n, steps, every, batch, workers, timeout = 64, 30, 10, 8, 0, 120
    else:
        model_kw = {"img_size": 32, "patch_size": 4, "embed_dim": 64, "depth": 4, "num_heads": 4, "mlp_ratio": 2.0}
        n, steps, every, batch, workers, timeout = 4096, 300, 100, 64, 4, 300
    device = ["--device", str(ctx.device)]
    common = ["--model", "vit_tiny_patch16_224", "--model-kwargs", json.dumps(model_kw), "--data", "synthetic",
              "--data-kwargs", json.dumps({"num_images": n}), "--steps", str(steps), "--batch-size", str(batch),
              "--optimizer", "adamw", "--lr", "1e-3", "--warmup-steps", str(every // 2), "--checkpoint-every",
              str(every), "--log-every", str(every // 2), "--workers", str(workers), "--no-progress", *device]
    if not ctx.cuda:
        common.append("--no-amp")  # bf16 autocast on the CPU is tested in tests/test_train.py
    runner = _Runner(tmp / "log.txt", quick, timeout)
    out: dict[str, Any] = {
        "steps": steps, "checkpoint_every": every, "amp": "bf16" if ctx.cuda else "off",
        "launcher": "in-process; the killed run: a forked child" if quick else "torchrun --nproc_per_node 1",
        "runs": {},
    }
    tol = TOL["resume_bf16"] if ctx.cuda else 1e-6
    for kind in ("vit", "winft-paper"):
        args = [*common, "--kind", kind]
        if kind != "vit":
            store = tmp / "groundtruth"
            runner.run(["groundtruth", "--model", "vit_tiny_patch16_224", "--model-kwargs", json.dumps(model_kw),
                        "--weights", str(tmp / "vit-ref" / "model.safetensors"), "--num-classes", "4",
                        "--data", "synthetic", "--data-kwargs", json.dumps({"num_images": n}), "--alpha", "0.1",
                        "--beta", "0.2", "--out", str(store), "--batch-size", str(4 * batch), "--workers",
                        str(workers), "--no-progress", *device])
            args += ["--groundtruth", str(store)]
        t0 = time.perf_counter()
        runner.run(["train", *args, "--out", str(tmp / f"{kind}-ref")])
        ref_s = time.perf_counter() - t0
        run = tmp / f"{kind}-run"
        killed_at = runner.run_and_kill(["train", *args, "--out", str(run)], run)
        runner.run(["train", *args, "--resume", "--out", str(run)])
        row: dict[str, Any] = {"killed_at_step": killed_at, "uninterrupted_seconds": round(ref_s, 1)}
        limit = tol
        if ctx.cuda:  # GPU kernels need not be deterministic: a second uninterrupted run measures that noise
            runner.run(["train", *args, "--out", str(tmp / f"{kind}-ref2")])
            noise = _compare_runs(tmp / f"{kind}-ref", tmp / f"{kind}-ref2", tol)
            row["noise_bitwise_equal"], row["noise_relative_l2"] = noise["bitwise_equal"], noise["relative_l2"]
            limit = max(tol, 10 * noise["relative_l2"])
        out["runs"][kind] = {**row, **_compare_runs(tmp / f"{kind}-ref", run, limit)}
    out["ok"] = all(r["ok"] for r in out["runs"].values())
    return out


# ---------------------------------------------------------------------------------------------- compile


def _compiler_missing() -> str | None:
    """Why inductor cannot build CPU kernels here, or ``None``."""
    if not any(shutil.which(c) for c in ("cc", "gcc", "g++", "clang")):
        return "no C/C++ compiler (cc, gcc, g++, clang) on the PATH: torch.compile's CPU backend needs one"
    return None


def _patched(base: torch.nn.Module, kind: str, device: torch.device) -> torch.nn.Module:
    model = copy.deepcopy(base)
    if kind == "awd":
        pm.apply_awd(model)
    elif kind.startswith("winft"):
        pm.apply_winft(model, kind.split("-")[1])
    return model.to(device)


def part_compile(ctx: Ctx) -> dict[str, Any]:
    """``torch.compile`` of the plain ViT, AWD-ViT and WinfT: inference logits and WinfT's interaction counts
    against eager, then (not with ``--quick``) a training step's loss and gradients; graph breaks counted."""
    if not ctx.cuda:
        missing = _compiler_missing()
        if missing:
            return {"skipped": missing, "ok": True}
    import torch._dynamo as dynamo
    from torch._dynamo.utils import counters

    dev = ctx.device
    kinds = ("vit", "awd", "winft-paper", "winft-restrict")
    if ctx.quick:  # inductor's CPU code generation takes minutes on a small shared CPU: dynamo's capture only
        name, kw, batch, backend = "vit_tiny_patch16_224", TINY, 2, "eager"
    else:  # 4 layers of ViT-Ti/16: compile time grows with the graph, what is checked does not
        name, kw, batch, backend = "vit_tiny_patch16_224", {"depth": 4, "num_classes": 10}, 16, "inductor"
    backend = ctx.compile_backend or backend
    base = _peaky_vit(name, **kw)
    size = base.patch_embed.img_size
    x = torch.randn(batch, 3, *size, device=dev)
    n = base.patch_embed.num_patches
    fm = (torch.rand(batch, n, n, generator=torch.Generator().manual_seed(4)) < 0.3).to(dev)
    out: dict[str, Any] = {"model": name, "batch": batch, "backend": backend}

    def call(m: torch.nn.Module, kind: str, train: bool = False):
        if kind == "awd":
            return m(x, field_mask=fm), None
        if kind.startswith("winft"):
            logits, s, eo = m(x, return_window_logits=True, return_interactions=True)
            return logits, (s if train else eo)
        return m(x), None

    def budget_spent() -> bool:
        return time.monotonic() > ctx.deadline - 45

    for kind in kinds:  # inference
        if budget_spent():
            out[kind] = {"skipped": "the check's time budget (--budget-s) is spent", "ok": True}
            continue
        model = _patched(base, kind, dev).eval()
        dynamo.reset()
        counters.clear()
        compiled = torch.compile(model, backend=backend)
        t0 = time.perf_counter()
        with torch.no_grad():
            want, eo = call(model, kind)
            got, eo_got = call(compiled, kind)
        row: dict[str, Any] = {"compile_seconds": round(time.perf_counter() - t0, 1),
                               "logits_rel_err": _rel(got, want),
                               "graph_breaks": int(sum(counters["graph_break"].values()))}
        if eo is not None:
            row["interactions_equal"] = bool(torch.allclose(eo_got, eo))
        row["ok"] = bool(row["logits_rel_err"] <= TOL["compile"] and row.get("interactions_equal", True))
        out[kind] = row
    for kind in () if ctx.quick else kinds:  # a training step: loss and gradients against eager
        if "skipped" in out[kind] or budget_spent():
            out[kind]["train"] = {"skipped": "the check's time budget (--budget-s) is spent"}
            continue
        eager, model = _patched(base, kind, dev).train(), _patched(base, kind, dev).train()
        dynamo.reset()
        counters.clear()
        compiled = torch.compile(model, backend=backend)
        t0 = time.perf_counter()
        losses = []
        for m in (eager, compiled):
            logits, s = call(m, kind, train=True)
            loss = logits.float().square().mean() + (s.float().sigmoid().mean() if s is not None else 0.0)
            loss.backward()
            losses.append(loss.detach())
        grads = [(a.grad, b.grad) for a, b in zip(eager.parameters(), model.parameters()) if a.grad is not None]
        err = max(_rel(b, a) for a, b in grads)
        row = {"compile_seconds": round(time.perf_counter() - t0, 1), "loss_rel_err": _rel(losses[1], losses[0]),
               "grad_rel_err": err, "graph_breaks": int(sum(counters["graph_break"].values()))}
        row["ok"] = bool(row["loss_rel_err"] <= TOL["compile"] and err <= 10 * TOL["compile"])
        out[kind]["train"] = row
        out[kind]["ok"] = bool(out[kind]["ok"] and row["ok"])
    out["ok"] = all(out[k]["ok"] for k in kinds)
    return out


# ------------------------------------------------------------------------------------------------- main

FUNCS: dict[str, Callable[[Ctx], dict[str, Any]]] = {
    "correctness": part_correctness, "distributed": part_distributed, "speed": part_speed, "models": part_models,
    "groundtruth": part_groundtruth, "training": part_training, "compile": part_compile,
}


def _describe(device: torch.device) -> str:
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return f"{p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs"
    return f"cpu, {torch.get_num_threads()} threads"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="every part on the CPU in seconds (tiny models, gloo)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "gpu_check.json", help="the JSON file to write")
    ap.add_argument("--device", help="torch device (default: cuda; cpu with --quick)")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    ap.add_argument("--compile-backend", help="torch.compile backend (default: inductor; eager with --quick)")
    ap.add_argument("--budget-s", type=float, default=450.0,
                    help="seconds the whole check may take; the compile part (last) skips what would overrun")
    args = ap.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        ap.error(f"unknown parts {unknown}; choose from {list(PARTS)}")
    from patchfield.devices import parse_device, resolve_device

    try:
        device = resolve_device(args.device or ("cpu" if args.quick else "cuda"))
    except ValueError as e:
        ap.error(str(e))
    parse_device(device)
    if args.quick:
        torch.set_num_threads(1)
    result: dict[str, Any] = {
        "schema": 1, "quick": args.quick, "device": str(device), "device_name": _describe(device),
        "torch": torch.__version__, "timm": timm.__version__, "python": sys.version.split()[0],
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "tolerances": TOL, "parts": {},
    }
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        ctx = Ctx(device=device, quick=args.quick, tmp=Path(tmp), deadline=time.monotonic() + args.budget_s,
                  compile_backend=args.compile_backend)
        for name in parts:
            t0 = time.perf_counter()
            print(f"gpu_check: {name} ...", file=sys.stderr, flush=True)
            try:
                part = FUNCS[name](ctx)
            except Exception as e:  # noqa: BLE001  (one broken part must not hide the others)
                part = {"ok": False, "error": f"{type(e).__name__}: {e}"[:2000],
                        "traceback": traceback.format_exc(limit=6)[-3000:]}
            part["seconds"] = round(time.perf_counter() - t0, 1)
            result["parts"][name] = part
            print(f"gpu_check: {name} {'ok' if part['ok'] else 'FAILED'} in {part['seconds']} s",
                  file=sys.stderr, flush=True)
            write_json_atomic(args.out, {**result, "complete": False})  # a check cut short still leaves its parts
            _free(device)
    result["complete"] = True
    result["ok"] = all(p["ok"] for p in result["parts"].values())
    result["failed"] = [k for k, p in result["parts"].items() if not p["ok"]]
    write_json_atomic(args.out, result)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
