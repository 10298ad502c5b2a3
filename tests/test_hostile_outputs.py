"""Where outputs go and what a count may cost: per-image folders stay inside
--out, stats labels never collide, random-weights controls live one at a time, --status reads a study's own plan."""

from __future__ import annotations

import gc
import json
import weakref
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_vit
from PIL import Image

from patchfield.cli import main
from patchfield.training import export_run

KW = {"patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0}


def _png(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path, "PNG")
    return path


def _run(folder: Path) -> Path:
    export_run(folder, tiny_vit(), {"model": "vit_tiny_patch16_224", "kind": "vit", "model_kwargs": KW,
                                    "num_classes": 5, "image_size": 32})
    return folder


def test_every_image_folder_is_a_safe_name_inside_out(tmp_path, one_thread):
    from patchfield.cli.analyze import _unique_names

    names = _unique_names([Path("...png"), Path("a.png"), Path(".png"), Path("d/..png"), Path("s/.hidden.png")])
    assert names == ["image", "a", "png", "d__.", "hidden"]
    assert all(n not in (".", "..") and not n.startswith(".") and "/" not in n for n in names)
    images = [_png(tmp_path / "in" / "...png", 1), _png(tmp_path / "in" / "..png", 2)]
    run, out = _run(tmp_path / "vit"), tmp_path / "work" / "out"
    assert main(["analyze", *map(str, images), "--model", str(run), "--out", str(out)]) == 0
    made = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("fields.json"))
    assert made == ["work/out/png@0/fields.json", "work/out/png@1/fields.json"]  # "image" twice, then "png" twice
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["out"]  # nothing beside --out
    record = json.loads((out / "png@0" / "fields.json").read_text())
    assert record["image"] == str(images[0]) and (out / "png@0" / "windows.png").is_file()


def test_stats_labels_never_collide(tmp_path, one_thread):
    from patchfield.cli.stats import _labels

    assert _labels(["runs/tiny", "runs/tiny", "runs2/tiny_2"]) == ["tiny", "tiny_2", "tiny_2_2"]
    assert _labels([".", "..", "stats.json", "a/"]) == ["model", "model_2", "stats.json_2", "a"]
    a, b = _run(tmp_path / "runs" / "tiny"), _run(tmp_path / "runs2" / "tiny_2")
    photo = _png(tmp_path / "p.png")
    out = tmp_path / "out"
    assert main(["stats", str(photo), "--model", str(a), "--model", str(a), "--model", str(b), "--out", str(out)]) == 0
    models = json.loads((out / "stats.json").read_text())["models"]
    assert [m["label"] for m in models] == ["tiny", "tiny_2", "tiny_2_2"]
    for m in models:  # each model's figures in its own folder
        assert all(Path(f).parent == out / m["label"] for f in m["figures"].values())


def test_random_controls_are_built_one_at_a_time(monkeypatch, one_thread):
    import patchfield.claims.run as claims_run
    from patchfield.data.registry import build_mask_dataset

    made: list[weakref.ref] = []
    original = claims_run.random_copy

    def tracked(model, seed):
        gc.collect()
        assert all(r() is None for r in made), "an earlier control is still alive"
        control = original(model, seed)
        made.append(weakref.ref(control))
        return control

    model = tiny_vit()
    ds = build_mask_dataset("synthetic", "val", 32, num_images=6)
    reference = claims_run.measure_claims(model, ds, [0.1], [0.2], random_inits=3, batch_size=4)
    monkeypatch.setattr(claims_run, "random_copy", tracked)
    report = claims_run.measure_claims(model, ds, [0.1], [0.2], random_inits=3, batch_size=4)
    assert len(made) == 3 and report.to_json() == reference.to_json()
    with pytest.raises(ValueError, match="at most 100"):
        claims_run.measure_claims(model, ds, [0.1], [0.2], random_inits=101)


