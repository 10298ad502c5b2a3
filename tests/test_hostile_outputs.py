"""Where outputs go and what a count may cost (issue 20, items 7, 9, 11, 12): per-image folders stay inside
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
    from patchfield.study.reproduce import QUICK, STUDY_FILE, StudyConfig, _all_seeds, config_with, study_rows

    out = tmp_path / "study"
    out.mkdir()
    quick = config_with(QUICK, out=str(out))
    (out / STUDY_FILE).write_text(json.dumps(asdict(quick)))
    planned = sum(len(study_rows(quick, "synthetic", s)) for s in _all_seeds(quick))
    full = sum(len(study_rows(StudyConfig(), "synthetic", s)) for s in _all_seeds(StudyConfig()))
    assert planned != full
    assert main(["reproduce", "--out", str(out), "--status"]) == 0  # no --quick: the folder says what it is
    said = capsys.readouterr().out
    assert f"synthetic: 0 of {planned} runs done" in said and "fashion-mnist" not in said
