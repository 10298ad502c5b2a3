"""Fuzz test of the command line: every subcommand with random combinations of bad values.

Each case must end with exit code 1 or 2, exactly one ``error:`` line on stderr, no traceback, and no
output that looks complete. The cases are drawn from a seeded generator and bounded in number, so the
test takes seconds; they run in-process through :func:`patchfield.cli.main`.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from patchfield.cli import build_parser, main
from patchfield.cli._common import NUMERIC_OPTIONS

CASES_PER_COMMAND = 10
TINY = json.dumps({"patch_size": 8, "embed_dim": 16, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0, "img_size": 16})

#: Bad values by option: each is wrong whatever else the command says.
BAD: dict[str, list[str]] = {
    "--alpha": ["0", "1.5", "-0.1", "nan", "x"],
    "--beta": ["1", "-0.5", "inf"],
    "--betas": ["1.5", "-1"],
    "--batch-size": ["-1", "0", "1.5", "abc"],
    "--shard-size": ["0", "-4096"],
    "--steps": ["0", "-3"],
    "--real-steps": ["0", "-3"],
    "--epochs": ["0", "-1", "nan"],
    "--accum-steps": ["0"],
    "--log-every": ["0"],
    "--stop-after-steps": ["0"],
    "--checkpoint-every": ["-1"],
    "--warmup-steps": ["-1"],
    "--workers": ["-2"],
    "--jobs": ["0"],
    "--seed": ["-1", "4294967296"],
    "--seeds": ["0"],
    "--num-images": ["0", "-5"],
    "--images": ["0"],
    "--image-size": ["0", "-64", "70"],
    "--num-classes": ["0"],
    "--patch": ["-1"],
    "--patches": ["-2"],
    "--synthetic": ["-1"],
    "--fig2-dataset": ["-1"],
    "--lr": ["0", "nan", "-1"],
    "--min-lr": ["-1"],
    "--momentum": ["1", "-0.1"],
    "--weight-decay": ["-0.1"],
    "--lambda-ce": ["-1", "inf"],
    "--lambda-bce": ["-1"],
    "--model-kwargs": ["[1]", "not json"],
    "--data-kwargs": ["[1]", "{"],
    "--weights": ["{tmp}/missing.safetensors", "{tmp}/notweights.txt"],
    "--data": ["no_such_data"],
    "--kind": ["cnn"],
    "--limit": ["0"],
    "--random-inits": ["0", "101"],
    "--crop-pct": ["0", "1.5"],
    "--mean": ["nan", "x"],
    "--std": ["0", "-1"],
    "--interpolation": ["cubic"],
    "--classes": ["0"],
    "--eval-images": ["0"],
    "--block": ["1.5", "x"],
    "--fields-alpha": ["0", "1.5"],
    "--fields-beta": ["1", "-0.1"],
}
#: ``--device`` is parsed by one parser for every subcommand (patchfield.devices); these already use it.
DEVICE_COMMANDS = {"analyze", "claims", "evaluate", "explore", "faithfulness", "figures", "groundtruth", "train"}
BAD_DEVICE = ["nonsense", "cuda:x"]
#: ``--out`` that is an existing file, for the commands whose --out is a folder.
FOLDER_OUT = {"analyze", "faithfulness", "figures", "groundtruth", "train", "reproduce", "demo"}
#: Files that only a finished command writes.
COMPLETE = ("fields.json", "manifest.json", "run.json", "model.safetensors", "faithfulness.json", "figures.json",
            "results.json", "page.html", "result.json", "eval.json")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    import timm

    d = tmp_path_factory.mktemp("fuzz")
    torch.manual_seed(0)
    model = timm.create_model("test_vit", img_size=64, num_classes=3)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(d / "w.safetensors"))
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(d / "a.png")
    (d / "notweights.txt").write_text("x")
    (d / "afile").write_text("x")
    return d


def _bases(d: Path, out: Path) -> dict[str, list[str]]:
    """A command per subcommand that would run (and write into ``out``) without the bad values."""
    vit = ["--model", "test_vit", "--weights", str(d / "w.safetensors"), "--image-size", "64"]
    return {
        "analyze": [str(d / "a.png"), *vit, "--no-figures", "--out", str(out)],
        "explore": [str(d / "a.png"), *vit, "--out", str(out / "page.html")],
        "faithfulness": [str(d / "a.png"), *vit, "--steps", "2", "--out", str(out)],
        "figures": [str(d / "a.png"), *vit, "--out", str(out)],
        "evaluate": [*vit, "--data-kwargs", '{"num_images": 4}', "--no-progress", "--out", str(out / "result.json")],
        "groundtruth": ["--model", "vit_tiny_patch16_224", "--model-kwargs", TINY, "--random-weights", "--data",
                        "synthetic", "--data-kwargs", '{"num_images": 4}', "--alpha", "0.1", "--beta", "0.2",
                        "--out", str(out), "--no-progress"],
        "train": ["--model", "vit_tiny_patch16_224", "--model-kwargs", TINY, "--data-kwargs", '{"num_images": 16}',
                  "--steps", "1", "--batch-size", "8", "--out", str(out), "--no-progress"],
        "reproduce": ["--quick", "--out", str(out), "--doc", str(out / "doc.md")],
        "demo": ["--out", str(out)],
    }


def _generic_base(command: str, out: Path) -> list[str]:
    """For a subcommand without a base above: its required arguments filled with placeholders (only numeric bad
    values are tried on it, which are refused before anything runs)."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    argv: list[str] = []
    for action in sub.choices[command]._actions:
        if not action.required:
            continue
        value = {int: "1", float: "0.5"}.get(action.type, str(out) if action.dest == "out" else "x")
        argv += [value] if not action.option_strings else [action.option_strings[0], value]
    return argv