def test_status_reads_the_studys_own_plan(tmp_path, capsys):
    from patchfield.study.config import QUICK, StudyConfig, all_seeds, config_with, study_rows
    from patchfield.study.reproduce import STUDY_FILE

    out = tmp_path / "study"
    out.mkdir()
    quick = config_with(QUICK, out=str(out))
    (out / STUDY_FILE).write_text(json.dumps(asdict(quick)))
    planned = sum(len(study_rows(quick, "synthetic", s)) for s in all_seeds(quick))
    full = sum(len(study_rows(StudyConfig(), "synthetic", s)) for s in all_seeds(StudyConfig()))
    assert planned != full
    assert main(["reproduce", "--out", str(out), "--status"]) == 0  # no --quick: the folder says what it is
    said = capsys.readouterr().out
    assert f"synthetic: 0 of {planned} runs done" in said and "fashion-mnist" not in said


def test_an_output_folder_is_wholly_from_one_run_or_says_it_is_not(tmp_path, monkeypatch, capsys, one_thread):
    """Issue 20, item 8: a rerun clears the previous run's files first; a run that fails (or is killed) leaves
    outputs.json saying "complete": false, and the next run clears what it wrote."""
    import patchfield.cli.stats as stats_cli

    run, photo, out = _run(tmp_path / "vit"), _png(tmp_path / "p.png"), tmp_path / "out"
    (out / "notes.txt").parent.mkdir()
    (out / "notes.txt").write_text("mine")  # not written by patchfield: left alone
    assert main(["stats", str(photo), "--model", str(run), "--beta", "0.2", "--out", str(out)]) == 0
    first = json.loads((out / "outputs.json").read_text())
    assert first["complete"] and first["command"] == "stats"
    assert first["files"] == ["stats.json", "vit/entropy.png", "vit/mean_distance.png", "vit/p/artefacts.png",
                              "vit/p/norm_histogram.png"]
    real = stats_cli.write_json_atomic

    def full_disk(path, data, **kw):
        raise OSError(28, f"No space left on device while writing {path}")

    monkeypatch.setattr(stats_cli, "write_json_atomic", full_disk)  # the second run dies before its stats.json
    assert main(["stats", str(photo), "--model", str(run), "--beta", "0.5", "--out", str(out)]) == 1
    record = json.loads((out / "outputs.json").read_text())
    assert record["complete"] is False and "files" not in record
    assert not (out / "stats.json").exists()  # the first run's stats.json is not left beside the new figures
    assert (out / "vit" / "entropy.png").is_file() and (out / "notes.txt").read_text() == "mine"
    monkeypatch.setattr(stats_cli, "write_json_atomic", real)
    assert main(["stats", str(photo), "--model", str(run), "--beta", "0.5", "--no-figures", "--out", str(out)]) == 0
    assert json.loads((out / "outputs.json").read_text())["files"] == ["stats.json"]
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "outputs.json", "stats.json"]  # the failed run's
    assert json.loads((out / "stats.json").read_text())["models"][0]["beta"] == 0.5  # figures are gone too


def test_claims_that_cannot_write_claims_json_say_so(tmp_path, monkeypatch, one_thread):
    import patchfield.claims.report as report_mod

    argv = ["claims", "--model", str(_run(tmp_path / "vit")), "--data", "synthetic", "--limit", "4",
            "--random-inits", "1", "--no-progress", "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    real = report_mod.write_json_atomic

    def refuse(path, data, **kw):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(report_mod, "write_json_atomic", refuse)
    assert main([*argv[:-1], str(tmp_path / "out")]) == 1
    record = json.loads((tmp_path / "out" / "outputs.json").read_text())
    assert record["complete"] is False and not (tmp_path / "out" / "claims.json").exists()
    monkeypatch.setattr(report_mod, "write_json_atomic", real)


def test_a_forged_outputs_record_deletes_nothing_outside_the_folder(tmp_path):
    from patchfield.utils.io import one_run_outputs, write_json_atomic

    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (out / "link").symlink_to(tmp_path, target_is_directory=True)
    (out / "outputs.json").write_text(json.dumps({"files": ["../victim.txt", str(victim), "link/victim.txt"]}))
    with one_run_outputs(out, "test"):
        write_json_atomic(out / "sub" / "a.json", {"x": 1})
    assert victim.read_text() == "keep"
    record = json.loads((out / "outputs.json").read_text())
    assert record["complete"] and record["files"] == ["sub/a.json"] and not (out / ".outputs.journal").exists()
