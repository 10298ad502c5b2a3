"""Run folders: one low module (patchfield.runs) read by loading and training; no import cycle."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from patchfield.runs import MODEL_FILE, RUN_FILE, RUN_FORMAT, is_run_directory, read_run_info


def test_loading_does_not_import_training():
    code = ("import sys, patchfield.loading, patchfield.runs; "
            "print(sorted(m for m in sys.modules if m.startswith('patchfield.training')))")
    src = str(Path(__file__).resolve().parents[1] / "src")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": src, "PATH": ""})
    assert out.stdout.strip() == "[]"


def test_public_names_keep_working():
    from patchfield import loading, training
    from patchfield.training import build, checkpoint

    assert training.load_run is loading.load_run is checkpoint.load_run
    assert training.build_model is loading.build_model is build.build_model
    assert training.read_run_info is read_run_info
    assert (checkpoint.RUN_FILE, checkpoint.MODEL_FILE, checkpoint.RUN_FORMAT) == (RUN_FILE, MODEL_FILE, RUN_FORMAT)


def test_read_run_info(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a finished run"):
        read_run_info(tmp_path)
    (tmp_path / MODEL_FILE).write_bytes(b"")
    (tmp_path / RUN_FILE).write_text("{")
    assert is_run_directory(tmp_path)
    with pytest.raises(ValueError, match="not valid JSON"):
        read_run_info(tmp_path)
    (tmp_path / RUN_FILE).write_text(json.dumps({"format": "other/1"}))
    with pytest.raises(ValueError, match="not a patchfield run description"):
        read_run_info(tmp_path)
    (tmp_path / RUN_FILE).write_text(json.dumps({"format": RUN_FORMAT, "kind": "vit"}))
    assert read_run_info(tmp_path) == {"format": RUN_FORMAT, "kind": "vit"}