def _options(command: str) -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {s for a in sub.choices[command]._actions for s in a.option_strings}


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's own errors
        return int(e.code)


def test_every_numeric_option_has_a_rule_and_a_bad_value():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        for action in p._actions:
            if action.type in (int, float):
                assert action.dest in NUMERIC_OPTIONS, f"patchfield {name} {action.option_strings[0]}: no rule"
                assert action.option_strings[0] in BAD or action.option_strings[-1] in BAD


def test_bad_values_end_in_one_line(inputs, tmp_path, capsys, one_thread):
    rng = random.Random(11)
    known = _bases(inputs, tmp_path)
    commands = sorted(next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices)
    numeric = {"--" + dest.replace("_", "-") for dest in NUMERIC_OPTIONS}
    for command in commands:
        allowed = _options(command)
        table = {k: v for k, v in BAD.items() if k in allowed and (command in known or k in numeric)}
        if command in DEVICE_COMMANDS:
            table["--device"] = BAD_DEVICE
        if command in FOLDER_OUT:
            table["--out"] = ["{tmp}/afile"]
        for case in range(CASES_PER_COMMAND):
            out = tmp_path / f"{command}{case}"
            argv = _bases(inputs, out)[command] if command in known else _generic_base(command, out)
            picked = rng.sample(sorted(table), k=min(len(table), rng.randint(1, 3)))
            bad = []
            for option in picked:
                value = rng.choice(table[option]).replace("{tmp}", str(inputs))
                if option == "--out":
                    argv = argv[: argv.index("--out")] + argv[argv.index("--out") + 2:]
                bad += [option, value]
            full = [command, *argv, *bad]
            capsys.readouterr()
            code = _run(full)
            err = capsys.readouterr().err
            said = [ln for ln in err.splitlines() if "error:" in ln]
            assert code in (1, 2), f"exit {code}: patchfield {' '.join(full)}\n{err}"
            assert "Traceback" not in err, f"patchfield {' '.join(full)}\n{err}"
            assert len(said) == 1, f"patchfield {' '.join(full)}: {len(said)} error lines\n{err}"
            written = [p.name for p in out.rglob("*") if p.name in COMPLETE] if out.is_dir() else []
            assert not written, f"patchfield {' '.join(full)} wrote {written}"


