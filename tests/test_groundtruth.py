"""Ground-truth store: content, mismatch errors, unreadable images, kill-and-resume, torchrun (gloo)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import single_thread
from fixtures_data import TINY_VIT_KWARGS, save_tiny_vit, tiny_vit_cli_args, write_image_folder
from torch.utils.data import DataLoader

from patchfield import analyze, encode_field, load_model
from patchfield.data import ImageFolderDataset, SyntheticShapes, collate_skip
from patchfield.groundtruth import GroundTruthStore, StoreMismatchError, WithFields, build_groundtruth, read_shard
from patchfield.introspect import input_spec as model_input_spec

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    env.pop("WORLD_SIZE", None)
    return env


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    return save_tiny_vit(path), path


def test_store_equals_direct_analysis(tiny, tmp_path):
    model, _ = tiny
    ds = SyntheticShapes(50, image_size=32, num_classes=4, seed=5)
    store = build_groundtruth(model, ds, tmp_path / "gt", alpha=0.1, beta=0.2, batch_size=16, shard_size=20,
                              progress=False)
    assert len(store) == 50 and store.grid.height == 4 and store.grid.width == 4
    assert (store.alpha, store.beta) == (0.1, 0.2) and store.fingerprint == ds.fingerprint()
    assert [s["file"] for s in store.manifest["shards"]] == ["shard-00000.npz", "shard-00001.npz", "shard-00002.npz"]
    # reference: analyze + encode_field of the same images, batch by batch within each shard
    for start, stop in ((0, 16), (16, 20), (20, 36), (36, 40), (40, 50)):
        images, labels = ds.batch(range(start, stop))
        res = analyze(model, images, 0.1, 0.2)
        ref = encode_field(res.field)
        code = store.codes(range(start, stop))
        assert np.array_equal(code.bounds, ref.bounds) and np.array_equal(code.dropped, ref.dropped)
        assert np.array_equal(store.interactions[start:stop], res.interactions().numpy())
        assert np.array_equal(store.window_interactions[start:stop], res.windows.interactions().numpy())
        assert np.array_equal(store.predicted[start:stop], res.logits.argmax(-1).numpy())
        assert np.array_equal(store.labels[start:stop], labels.numpy())
        # the wrapper decodes exactly the analysed fields (masks, D)
        wrapped = WithFields(ds, store)
        for j, i in enumerate(range(start, stop)):
            x, y, mask, dropped = wrapped[i]
            assert torch.equal(x, images[j]) and y == int(labels[j])
            assert torch.equal(mask, res.field.mask()[j]) and torch.equal(dropped, res.dropped[j])
        x, y, mask, dropped = WithFields(ds, store, dip=False)[start]
        assert torch.equal(mask, res.windows.mask()[0]) and not dropped.any()
    assert store.valid.all() and store.manifest["failed"] == []
    assert store.expected_interactions() == pytest.approx(store.interactions.mean())
    assert store.manifest["expected_interactions"] == pytest.approx(store.interactions.mean())
    # batched wrapper path (DataLoader uses __getitems__) equals the per-item path
    x, y, mask, dropped = next(iter(DataLoader(WithFields(ds, store), batch_size=7, collate_fn=collate_skip)))
    assert mask.shape == (7, 16, 16) and mask.dtype == torch.bool and dropped.shape == (7, 16)
    assert torch.equal(mask[3], WithFields(ds, store)[3][2])


def test_store_mismatch_errors(tiny, tmp_path):
    model, _ = tiny
    ds = SyntheticShapes(12, image_size=32, seed=1)
    store = build_groundtruth(model, ds, tmp_path / "gt", 0.1, 0.0, batch_size=8, shard_size=8, progress=False)
    with pytest.raises(StoreMismatchError, match="holds 12 images but the data set has 13"):
        WithFields(SyntheticShapes(13, image_size=32, seed=1), store)
    with pytest.raises(StoreMismatchError, match="another data set"):
        store.check_dataset(SyntheticShapes(12, image_size=32, seed=2))
    from timm.models.vision_transformer import VisionTransformer

    other = VisionTransformer(img_size=32, patch_size=4, embed_dim=32, depth=1, num_heads=2, num_classes=4)
    with pytest.raises(StoreMismatchError, match="4x4 patch grid but the model's grid is 8x8"):
        store.check_model(other)
    store.check_model(model)
    # the same folder with other settings is refused, with the same settings it is returned as is
    with pytest.raises(ValueError, match="other settings"):
        build_groundtruth(model, ds, tmp_path / "gt", 0.2, 0.0, batch_size=8, shard_size=8, progress=False)
    again = build_groundtruth(model, ds, tmp_path / "gt", 0.1, 0.0, batch_size=8, shard_size=8, progress=False)
    assert np.array_equal(again.codes(slice(None)).bounds, store.codes(slice(None)).bounds)
    # an unfinished store (shards without manifest) is refused with a resume hint; a shard of other settings too
    (tmp_path / "gt" / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match="resume"):
        GroundTruthStore(tmp_path / "gt")
    with pytest.raises(ValueError, match="other settings"):
        build_groundtruth(model, ds, tmp_path / "gt", 0.1, 0.3, batch_size=8, shard_size=8, progress=False)
    # a damaged shard is not trusted: it is recomputed on resume, to the same content
    (tmp_path / "gt" / "shard-00001.npz").write_bytes(b"PK\x03\x04 damaged")
    again = build_groundtruth(model, ds, tmp_path / "gt", 0.1, 0.0, batch_size=8, shard_size=8, progress=False)
    assert np.array_equal(again.codes(slice(None)).bounds, store.codes(slice(None)).bounds)
    with pytest.raises(ValueError, match="alpha"):
        build_groundtruth(model, ds, tmp_path / "x", 0.0, 0.1)


def test_unreadable_images_are_recorded_invalid(tiny, tmp_path, caplog):
    model, _ = tiny
    files = write_image_folder(tmp_path / "imgs", per_class=2, size=(40, 36), truncated=True)
    spec = model_input_spec(model)
    ds = ImageFolderDataset(tmp_path / "imgs", 32, spec["mean"], spec["std"])
    bad = [rel for rel, _ in ds.samples].index(files["truncated"][0])
    store = build_groundtruth(model, ds, tmp_path / "gt", 0.1, 0.2, batch_size=4, shard_size=4, num_workers=0,
                              progress=False)
    assert store.manifest["failed"] == [bad] and files["truncated"][0] in store.manifest["failed_files"][0]
    assert "recorded as invalid" in caplog.text and "truncated.jpg" in caplog.text
    assert store.valid.sum() == len(ds) - 1 and not store.valid[bad]
    wrapped = WithFields(ds, store)
    assert wrapped[bad] is None
    seen = sum(len(b[1]) for b in DataLoader(wrapped, batch_size=3, collate_fn=collate_skip) if b is not None)
    assert seen == len(files["good"])
    # the readable images' fields are those of a direct analysis
    good = [i for i in range(len(ds)) if i != bad][:3]
    res = analyze(model, torch.stack([ds[i][0] for i in good]), 0.1, 0.2)
    assert np.array_equal(store.codes(good).bounds, encode_field(res.field).bounds)


# ------------------------------------------------------------------ CLI: kill-and-resume, torchrun


def _cli(weights: Path, out: Path, n: int) -> list[str]:
    return [*tiny_vit_cli_args(weights, img_size=64), "--data", "synthetic",
            "--data-kwargs", json.dumps({"num_images": n}), "--alpha", "0.1", "--beta", "0.2",
            "--out", str(out), "--batch-size", "16", "--shard-size", "32", "--workers", "1", "--no-progress"]


def _store_arrays(path: Path) -> dict[str, np.ndarray]:
    shards = sorted(path.glob("shard-*.npz"))
    out: dict[str, np.ndarray] = {}
    for key in ("bounds", "dropped", "interactions", "window_interactions", "labels", "predicted", "valid"):
        out[key] = np.concatenate([read_shard(s)[0][key] for s in shards])
    return out


def _assert_same_store(a: Path, b: Path) -> None:
    ma, mb = (json.loads((p / "manifest.json").read_text()) for p in (a, b))
    ma.pop("created"), mb.pop("created")
    assert ma == mb
    xa, xb = _store_arrays(a), _store_arrays(b)
    for key in xa:
        assert np.array_equal(xa[key], xb[key]), key


N_CLI = 512


@pytest.fixture(scope="module")
def reference_store(tmp_path_factory):
    """An uninterrupted one-process run (in this process, one thread like the CLI runs; 64x64 images, 8x8 grid)."""
    weights = tmp_path_factory.mktemp("model64") / "tiny64.safetensors"
    save_tiny_vit(weights, img_size=64)
    # the model as the CLI loads it (timm name + kwargs), normalising with that architecture's statistics
    model = load_model("vit_base_patch16_224", weights, **{**TINY_VIT_KWARGS, "img_size": 64})
    spec = model_input_spec(model)
    ds = SyntheticShapes(N_CLI, image_size=64, num_classes=4, split="train", mean=spec["mean"], std=spec["std"])
    out = tmp_path_factory.mktemp("gt") / "ref"
    with single_thread():
        build_groundtruth(model, ds, out, 0.1, 0.2, batch_size=16, shard_size=32, progress=False,
                          model_name="vit_base_patch16_224", dataset_name="synthetic")
    return weights, out


def test_cli_kill_and_resume_equals_uninterrupted(reference_store, tmp_path):
    weights, ref = reference_store
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "patchfield", "groundtruth", *_cli(weights, out, N_CLI)]
    log = tmp_path / "killed.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 90
        while not (out / "shard-00000.npz").exists():
            assert proc.poll() is None, f"the run ended before its first shard was seen: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    finished = sorted(p.name for p in out.glob("shard-*.npz"))
    assert not (out / "manifest.json").exists() and 1 <= len(finished) < N_CLI // 32, finished
    with pytest.raises(FileNotFoundError, match="resume"):
        GroundTruthStore(out)
    stamps = {name: (out / name).stat().st_mtime_ns for name in finished}
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ground truth of 512 image(s)" in done.stdout
    assert {name: (out / name).stat().st_mtime_ns for name in finished} == stamps  # finished shards not redone
    assert not list(out.glob(".*tmp*"))  # no temporary file left behind
    _assert_same_store(out, ref)


def test_torchrun_two_processes_equals_one(reference_store, tmp_path):
    weights, ref = reference_store
    out = tmp_path / "dist"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "patchfield", "groundtruth", *_cli(weights, out, N_CLI)]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("ground truth of 512 image(s)") == 1  # rank 0 reports once
    _assert_same_store(out, ref)
