"""Files that cannot be silently corrupted, and one line instead of a traceback, item by item."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_hf_vit, tiny_vit
from PIL import Image
from safetensors.torch import save_file

from patchfield.cli import main
from patchfield.errors import InputError, exit_code, one_line
from patchfield.utils.io import atomic_write, remove_stale_temporaries, write_json_atomic
from patchfield.utils.lock import LOCK_FILE, FolderLock, FolderLockedError

SRC = str(Path(__file__).resolve().parents[1] / "src")
#: timm kwargs of conftest.tiny_vit, for the CLI's --model vit_tiny_patch16_224 --model-kwargs
TINY_KW = {"patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0}
TINY_ARGS = ["--model", "vit_tiny_patch16_224", "--model-kwargs", json.dumps(TINY_KW), "--image-size", "32"]


def _test_vit() -> torch.nn.Module:
    """timm's own ``test_vit`` at 64 px (a 4x4 grid of 16 px patches), what the CLI builds from ``TEST_VIT``."""
    import timm

    torch.manual_seed(0)
    return timm.create_model("test_vit", img_size=64, num_classes=3).eval()


TEST_VIT = ["--model", "test_vit", "--image-size", "64"]


def _weights(tmp_path: Path, name: str = "w.safetensors", model: torch.nn.Module | None = None) -> Path:
    path = tmp_path / name
    model = model if model is not None else _test_vit()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def _png(path: Path, size: int = 32, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def _analyze(tmp_path: Path, images: list[Path], out: Path, *extra: str) -> int:
    w = _weights(tmp_path)
    return main(["analyze", *map(str, images), *TEST_VIT, "--weights", str(w), "--no-figures", "--out", str(out),
                 *extra])


def _holder(folder: Path) -> subprocess.Popen:
    """Another process holding ``folder``'s lock until killed."""
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); from patchfield.utils.lock import FolderLock; "
            "FolderLock(sys.argv[2]).acquire(); print('held', flush=True); time.sleep(120)")
    p = subprocess.Popen([sys.executable, "-c", code, SRC, str(folder)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


# ------------------------------------------------------------------------------------------ 1. locks

def test_second_writer_fails_at_once_naming_the_holder(tmp_path, capsys, one_thread):
    out = tmp_path / "out"
    holder = _holder(out)
    try:
        t0 = time.perf_counter()
        code = _analyze(tmp_path, [_png(tmp_path / "a.png")], out)
        err = capsys.readouterr().err
        assert code == 1 and time.perf_counter() - t0 < 30
        assert f"{out} is being written by process {holder.pid}; wait for it or choose another --out" in err
        assert "Traceback" not in err and not (out / "a").exists()
        with pytest.raises(FolderLockedError, match=str(holder.pid)):
            FolderLock(out).acquire()
        # groundtruth locks its store too (and fails before loading anything heavy)
        code = main(["groundtruth", *TINY_ARGS, "--random-weights", "--data", "synthetic", "--data-kwargs",
                     '{"num_images": 4}', "--alpha", "0.1", "--beta", "0.2", "--out", str(out), "--no-progress"])
        assert code == 1 and str(holder.pid) in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()


def test_two_groundtruth_processes_on_one_store_never_mix(tmp_path):
    """Two `groundtruth` runs with different --alpha on one --out, started together."""
    from patchfield.groundtruth import GroundTruthStore

    out = tmp_path / "gt"
    kw = json.dumps({**TINY_KW, "img_size": 16, "embed_dim": 16, "num_classes": 4})

    def start(alpha: str) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "patchfield", "groundtruth", "--model", "vit_tiny_patch16_224", "--model-kwargs",
               kw, "--random-weights", "--data", "synthetic", "--data-kwargs", '{"num_images": 256}', "--alpha",
               alpha, "--beta", "0.2", "--shard-size", "64", "--out", str(out), "--no-progress"]
        env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    a, b = start("0.1"), start("0.3")
    results = [(p.wait(timeout=300), p.communicate()[1]) for p in (a, b)]
    codes = sorted(code for code, _ in results)
    assert codes[0] == 0 and codes[1] in (1, 2), results  # one wins; the other is refused
    loser = next(err for code, err in results if code != 0)
    assert "being written by process" in loser or "other settings" in loser, loser
    assert "Traceback" not in loser
    store = GroundTruthStore(out)  # checks every shard against the manifest
    assert len(store.interactions) == 256 and store.alpha in (0.1, 0.3)


def test_train_run_folder_is_locked(tmp_path):
    from patchfield.training import TrainConfig, train

    out = tmp_path / "run"
    holder = _holder(out)
    try:
        cfg = TrainConfig(model="vit_tiny_patch16_224", model_kwargs={**TINY_KW, "img_size": 16, "embed_dim": 16},
                          data_kwargs={"num_images": 16}, out=str(out), steps=1, batch_size=8, warmup_steps=0,
                          progress=False)
        with pytest.raises(FolderLockedError, match=f"process {holder.pid}"):
            train(cfg)
        assert not (out / "log.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()


def test_stale_lock_of_a_killed_process_is_taken_over_and_reported(tmp_path, caplog):
    out = tmp_path / "out"
    holder = _holder(out)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (out / LOCK_FILE).read_text().strip() == str(holder.pid)  # kill -9 left the file
    with caplog.at_level(logging.WARNING, logger="patchfield.lock"):
        with FolderLock(out) as lock:
            assert lock.stale_pid == str(holder.pid)
            assert (out / LOCK_FILE).read_text().strip() == str(os.getpid())
            with pytest.raises(FolderLockedError):  # one holder at a time, even within a process
                FolderLock(out).acquire()
    assert f"process {holder.pid}" in caplog.text and not (out / LOCK_FILE).exists()


def test_a_lock_that_created_its_folder_removes_it_when_nothing_was_written(tmp_path):
    with FolderLock(tmp_path / "new"):
        pass
    assert not (tmp_path / "new").exists()
    with FolderLock(tmp_path / "kept"):
        (tmp_path / "kept" / "x").write_text("1")
    assert (tmp_path / "kept" / "x").is_file() and not (tmp_path / "kept" / LOCK_FILE).exists()


# ------------------------------------------------------------------------------------------ 2. fingerprints

def _store(tmp_path: Path, model: torch.nn.Module, out: Path, **kw):
    from patchfield.data import SyntheticShapes
    from patchfield.groundtruth import build_groundtruth

    ds = SyntheticShapes(6, image_size=32, seed=0)
    return build_groundtruth(model, ds, out, kw.pop("alpha", 0.1), 0.2, batch_size=3, shard_size=3,
                             progress=False, **kw)


def test_groundtruth_resume_with_other_weights_is_refused(tmp_path, one_thread):
    from patchfield.groundtruth import GroundTruthStore

    out = tmp_path / "gt"
    store = _store(tmp_path, tiny_vit(), out)
    assert store.manifest["weights"] and store.manifest["model_config"]["grid"] == [4, 4]
    (out / "manifest.json").unlink()  # as if killed before the end: shards exist, no manifest
    other = tiny_vit()
    with torch.no_grad():
        other.blocks[0].attn.qkv.weight.add_(0.01)  # same architecture, other weights
    with pytest.raises(ValueError, match="cannot resume.*weights"):
        _store(tmp_path, other, out)
    # the same model resumes
    _store(tmp_path, tiny_vit(), out)
    # a finished store of other weights is refused too, naming what differs
    with pytest.raises(ValueError, match="weights"):
        _store(tmp_path, other, out)
    # the reader checks every shard against the manifest: a shard of another build is found
    from patchfield.groundtruth.store import read_shard, write_shard

    arrays, meta = read_shard(out / "shard-00001.npz")
    write_shard(out / "shard-00001.npz", arrays, {**meta, "weights": "0123456789abcdef"})
    with pytest.raises(ValueError, match="shard-00001.npz.*weights.*mixes two builds"):
        GroundTruthStore(out)


def test_train_resume_with_changed_starting_weights_is_refused(tmp_path, one_thread):
    from patchfield.training import TrainConfig, train

    kw = {**TINY_KW, "img_size": 16, "embed_dim": 16}
    w = tmp_path / "start.safetensors"

    def save(seed: int) -> None:
        torch.manual_seed(seed)
        from timm.models.vision_transformer import VisionTransformer

        m = VisionTransformer(**{**kw, "num_classes": 10})
        save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(w))

    save(0)

    def cfg(**more) -> TrainConfig:
        return TrainConfig(model="vit_tiny_patch16_224", model_kwargs=kw, weights=str(w),
                           data_kwargs={"num_images": 16}, out=str(tmp_path / "run"), steps=3, batch_size=8,
                           warmup_steps=0, checkpoint_every=1, progress=False, **more)

    assert not train(cfg(stop_after_steps=1))["finished"]
    save(1)  # same path, other content
    with pytest.raises(ValueError, match="weights: content"):
        train(cfg(resume=True))
    save(0)
    assert train(cfg(resume=True))["finished"]


# ------------------------------------------------------------------------------------------ 3. colliding names

def test_output_names_are_unique_against_every_stem(tmp_path, one_thread):
    from patchfield.cli.analyze import _unique_names

    assert _unique_names([Path("good.png"), Path("sub/good.png"), Path("good_2.png")]) == ["good", "sub__good",
                                                                                            "good_2"]
    many = [Path(p) for p in ("a/x.png", "b/x.png", "a/x.jpg", "a__x.png", "x@1.png", "x.png", "c/a/x.png")]
    names = _unique_names(many)
    assert len(set(names)) == len(many)
    with pytest.raises(ValueError, match="given twice"):
        _unique_names([Path("a.png"), Path("./a.png")])
    images = [_png(tmp_path / "good.png", seed=1), _png(tmp_path / "sub" / "good.png", seed=2),
              _png(tmp_path / "good_2.png", seed=3)]
    assert _analyze(tmp_path, images, tmp_path / "out") == 0
    written = {json.loads((tmp_path / "out" / n / "fields.json").read_text())["image"] for n in
               ("good", "sub__good", "good_2")}
    assert written == {str(p) for p in images}


# ------------------------------------------------------------------------------------------ 4. numeric options

def test_negative_batch_size_is_refused_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "out"
    assert _analyze(tmp_path, [_png(tmp_path / "a.png")], out, "--batch-size", "-1") == 2
    err = capsys.readouterr().err
    assert err.strip() == "patchfield analyze: error: --batch-size must be a whole number of at least 1, got -1"
    assert not out.exists()


def test_image_size_must_be_a_multiple_of_the_patch_size(tmp_path, capsys):
    w = _weights(tmp_path)
    code = main(["analyze", str(_png(tmp_path / "a.png")), "--model", "test_vit", "--weights", str(w),
                 "--image-size", "72", "--out", str(tmp_path / "o")])
    assert code == 2 and "--image-size 72 is not a multiple of the patch size 16" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ 5. temporary files

def test_atomic_write_never_follows_a_planted_link(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "out" / "a.txt"
    target.parent.mkdir()
    # every name the old scheme would have used, and a few more, point at the victim
    for name in (f".a.txt.tmp{os.getpid()}.txt", ".a.txt.tmp", ".a.txt.tmp.txt"):
        (target.parent / name).symlink_to(victim)
    with atomic_write(target) as tmp:
        assert not tmp.is_symlink() and tmp.stat().st_size == 0
        tmp.write_text("new")
    assert victim.read_text() == "precious" and target.read_text() == "new" and not target.is_symlink()
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)  # an ordinary file's mode, not mkstemp's


def test_stale_temporaries_are_cleaned_on_the_next_run(tmp_path, one_thread):
    run = tmp_path / "run"
    run.mkdir()
    stale = [run / ".model.safetensors.tmpab12cd.safetensors", run / ".checkpoint.pt.tmp99.pt"]
    for p in stale:
        p.write_bytes(b"half")
    (run / "keep.txt").write_text("x")
    with FolderLock(run):  # what train/groundtruth take first
        pass
    assert not any(p.exists() for p in stale) and (run / "keep.txt").is_file()
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    (out / "a" / ".fields.json.tmpxyz.json").write_text("{")
    assert _analyze(tmp_path, [_png(tmp_path / "b.png")], out) == 0
    assert not (out / "a" / ".fields.json.tmpxyz.json").exists()
    assert remove_stale_temporaries(tmp_path / "nowhere") == []


# ---------------------------------------------------------------------------------------- 6. one line, not a traceback

def test_decompression_bomb_is_skipped_by_name(tmp_path, capsys, monkeypatch, one_thread):
    from patchfield.data import ImageFolderDataset

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # bombs: over 4000 pixels
    small = _png(tmp_path / "cls" / "small.png", size=32)
    bomb = _png(tmp_path / "cls" / "bomb.png", size=80)
    out = tmp_path / "out"
    assert _analyze(tmp_path, [bomb, small], out) == 1
    err = capsys.readouterr()
    assert "bomb.png" in err.err and "Traceback" not in err.err and "analysed 1 image(s)" in err.out
    assert (out / "small" / "fields.json").is_file() and not (out / "bomb").exists()
    ds = ImageFolderDataset(tmp_path, image_size=32)
    assert len(ds) == 1 and ds.skipped[0][0].endswith("bomb.png")


def test_oserror_while_writing_is_one_line_and_keeps_what_was_written(tmp_path, capsys, monkeypatch, one_thread):
    import patchfield.utils.io as io_mod

    images = [_png(tmp_path / "a.png", seed=1), _png(tmp_path / "b.png", seed=2)]
    real, calls = os.replace, []

    def full_disk(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(io_mod.os, "replace", full_disk)
    out = tmp_path / "out"
    assert _analyze(tmp_path, images, out) == 1
    err = capsys.readouterr().err
    said = [ln for ln in err.splitlines() if "error:" in ln]  # (the progress bar shares stderr)
    assert len(said) == 1 and "No space left on device while writing" in said[0] and "b/fields.json" in said[0]
    assert "Traceback" not in err
    assert json.loads((out / "a" / "fields.json").read_text())["image"] == str(images[0])
    assert list((out / "b").iterdir()) == []  # no partial file, no temporary
    monkeypatch.setattr(io_mod.os, "replace", real)
    # --out that is a file; a folder that cannot be written
    (tmp_path / "file").write_text("x")
    assert _analyze(tmp_path, images[:1], tmp_path / "file") == 1
    assert "is a file, not a folder" in capsys.readouterr().err

    def denied(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "ro"))

    monkeypatch.setattr(io_mod.tempfile, "mkstemp", denied)
    assert _analyze(tmp_path, images[:1], tmp_path / "ro") == 1
    err = capsys.readouterr().err
    assert "Permission denied" in err and str(tmp_path / "ro") in err and "Traceback" not in err


def test_checkpoint_of_another_width_names_keys_and_shapes(tmp_path):
    from patchfield.loading import load_model

    w = _weights(tmp_path, model=tiny_vit(embed_dim=48))
    shapes = r"31 tensor\(s\) differ in shape: blocks.0.attn.proj.bias \(48,\) in the file vs \(32,\) in the model"
    with pytest.raises(ValueError, match=shapes):
        load_model("vit_tiny_patch16_224", w, img_size=32, **TINY_KW)


def test_corrupt_hugging_face_directory_is_one_clear_error(tmp_path, capsys):
    from patchfield.loading import load_model

    d = tmp_path / "hf"
    tiny_hf_vit().save_pretrained(d)
    (d / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=f"could not read weights from {d}"):
        load_model(str(d))
    # a pickled .bin that weights_only refuses (it would run code)
    (d / "model.safetensors").unlink()
    torch.save({"x": torch.zeros(1), "evil": __import__("argparse").Namespace(a=1)}, d / "pytorch_model.bin")
    with pytest.raises(ValueError, match=f"could not read weights from {d}"):
        load_model(str(d))
    capsys.readouterr()
    code = main(["analyze", str(_png(tmp_path / "a.png")), "--model", str(d), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "could not read weights" in err


def test_groundtruth_accepts_a_run_folder(tmp_path, capsys, one_thread):
    from patchfield.training import TrainConfig, train

    kw = {**TINY_KW, "img_size": 16, "embed_dim": 16}
    run = tmp_path / "run"
    train(TrainConfig(model="vit_tiny_patch16_224", model_kwargs=kw, data_kwargs={"num_images": 16},
                      out=str(run), steps=1, batch_size=8, warmup_steps=0, progress=False))
    code = main(["groundtruth", "--model", str(run), "--data", "synthetic", "--data-kwargs", '{"num_images": 4}',
                 "--alpha", "0.1", "--beta", "0.2", "--out", str(tmp_path / "gt"), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "gt" / "manifest.json").read_text())["num_images"] == 4


def test_only_user_errors_become_one_line(tmp_path, monkeypatch, capsys):
    import patchfield.cli.analyze as analyze_cli

    def bug(args):
        raise TypeError("a bug")

    monkeypatch.setattr(analyze_cli, "run", bug)
    args = ["analyze", "x.png", "--model", "m", "--random-weights", "--out", str(tmp_path / "o")]
    with pytest.raises(TypeError, match="a bug"):  # a bug keeps its traceback
        main(args)

    def mistake(args):
        raise ValueError("first line\nsecond line")

    monkeypatch.setattr(analyze_cli, "run", mistake)
    assert main(args) == 2
    assert capsys.readouterr().err == "patchfield analyze: error: first line; second line\n"
    with pytest.raises(ValueError):
        main(["--debug", *args])
    with pytest.raises(ValueError):
        main([*args, "--debug"])
    monkeypatch.setenv("PATCHFIELD_DEBUG", "1")
    with pytest.raises(ValueError):
        main(args)
    assert exit_code(FolderLockedError("x")) == 1 and exit_code(InputError("x")) == 1
    assert exit_code(FileNotFoundError("x")) == 2 and exit_code(KeyError("x")) is None
    assert one_line(OSError()) == "OSError" and exit_code(MemoryError()) == 1
    assert exit_code(torch.cuda.OutOfMemoryError("CUDA out of memory")) == 1


# ---------------------------------------------------------------------------------------- 7. garbage in, said out loud

def test_nan_weights_are_named_at_load(tmp_path, capsys):
    from patchfield.loading import load_model

    sd = {k: v.clone().contiguous() for k, v in tiny_vit().state_dict().items()}
    sd["blocks.1.mlp.fc1.weight"][0, 0] = float("nan")
    sd["norm.bias"][0] = float("inf")
    save_file(sd, str(tmp_path / "nan.safetensors"))
    with pytest.raises(InputError, match=r"NaN or Inf values in 2 tensor\(s\): blocks.1.mlp.fc1.weight, norm.bias"):
        load_model("vit_tiny_patch16_224", tmp_path / "nan.safetensors", img_size=32, **TINY_KW)
    bad = _test_vit()
    with torch.no_grad():
        bad.blocks[1].mlp.fc1.weight[0, 0] = float("nan")
    code = main(["analyze", str(_png(tmp_path / "a.png")), *TEST_VIT, "--weights", str(_weights(tmp_path, model=bad)),
                 "--out", str(tmp_path / "o")])
    assert code == 1 and "blocks.1.mlp.fc1.weight" in capsys.readouterr().err


def test_no_class_or_ground_truth_from_nan_logits(tmp_path, images, one_thread):
    from patchfield import analyze

    model = tiny_vit()
    with torch.no_grad():
        model.head.bias[0] = float("nan")
    res = analyze(model, images, 0.1, 0.2)
    assert "predicted_class" not in res.to_json(0)
    assert "predicted_class" in analyze(tiny_vit(), images, 0.1, 0.2).to_json(0)
    with pytest.raises(InputError, match="NaN or Inf"):
        _store(tmp_path, model, tmp_path / "gt")


def test_attention_without_information_is_flagged(tmp_path, images, caplog, one_thread):
    from patchfield import analyze

    flat = tiny_vit()
    with torch.no_grad():
        for block in flat.blocks:
            block.attn.qkv.weight.zero_()
            block.attn.qkv.bias.zero_()
    res = analyze(flat, images, 0.1, 0.2)
    assert float(res.U.abs().max()) == 0.0
    assert [res.to_json(i)["degenerate"] for i in range(3)] == [True] * 3
    assert not analyze(tiny_vit(), images, 0.1, 0.2).to_json(0)["degenerate"]
    flat_cli = _test_vit()
    with torch.no_grad():
        for block in flat_cli.blocks:
            block.attn.qkv.weight.zero_()
            block.attn.qkv.bias.zero_()
    w = _weights(tmp_path, "flat.safetensors", flat_cli)
    with caplog.at_level(logging.WARNING, logger="patchfield.analyze"):
        assert main(["analyze", str(_png(tmp_path / "a.png")), str(_png(tmp_path / "b.png")), *TEST_VIT,
                     "--weights", str(w), "--no-figures", "--out", str(tmp_path / "o")]) == 0
    assert caplog.text.count("carries no information") == 2  # once per image
    assert json.loads((tmp_path / "o" / "a" / "fields.json").read_text())["degenerate"] is True


def test_explorer_json_cannot_close_its_script_block():
    from test_explorer import _image, _maps, _payload_of

    from patchfield.explorer import explorer_html

    hostile = "<!--<script>x</script><SCRIPT>"
    page = explorer_html(_maps(4), _image(32), 0, 0.1, 0.2, model_name=hostile)
    block = page.split('id="pf-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in block
    assert _payload_of(page)["model"] == hostile


def test_write_json_atomic_round_trip(tmp_path):
    write_json_atomic(tmp_path / "x.json", {"a": 1})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_evaluate_reports_no_accuracy_from_infinite_logits(tmp_path, capsys, one_thread):
    model = _test_vit()
    with torch.no_grad():
        model.head.weight.fill_(1e37)  # finite weights whose logits overflow to +-Inf
        model.norm.weight.fill_(1e3)
    w = _weights(tmp_path, "overflow.safetensors", model)
    out = tmp_path / "result.json"
    code = main(["evaluate", *TEST_VIT, "--weights", str(w), "--data-kwargs", '{"num_images": 4, "num_classes": 3}',
                 "--no-progress",
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "NaN or Inf" in err and "no accuracy" in err and not out.exists()


def test_atomic_write_gives_an_ordinary_file_mode_even_when_the_writer_recreates_the_file(tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    with atomic_write(tmp_path / "m.bin") as tmp:  # as safetensors' save_file does: a new file of mode 0o600
        tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"x")
        os.close(fd)
    assert (tmp_path / "m.bin").stat().st_mode & 0o777 == 0o666 & ~mask