# ------------------------------------------------------------------------------------------ the hostile corpus
# Issue 20's inputs, one case each: a command line built against a small prepared folder, the exit code it must
# end with, and the words its one error line must hold (the file or option, and what is wrong). A case's random
# choices (which entry of a list is broken) come from a generator seeded by the case's name.

COCO_IMAGES = 3


@pytest.fixture(scope="module")
def coco(inputs, tmp_path_factory):
    """A COCO-format folder of 3 images (64 px, one polygon each) beside the fuzz model."""
    root = tmp_path_factory.mktemp("coco") / "images"
    root.mkdir()
    rng = np.random.default_rng(1)
    images, anns = [], []
    for i in range(COCO_IMAGES):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / f"img{i}.png")
        images.append({"id": i + 1, "file_name": f"img{i}.png", "height": 64, "width": 64})
        anns.append({"id": 10 + i, "image_id": i + 1, "category_id": 1,
                     "segmentation": [[8.0, 8.0, 40.0, 8.0, 40.0, 40.0, 8.0, 40.0]]})
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root.parent / "outside.png")
    return {"root": root, "data": {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "x"}]}}


def _coco_case(change):
    """A claims command on the COCO folder with its JSON changed by ``change(data, rng)``."""
    def build(ctx, tmp: Path, rng: random.Random) -> list[str]:
        data = json.loads(json.dumps(ctx["coco"]["data"]))
        change(data, rng)
        (tmp / "ann.json").write_text(json.dumps(data))
        return ["claims", "--model", "test_vit", "--weights", str(ctx["inputs"] / "w.safetensors"), "--image-size",
                "64", "--data", "coco", "--data-root", str(ctx["coco"]["root"]), "--annotations", str(tmp / "ann.json"),
                "--random-inits", "1", "--no-progress", "--out", str(tmp / "out")]
    return build


def _image(data: dict, rng: random.Random) -> dict:
    return data["images"][rng.randrange(COCO_IMAGES)]


def _ann(data: dict, rng: random.Random) -> dict:
    return data["annotations"][rng.randrange(COCO_IMAGES)]


def _study(files: dict[str, object]):
    """``reproduce --status`` (or ``--report-only`` when results.json is given) on a study folder holding ``files``
    (a run's files under its own folder; bytes as they are, anything else as JSON)."""
    def build(ctx, tmp: Path, rng: random.Random) -> list[str]:
        from patchfield.study.config import QUICK, config_with, run_folder, study_rows

        cfg = config_with(QUICK, out=str(tmp / "study"))
        run = run_folder(cfg, "synthetic", study_rows(cfg, "synthetic", 0)[0], 0)
        Path(cfg.out).mkdir(parents=True)
        for name, content in files.items():
            path = (run if name in ("eval.json", "curve.json") else Path(cfg.out)) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
        what = "--report-only" if "results.json" in files else "--status"
        return ["reproduce", "--quick", "--out", cfg.out, "--doc", str(tmp / "doc.md"), what]
    return build


def _given(path: str):
    """``reproduce --status`` on ``path`` (relative to the case's folder), made by nobody or as a file."""
    def build(ctx, tmp: Path, rng: random.Random) -> list[str]:
        if path == "afile":
            (tmp / path).write_text("x")
        return ["reproduce", "--out", str(tmp / path), "--status"]
    return build


