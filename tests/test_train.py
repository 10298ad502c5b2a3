"""Training: schedule, gradient accumulation, loss composition, kill-and-resume, torchrun, errors."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from conftest import single_thread
from safetensors.torch import load_file

from patchfield.kinds import VIT
from patchfield.training import (
    TrainConfig,
    accumulate_gradients,
    build_optimizer,
    build_scheduler,
    total_loss,
    train,
    warmup_cosine_lr,
)

TINY = {"patch_size": 8, "embed_dim": 16, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0, "img_size": 16}


def _config(out: Path, **kw) -> TrainConfig:
    base = dict(model="vit_tiny_patch16_224", model_kwargs=TINY, data_kwargs={"num_images": 48}, out=str(out),
                steps=6, batch_size=8, warmup_steps=2, lr=0.05, checkpoint_every=2, log_every=1, progress=False)
    base.update(kw)
    return TrainConfig(**base)


# ---------------------------------------------------------------------------------------------- schedule


def test_schedule_hand_values():
    # total 10, warm-up 4, base 0.1: 0.025, 0.05, 0.075, 0.1, then 0.1·(1 + cos(π t / 6)) / 2
    want = [0.025, 0.05, 0.075, 0.1, 0.1, 0.1 * (1 + math.sqrt(3) / 2) / 2, 0.075, 0.05, 0.025,
            0.1 * (1 - math.sqrt(3) / 2) / 2]
    got = [warmup_cosine_lr(s, 10, 4, 0.1) for s in range(10)]
    assert got == pytest.approx(want, abs=1e-15)
    assert warmup_cosine_lr(10, 10, 4, 0.1) == pytest.approx(0.0, abs=1e-15)
    assert warmup_cosine_lr(7, 10, 4, 0.1, min_lr=0.02) == pytest.approx(0.02 + 0.08 * 0.5, abs=1e-15)
    # no warm-up: the cosine starts at the peak
    assert warmup_cosine_lr(0, 4, 0, 1.0) == 1.0 and warmup_cosine_lr(2, 4, 0, 1.0) == pytest.approx(0.5)


def test_scheduler_drives_the_optimiser():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    sched = build_scheduler(opt, total_steps=10, warmup_steps=4, min_lr=0.01)
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([warmup_cosine_lr(s, 10, 4, 0.1, 0.01) for s in range(10)], abs=1e-12)
    with pytest.raises(ValueError, match="warm-up"):
        build_scheduler(opt, total_steps=5, warmup_steps=5)


# ---------------------------------------------------------------------------------------------- losses


def test_loss_composition_against_loops():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, dtype=torch.float64)
    labels = torch.tensor([4, 0, 2])
    out = total_loss(logits, labels, lambda_ce=0.7, lambda_bce=2.0)
    ce = 0.0
    for b in range(3):
        row = logits[b].tolist()
        ce += -(row[int(labels[b])] - math.log(sum(math.exp(v) for v in row))) / 3
    assert float(out["ce"]) == pytest.approx(ce, abs=1e-6)
    assert float(out["bce"]) == 0.0 and float(out["loss"]) == pytest.approx(0.7 * ce, abs=1e-6)


def test_loss_composition_with_window_bce():
    pytest.importorskip("patchfield.models", reason="the models package (WinfT) is not there yet")
    torch.manual_seed(1)
    logits = torch.randn(2, 3)
    labels = torch.tensor([1, 2])
    s = torch.randn(2, 3, 4, 4) * 3  # [B, L, N, N]
    target = torch.rand(2, 4, 4) < 0.4
    out = total_loss(logits, labels, s, target, lambda_ce=0.5, lambda_bce=1.5)
    bce = 0.0
    for b in range(2):
        for layer in range(3):
            for p in range(4):
                for i in range(4):
                    z = float(s[b, layer, p, i])
                    t = float(target[b, p, i])
                    sig = 1 / (1 + math.exp(-z))
                    bce -= t * math.log(sig) + (1 - t) * math.log(1 - sig)
    bce /= 2 * 3 * 16
    ce = float(F.cross_entropy(logits.double(), labels))
    assert float(out["bce"]) == pytest.approx(bce, rel=1e-5)
    assert float(out["loss"]) == pytest.approx(0.5 * ce + 1.5 * bce, rel=1e-5)
    with pytest.raises(ValueError, match="w_gt"):
        total_loss(logits, labels, s, None)


# ---------------------------------------------------------------------------------------------- accumulation


def test_gradient_accumulation_equals_one_large_batch():
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(img_size=16, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=3).double()
    x = torch.randn(8, 3, 16, 16, dtype=torch.float64)
    y = torch.randint(0, 3, (8,))

    def grads(chunks):
        model.zero_grad()
        batches = [(xc, yc, None, None) for xc, yc in zip(x.chunk(chunks), y.chunk(chunks))]
        stats = accumulate_gradients(model, "vit", batches, num_patches=4)
        return [p.grad.clone() for p in model.parameters()], stats

    one, s1 = grads(1)
    four, s4 = grads(4)
    for a, b in zip(one, four):
        assert torch.allclose(a, b, rtol=0, atol=1e-13)
    # the reference: the gradient of the mean cross-entropy over the whole batch
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    for a, p in zip(one, model.parameters()):
        assert torch.allclose(a, p.grad, rtol=0, atol=1e-13)
    assert s1.images == s4.images == 8 and s1.loss == pytest.approx(s4.loss, abs=1e-12)  # count, summed loss
    assert s1.interactions == 8 * 16  # E_O of a ViT: N^2 per image


def test_accumulated_run_equals_large_batch_run(tmp_path, one_thread):
    train(_config(tmp_path / "big", steps=3, batch_size=8, accum_steps=1, checkpoint_every=0))
    train(_config(tmp_path / "acc", steps=3, batch_size=4, accum_steps=2, checkpoint_every=0))
    a, b = load_file(tmp_path / "big" / "model.safetensors"), load_file(tmp_path / "acc" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=2e-5), k
    first = load_file(tmp_path / "big" / "model.safetensors")
    torch.manual_seed(0)
    from patchfield.training import build_model

    init = build_model("vit_tiny_patch16_224", "vit", num_classes=4, model_kwargs=TINY).state_dict()
    assert any(not torch.equal(first[k], init[k]) for k in init)  # training moved the weights


def test_optimizer_groups():
    from timm.models.vision_transformer import VisionTransformer

    model = VisionTransformer(img_size=16, patch_size=8, embed_dim=16, depth=1, num_heads=2, num_classes=3)
    opt = build_optimizer(model, TrainConfig(model="x", weight_decay=0.05, momentum=0.9))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"])
    ids = {id(p) for p in no_decay["params"]}
    assert id(model.pos_embed) in ids and id(model.cls_token) in ids and id(model.head.bias) in ids
    assert opt.defaults["momentum"] == 0.9 and isinstance(opt, torch.optim.SGD)
    adamw = build_optimizer(model, TrainConfig(model="x", optimizer="adamw", lr=2e-3, weight_decay=0.05))
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["lr"] == 2e-3
    assert [g["weight_decay"] for g in adamw.param_groups] == [0.05, 0.0]
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(model="x", optimizer="lamb")


# ---------------------------------------------------------------------------------------------- runs


def test_run_layout_and_log(tmp_path, one_thread):
    out = tmp_path / "run"
    result = train(_config(out))
    assert result["finished"] and result["step"] == 6
    for name in ("checkpoint.pt", "model.safetensors", "run.json", "log.jsonl"):
        assert (out / name).is_file(), name
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left
    lines = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines()]
    assert [ln["step"] for ln in lines] == list(range(1, 7))
    assert [ln["lr"] for ln in lines] == pytest.approx([warmup_cosine_lr(s, 6, 2, 0.05) for s in range(6)])
    for ln in lines:
        assert set(ln) >= {"loss", "ce", "bce", "accuracy", "lr", "eo", "images_per_s", "epoch"}
        assert ln["eo"] == 16.0 and ln["images"] == 8 and ln["loss"] == pytest.approx(ln["ce"])
    info = json.loads((out / "run.json").read_text())
    assert info["model"] == "vit_tiny_patch16_224" and info["kind"] == "vit" and info["grid"] == [2, 2]
    assert info["num_classes"] == 4 and info["model_kwargs"] == TINY and info["steps"] == 6
    # the final weights load with patchfield.load_model and with load_run
    import patchfield as pf
    from patchfield.loading import load_run

    plain = pf.load_model("vit_tiny_patch16_224", out / "model.safetensors", **TINY)
    model, _ = load_run(out)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(plain(x), model(x))
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 6 and set(ckpt) >= {"model", "optimizer", "scheduler", "rng", "config"}


def test_kill_and_resume_gives_the_same_parameters(tmp_path, one_thread):
    kw = dict(steps=7, checkpoint_every=3, log_every=2, data_kwargs={"num_images": 40})  # 5 batches/epoch
    ref = tmp_path / "ref"
    train(_config(ref, **kw))
    run = tmp_path / "run"
    # "killed" after step 5: the last checkpoint is step 3, steps 4 and 5 are lost and redone
    stopped = train(_config(run, **kw, stop_after_steps=5))
    assert not stopped["finished"] and not (run / "model.safetensors").exists()
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 3
    with pytest.raises(ValueError, match="--resume"):
        train(_config(run, **kw))
    with pytest.raises(ValueError, match="lr"):
        train(_config(run, **kw, lr=0.1, resume=True))
    done = train(_config(run, **kw, resume=True))
    assert done["finished"]
    a, b = load_file(ref / "model.safetensors"), load_file(run / "model.safetensors")
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=0, atol=1e-6), k
    # the log holds each logged step once, with the uninterrupted run's values, also for the
    # interval (steps 3-4) the checkpoint cut in two
    la = [json.loads(x) for x in (ref / "log.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lb] == [2, 4, 6, 7]
    for key in ("loss", "accuracy", "lr", "eo", "images", "epoch"):
        assert [x[key] for x in lb] == pytest.approx([x[key] for x in la], abs=1e-6), key


def test_configuration_errors(tmp_path):
    with pytest.raises(ValueError, match="groundtruth"):
        TrainConfig(model="vit_tiny_patch16_224", kind="awd")
    with pytest.raises(ValueError, match="unknown kind"):
        TrainConfig(model="vit_tiny_patch16_224", kind="cnn")
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(model="vit_tiny_patch16_224", batch_size=0)
    with pytest.raises(ValueError, match="warm-up"):
        train(_config(tmp_path / "w", warmup_steps=6))
    with pytest.raises(ValueError, match="batch"):
        train(_config(tmp_path / "b", batch_size=64))
    with pytest.raises(ValueError, match="unknown model"):
        train(_config(tmp_path / "m", model="no_such_model_xyz"))
    with pytest.raises(ValueError, match="--kind winft-paper or winft-restrict"):
        train(_config(tmp_path / "k", model="winft_tiny_patch16_224"))
    with pytest.raises(ValueError, match="classes"):
        train(_config(tmp_path / "c", model_kwargs={**TINY, "num_classes": 7}))
    assert not any((tmp_path / name).exists() for name in "wbmkc")  # nothing written on a set-up error


# ---------------------------------------------------------------------------------------------- with fields

FIELDS_TINY = {"patch_size": 4, "embed_dim": 16, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0, "img_size": 16}


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    """Fields of 64 synthetic images from a random tiny ViT (4x4 grid), built with `patchfield groundtruth`."""
    from patchfield.cli import main

    out = tmp_path_factory.mktemp("gt") / "store"
    with single_thread():
        assert main(["groundtruth", "--model", "vit_tiny_patch16_224", "--model-kwargs", json.dumps(FIELDS_TINY),
                     "--num-classes", "4", "--random-weights", "--data", "synthetic", "--data-kwargs",
                     '{"num_images": 64}', "--alpha", "0.2", "--beta", "0.25", "--out", str(out),
                     "--no-progress"]) == 0
    return out


def test_sigkill_and_resume_with_fields_and_workers(tmp_path, small_store, one_thread):
    """A WinfT run killed with SIGKILL (loader in a worker process) and resumed ends like an uninterrupted one."""
    from patchfield.cli import main

    args = ["train", "--model", "vit_tiny_patch16_224", "--model-kwargs", json.dumps(FIELDS_TINY), "--kind",
            "winft-paper", "--groundtruth", str(small_store), "--data-kwargs", '{"num_images": 64}', "--steps", "150",
            "--batch-size", "8", "--warmup-steps", "5", "--checkpoint-every", "10", "--log-every", "10",
            "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "ref")]) == 0  # uninterrupted, no worker processes
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, "-m", "patchfield", *args[:], "--workers", "1", "--out", str(run)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while not (run / "checkpoint.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.kill()
    finally:
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == -9, err.decode()[-2000:]  # killed, not finished
    assert not (run / "model.safetensors").exists()
    killed_at = torch.load(run / "checkpoint.pt", weights_only=True)["step"]
    assert 10 <= killed_at < 150
    assert main([*args, "--workers", "1", "--resume", "--out", str(run)]) == 0
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # no temporary file survives
    a, b = load_file(tmp_path / "ref" / "model.safetensors"), load_file(run / "model.safetensors")
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=0, atol=1e-6), k
    la = [json.loads(x) for x in (tmp_path / "ref" / "log.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lb] == list(range(10, 151, 10))
    assert [x["bce"] for x in lb] == pytest.approx([x["bce"] for x in la], abs=1e-6)


@pytest.mark.parametrize("kind", ["awd", "awd-dip"])
def test_awd_masks_from_the_store(kind, small_store):
    """The AWD kinds get the windows (awd) or the fields S_p (awd-dip) the store encodes, per image index."""
    from patchfield.data import build_dataset
    from patchfield.encoding import decode_field
    from patchfield.groundtruth import GroundTruthStore
    from patchfield.training.data import make_loader
    from patchfield.training.sources import attach_fields

    store = GroundTruthStore(small_store)
    ds = build_dataset("synthetic", "train", 16, num_images=64, mean=(0.5,) * 3, std=(0.5,) * 3)
    wrapped, _ = attach_fields(ds, small_store, store.grid, dip=kind == "awd-dip")
    loader = make_loader(wrapped, 8, seed=3, start=5, stop=7)
    keys = list(loader.batch_sampler)
    for batch, batch_keys in zip(loader, keys):
        images, labels, mask, dropped = batch
        for j, (_, i) in enumerate(batch_keys):
            field = decode_field(store.codes(i))
            want = field.mask()[0] if kind == "awd-dip" else field.windows.mask()[0]
            want_d = field.dropped[0] if kind == "awd-dip" else torch.zeros_like(field.dropped[0])  # AWD: no D
            assert torch.equal(mask[j], want) and torch.equal(dropped[j], want_d)
            assert torch.equal(images[j], ds[i][0]) and int(labels[j]) == ds.label(i)
    other = build_dataset("synthetic", "train", 16, num_images=64, seed=1, mean=(0.5,) * 3, std=(0.5,) * 3)
    with pytest.raises(ValueError, match="fingerprint"):
        attach_fields(other, small_store, store.grid)
    from patchfield.grid import Grid

    with pytest.raises(ValueError, match="grid"):
        attach_fields(ds, small_store, Grid(2, 2))
    augmented = build_dataset("synthetic", "train", 16, num_images=64, mean=(0.5,) * 3, std=(0.5,) * 3)
    augmented.preprocess = SimpleNamespace(augment=True)  # what the folder data sets carry
    with pytest.raises(ValueError, match="augment"):
        attach_fields(augmented, small_store, store.grid)


def test_torchrun_two_processes(tmp_path, small_store, one_thread):
    """WinfT on 2 processes (gloo) of 4 images each ends where 1 process with batches of 8 ends."""
    from patchfield.cli import main

    args = ["train", "--model", "vit_tiny_patch16_224", "--model-kwargs", json.dumps(FIELDS_TINY), "--kind",
            "winft-paper", "--groundtruth", str(small_store), "--data-kwargs", '{"num_images": 64}', "--steps", "4",
            "--warmup-steps", "1", "--log-every", "1", "--checkpoint-every", "2", "--no-progress"]
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "patchfield", *args, "--batch-size", "4", "--out", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "log.jsonl", "model.safetensors", "run.json"]
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 4 and ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2
    lines = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4]  # rank 0 alone writes
    assert all(x["images"] == 8 for x in lines)  # 4 images on each of 2 processes per step
    # the two processes split each global batch of 8: the same images one process sees in batches of 8
    assert main([*args, "--batch-size", "8", "--out", str(tmp_path / "one")]) == 0
    a, b = load_file(out / "model.safetensors"), load_file(tmp_path / "one" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k
    one = [json.loads(x) for x in (tmp_path / "one" / "log.jsonl").read_text().splitlines()]
    assert [x["loss"] for x in lines] == pytest.approx([x["loss"] for x in one], abs=1e-5)


def test_bf16_autocast_path(tmp_path, small_store, one_thread):
    """The mixed-precision path (bf16 autocast, on by default on GPUs) runs here on the CPU and agrees with fp32."""
    logs = {}
    for amp in (False, True):
        out = tmp_path / f"amp{amp}"
        train(TrainConfig(model="vit_tiny_patch16_224", model_kwargs=FIELDS_TINY, kind="winft-paper",
                          groundtruth=str(small_store), data_kwargs={"num_images": 64}, out=str(out), steps=2,
                          batch_size=8, warmup_steps=1, amp=amp, progress=False, log_every=1))
        logs[amp] = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
        assert load_file(out / "model.safetensors")["head.weight"].dtype == torch.float32  # weights stay fp32
    first32, first16 = logs[False][0], logs[True][0]
    assert first16["ce"] == pytest.approx(first32["ce"], abs=0.03)
    assert first16["bce"] == pytest.approx(first32["bce"], abs=0.03)


def test_paper_defaults_and_recipes(monkeypatch):
    from patchfield.cli import build_parser
    from patchfield.cli.train import config_from_args

    def cfg(*extra):
        return config_from_args(build_parser().parse_args(["train", "--model", "m", "--out", "o", *extra]))

    d = cfg()
    assert (d.lr, d.momentum, d.warmup_steps, d.epochs, d.steps, d.accum_steps) == (0.01, 0.9, 500, 15.0, None, 1)
    assert (d.lambda_ce, d.lambda_bce, d.kind, d.min_lr, d.optimizer) == (1.0, 1.0, VIT, 0.0, "sgd")
    assert cfg("--optimizer", "adamw").optimizer == "adamw"
    assert cfg("--recipe", "cub", "--optimizer", "adamw").optimizer == "adamw"
    assert TrainConfig(model="m").to_dict() == {**d.to_dict(), "model": "m", "out": "run"}
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    imagenet = cfg("--recipe", "imagenet", "--batch-size", "32")
    assert (imagenet.batch_size, imagenet.accum_steps, imagenet.epochs, imagenet.lr) == (32, 16, 15.0, 0.01)
    monkeypatch.setenv("WORLD_SIZE", "8")  # under torchrun: 32 x 2 x 8 = 512
    assert cfg("--recipe", "imagenet", "--batch-size", "32").accum_steps == 2
    monkeypatch.delenv("WORLD_SIZE")
    cub = cfg("--recipe", "cub")
    assert (cub.image_size, cub.batch_size, cub.lr, cub.steps, cub.accum_steps) == (448, 16, 0.03, 20000, 1)
    mine = cfg("--recipe", "cub", "--lr", "0.1", "--epochs", "2", "--accum-steps", "3")
    assert (mine.lr, mine.steps, mine.epochs, mine.accum_steps, mine.batch_size) == (0.1, None, 2.0, 3, 16)
    with pytest.raises(ValueError, match="multiple"):
        cfg("--recipe", "imagenet", "--batch-size", "48")


def test_epochs_set_the_run_length(tmp_path, one_thread):
    # 48 images in batches of 8: 6 micro-batches an epoch; 1.5 epochs with 2 micro-batches a step: 4 steps
    result = train(_config(tmp_path / "e", steps=None, epochs=1.5, accum_steps=2, warmup_steps=1))
    assert result["step"] == 4
    lines = [json.loads(x) for x in (tmp_path / "e" / "log.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == pytest.approx([2 / 6, 4 / 6, 1.0, 8 / 6], abs=1e-4)


def test_torchrun_evaluate_equals_one_process(tmp_path, small_store, one_thread):
    """`patchfield evaluate` of an AWD+DIP run on 2 processes gives the one-process numbers (one report)."""
    from patchfield.cli import main

    run = tmp_path / "run"
    assert main(["train", "--model", "vit_tiny_patch16_224", "--model-kwargs", json.dumps(FIELDS_TINY), "--kind",
                 "awd-dip", "--groundtruth", str(small_store), "--data-kwargs", '{"num_images": 64}', "--steps", "2",
                 "--warmup-steps", "1", "--batch-size", "8", "--out", str(run), "--no-progress"]) == 0
    args = [str(run), "--split", "train", "--data-kwargs", '{"num_images": 64}', "--groundtruth", str(small_store),
            "--batch-size", "5", "--no-progress"]
    assert main(["evaluate", *args, "--out", str(tmp_path / "one.json")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "patchfield", "evaluate", *args, "--out", str(tmp_path / "two.json")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count('"top1"') == 1  # rank 0 alone reports
    one, two = json.loads((tmp_path / "one.json").read_text()), json.loads((tmp_path / "two.json").read_text())
    assert one["processes"] == 1 and two["processes"] == 2 and two["num_images"] == 64
    for key in ("top1", "top5", "eo"):
        assert two[key] == pytest.approx(one[key], abs=1e-9), key
    from patchfield.groundtruth import GroundTruthStore

    assert one["eo"] == pytest.approx(float(GroundTruthStore(small_store).interactions.mean()), abs=1e-9)


def test_starting_weights_with_another_head_and_size(tmp_path, caplog):
    """Fine-tuning weights: the backbone is kept, a head of another size is re-initialised, positions resampled."""
    from safetensors.torch import save_file

    from patchfield.training import build_model

    torch.manual_seed(0)
    source = build_model("vit_tiny_patch16_224", "vit", num_classes=5, model_kwargs=TINY)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "w.safetensors"))
    same = build_model("vit_tiny_patch16_224", "awd", num_classes=5, model_kwargs=TINY,
                       weights=tmp_path / "w.safetensors")
    for k, v in source.state_dict().items():
        assert torch.equal(same.state_dict()[k], v), k
    other = build_model("vit_tiny_patch16_224", "winft-paper", num_classes=3, model_kwargs=TINY,
                        weights=tmp_path / "w.safetensors")
    assert "classifier head of another size" in caplog.text
    assert other.head.weight.shape == (3, 16)
    assert torch.equal(other.blocks[1].mlp.fc2.weight, source.blocks[1].mlp.fc2.weight)
    bigger = build_model("vit_tiny_patch16_224", "vit", num_classes=5, image_size=32, model_kwargs=TINY,
                         weights=tmp_path / "w.safetensors")
    assert bigger.pos_embed.shape[1] == 1 + 16 and torch.equal(bigger.cls_token, source.cls_token)
    torch.save({"state_dict": {"blocks.0.norm1.weight": torch.ones(3)}}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="do not fit"):
        build_model("vit_tiny_patch16_224", "vit", num_classes=5, model_kwargs=TINY, weights=tmp_path / "bad.pth")


def test_logged_time_sums_the_log_and_passes_over_cut_lines(tmp_path):
    """A run's training time from its log: images / images_per_s summed, the last step; a line cut short by a kill
    (or anything that is not a record) does not count."""
    from patchfield.training.loop import logged_time

    log = tmp_path / "log.jsonl"
    assert logged_time(log) == (0.0, 0)
    lines = [json.dumps({"step": 10, "images": 1280, "images_per_s": 128.0}),
             json.dumps({"step": 20, "images": 1280, "images_per_s": 64.0}),
             "[1, 2]", json.dumps({"step": "30", "images": 1, "images_per_s": 1.0}), '{"step": 30, "ima']
    log.write_text("\n".join(lines))
    assert logged_time(log) == (pytest.approx(10.0 + 20.0), 20)