#: name: (build(ctx, tmp, rng) -> argv, exit code, words of the error line ("{tmp}" is the case's folder))
HOSTILE = {
    "coco-image-id-null": (_coco_case(lambda d, r: _ann(d, r).update(image_id=None)), 2, ["ann.json", "image_id None"]),
    "coco-file-name-int": (_coco_case(lambda d, r: _image(d, r).update(file_name=7)), 2, ["ann.json", "file_name 7"]),
    "coco-file-name-null": (_coco_case(lambda d, r: _image(d, r).update(file_name=None)), 2,
                            ["ann.json", "file_name None"]),
    "coco-rle-without-counts": (_coco_case(lambda d, r: _ann(d, r).update(segmentation={"size": [64, 64]})), 2,
                                ["ann.json", "without 'counts'"]),
    "coco-odd-polygon": (_coco_case(lambda d, r: _ann(d, r).update(segmentation=[[1.0, 2.0, 3.0, 4.0, 5.0]])), 2,
                         ["ann.json", "a polygon of 5 numbers"]),
    "coco-string-polygon": (_coco_case(lambda d, r: _ann(d, r).update(segmentation=["1 2 3 4 5 6"])), 2,
                            ["ann.json", "not a list of numbers"]),
    "coco-string-segmentation": (_coco_case(lambda d, r: _ann(d, r).update(segmentation="x")), 2,
                                 ["ann.json", "neither polygons nor RLE"]),
    "coco-category-null": (_coco_case(lambda d, r: _ann(d, r).update(category_id=None)), 2,
                           ["ann.json", "category_id None"]),
    "coco-height-text": (_coco_case(lambda d, r: _image(d, r).update(height="64")), 2, ["ann.json", "height '64'"]),
    "coco-outside-data-root": (_coco_case(lambda d, r: _image(d, r).update(file_name="../outside.png")), 2,
                               ["ann.json", "'../outside.png'", "outside --data-root is refused"]),
    "coco-absolute-file-name": (_coco_case(lambda d, r: _image(d, r).update(file_name="/etc/hostname")), 2,
                                ["ann.json", "'/etc/hostname'"]),
    "coco-duplicate-image": (_coco_case(lambda d, r: d["images"].append(dict(_image(d, r)))), 2,
                             ["ann.json", "images[3] repeats the id"]),
    "coco-duplicate-file": (_coco_case(lambda d, r: d["images"].append({**_image(d, r), "id": 99})), 2,
                            ["ann.json", "images[3] repeats the file_name"]),
    "random-inits-past-the-limit": (lambda ctx, tmp, rng: ["claims", "--model", "test_vit", "--random-weights",
                                                           "--data", "synthetic", "--random-inits", "1000000000",
                                                           "--out", str(tmp / "out")], 2,
                                    ["--random-inits must be at most 100"]),
    "status-missing-folder": (_given("nothing"), 2, ["--out {tmp}/nothing: no such folder"]),
    "status-a-file": (_given("afile"), 2, ["--out {tmp}/afile: a file, not a study folder"]),
    "status-empty-eval": (_study({"eval.json": {}}), 1, ["eval.json lacks a number 'top1'"]),
    "status-curve-object": (_study({"curve.json": {"step": 5}}), 1, ["curve.json holds a JSON dict, not the list"]),
    "status-truncated-eval": (_study({"eval.json": b'{"top'}), 1, ["eval.json is not valid JSON"]),
    "status-truncated-sessions": (_study({"sessions.json": b"[{"}), 1, ["{tmp}/study/sessions.json is not valid"]),
    "status-truncated-study": (_study({"study.json": b"{"}), 1, ["{tmp}/study/study.json is not valid JSON"]),
    "report-truncated-results": (_study({"results.json": b'{"format'}), 1, ["{tmp}/study/results.json is not valid"]),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_inputs_end_in_one_line(name, inputs, coco, tmp_path, capsys, one_thread):
    build, code, words = HOSTILE[name]
    argv = build({"inputs": inputs, "coco": coco}, tmp_path, random.Random(name))
    capsys.readouterr()
    got = _run(argv)
    err = capsys.readouterr().err
    said = [ln for ln in err.splitlines() if "error:" in ln]
    assert got == code, f"exit {got}: patchfield {' '.join(argv)}\n{err}"
    assert "Traceback" not in err and len(said) == 1, err
    for w in words:
        assert w.replace("{tmp}", str(tmp_path)) in said[0], said[0]
    written = [p.name for p in tmp_path.rglob("*") if p.name in COMPLETE + ("claims.json", "stats.json")]
    assert not written or name.startswith(("status", "report")), written
