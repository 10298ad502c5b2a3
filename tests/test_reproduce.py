"""The reproduction study: its statistics against plain loops, and its seconds-long configuration end to end."""

from __future__ import annotations

import json
import logging
import math
import shutil
import statistics

import pytest

from patchfield.cli import main
from patchfield.study.curve import final_gain
from patchfield.study.stats import close_verdict, combine_claims, row_stats, table_verdicts
from patchfield.verdicts import VERDICTS, t_quantile


def _run(row: str, seed: int, top1: float, start: str = "pretrained") -> dict:
    return {"dataset": "d", "row": row, "seed": seed, "start": start, "top1": top1, "eo": 1.0, "eo_full": 4.0,
            "final_gain_last20pct": 0.1 * seed}


def test_row_stats_pair_by_seed_like_a_plain_loop():
    vit, awd = [80.0, 82.0, 81.0], [81.0, 84.0, 81.5]
    runs = [_run("vit", s, v) for s, v in enumerate(vit)] + [_run("awd-0.1", s, v) for s, v in enumerate(awd)]
    runs.append(_run("awd-0.1", 7, 99.0))  # a seed without its baseline: not paired
    s = row_stats(runs, "d", "pretrained", "awd-0.1", "vit")
    diffs = [a - b for a, b in zip(awd, vit)]
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    half = t_quantile(0.975, 2) * sd / math.sqrt(3)
    assert s["vs_base"]["n"] == 3 and s["vs_base"]["diff"] == pytest.approx(mean)
    assert s["vs_base"]["ci95"] == pytest.approx([mean - half, mean + half])
    assert s["seeds"] == 4 and s["top1_sd"] == pytest.approx(statistics.stdev(awd + [99.0]))  # sample SD (n - 1)
    assert s["gain_max"] == pytest.approx(0.7)


def test_table_verdicts_and_equivalence():
    runs = [_run("vit", s, 80.0 + s) for s in range(3)]
    runs += [_run("awd-0.1", s, 82.0 + s + 0.1 * s) for s in range(3)]  # clearly above, paired
    runs += [_run("awd-dip-0.5", s, 80.0 + s + (0.05, -0.05, 0.0)[s]) for s in range(3)]  # stays within 1 point
    runs += [_run("winft-paper", s, 70.0 + s) for s in range(3)]  # clearly below
    got = {(v["a"], v["b"]): v for v in table_verdicts(runs, "d", (4, 8), margin=1.0)}
    assert got[("awd-0.1", "vit")]["verdict"] == "supported"
    assert got[("awd-0.1", "vit")]["diff"] == pytest.approx(2.1)
    assert got[("awd-dip-0.5", "vit")]["verdict"] == "supported" and got[("awd-dip-0.5", "vit")]["margin"] == 1.0
    assert got[("winft-paper", "vit")]["verdict"] == "contradicted"
    assert ("awd-dip-0.2", "awd-0.1") not in got  # a row that was not run gives no verdict
    assert close_verdict([3.0, 3.5, 2.8], 1.0) == "contradicted"
    assert close_verdict([0.0, 2.0, -1.5], 1.0) == "not supported"


def test_combine_claims_takes_the_seed_as_unit():
    def seed(t: float, n: float, r: float) -> dict:
        c = {"trained": {"mean": t}, "null": {"mean": n}, "random": {"mean": r}}
        gap = {"gap": {"trained": {"mean": t}, "random": {"mean": r}}}
        return {"settings": [{"alpha": 0.1, "beta": 0.2, "claims": {"dip_on_background": c, "field_size": gap}}]}

    out = combine_claims([seed(0.9, 0.7, 0.8), seed(0.92, 0.7, 0.81), seed(0.91, 0.72, 0.79)])
    dip = out[0]["claims"]["dip_on_background"]
    assert dip["seeds"] == 3 and dip["vs_null"]["n"] == 3
    assert dip["vs_null"]["diff"] == pytest.approx((0.2 + 0.22 + 0.19) / 3)
    assert dip["verdict"] == "supported"
    assert out[0]["claims"]["field_size"]["vs_null"]["diff"] == pytest.approx(0.91)  # null of the gap: 0


def test_final_gain_reads_the_point_at_80_percent():
    curve = [{"step": s, "top1": t} for s, t in zip((2, 4, 6, 8, 10), (0.1, 0.5, 0.6, 0.70, 0.712))]
    assert final_gain(curve) == pytest.approx(1.2)
    with pytest.raises(ValueError, match="80%"):
        final_gain(curve[:3] + curve[4:])


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    assert main(["reproduce", "--quick", "--out", str(out / "runs"), "--doc", str(out / "reproduction.md")]) == 0
    return out


def test_schema_and_protocol(study):
    doc = json.loads((study / "reproduction.json").read_text())
    assert {p["patch"] for p in doc["pretrained"]} == {4, 8}
    assert all({"name", "source", "source_top1", "train_seconds"} <= set(p) for p in doc["pretrained"])
    rows = doc["rows"]
    for r in rows:
        assert {"dataset", "table", "row", "patch", "seed", "start", "top1", "eo", "final_gain_last20pct"} <= set(r)
        assert 0.0 <= r["top1"] <= 100.0 and len(r["curve"]) == 5
        mark = r["curve"][3]  # 80% of the schedule: also scored on all validation images, like the final top-1
        assert mark["step"] == 4 and r["final_gain_last20pct"] == pytest.approx(r["top1"] - 100 * mark["top1_all"],
                                                                                 abs=1e-3)
        folder = r["row"] if r["start"] == "pretrained" else f"scratch-{r['row']}"
        info = json.loads((study / "runs" / "synthetic" / f"p{r['patch']}" / f"s{r['seed']}" / folder / "run.json")
                          .read_text())
        weights = info["config"]["weights"]
        if r["start"] == "pretrained":  # every row starts from the pretrained ViT of its patch size
            assert weights.endswith(f"formula-p{r['patch']}/model.safetensors")
        else:
            assert weights is None
    seeds = {k: sorted(r["seed"] for r in rows if r["row"] == k and r["start"] == "pretrained")
             for k in {r["row"] for r in rows}}
    assert seeds["vit"] == seeds["awd-0.1"] == seeds["winft-paper"] == [0, 1, 2]  # headline rows: one more seed
    assert seeds["awd-0.5"] == seeds["vit-p8"] == [0, 1]
    assert sorted(r["row"] for r in rows if r["start"] == "scratch" and r["seed"] == 0) == \
        ["awd-0.1", "vit", "winft-paper"]
    for v in doc["verdicts"]:
        assert {"dataset", "claim", "diff", "ci95", "verdict"} <= set(v) and v["verdict"] in VERDICTS
        assert len(v["ci95"]) == 2
    assert {v["table"] for v in doc["verdicts"]} == {"1", "2", "3", "analysis"}
    assert any(v["start"] == "scratch" for v in doc["verdicts"])


def test_tables_are_consistent(study):
    doc = json.loads((study / "reproduction.json").read_text())
    t = {(s["row"], s["start"]): s for s in doc["tables"]["synthetic"]}
    for start in ("pretrained", "scratch"):
        assert t[("vit", start)]["eo"] == t[("vit", start)]["eo_full"] == 64**2  # patch 4 on 32 px: N = 64
    assert t[("vit-p8", "pretrained")]["eo"] == 16**2
    eos = [t[(f"awd-{a:g}", "pretrained")]["eo"] for a in (0.025, 0.1, 0.5)]
    assert eos == sorted(eos) and eos[-1] < 64**2  # E_O falls with alpha, below N² for every alpha < 1
    dip = [t[(f"awd-dip-{b:g}", "pretrained")]["eo"] for b in (0.2, 0.5)]
    assert dip == sorted(dip, reverse=True) and dip[0] <= t[("awd-0.1", "pretrained")]["eo"]  # DIP removes some
    for (key, _), s in t.items():
        assert s["top1_sd"] is None or s["top1_sd"] >= 0.0
        if key.startswith("winft"):
            assert 0 < s["eo"] < s["eo_full"]
        if key not in ("vit", "vit-p8"):
            assert s["vs_base"]["n"] == s["seeds"] and len(s["vs_base"]["ci95"]) == 2
    combined = doc["analysis"]["combined"]
    assert [s["beta"] for s in combined] == [0.2, 0.5] and all(c["seeds"] == 3 for c in combined[0]["claims"].values())
    assert set(doc["analysis"]["seeds"]) == {"0", "1", "2"}  # every seed's fine-tuned baseline
    assert (study / "runs" / "synthetic" / "p4" / "s1" / "vit" / "claims" / "claims.md").is_file()  # one per seed


def test_not_run_rows_have_commands(study):
    doc = json.loads((study / "reproduction.json").read_text())
    not_run = doc["not_run"]
    assert {r["table"] for r in not_run if r["dataset"] == "imagenet-1k"} == {"1", "2", "3"}
    cub = [r for r in not_run if r["table"] == "4"]
    assert {r["paper_top1"] for r in cub} == {90.30, 90.58}
    for r in not_run:
        assert r["gpu_hours"] > 0 and any("torchrun" in c for c in r["commands"])
        assert any(" evaluate " in c for c in r["commands"]) and "--weights" in " ".join(r["commands"])


def test_report_is_well_formed(study):
    doc = (study / "reproduction.md").read_text()
    assert doc.index("## Summary") < doc.index("## The pretrained start") < doc.index("### Table 1")
    for title in ("Table 1", "Table 2", "Table 3", "Table 4", "not run here", "Are the baselines well trained",
                  "analysis claims", "Total run time", "Combined over seeds", "### Seed 1"):
        assert title in doc
    tables = [line for line in doc.splitlines() if line.startswith("|") and not line.startswith("|---")]
    widths = {line.replace("\\|", "").count("|") for line in tables}
    assert widths <= {6, 7, 8, 9, 10}  # every row complete (6- to 9-column tables)
    for table in (1, 2, 3):
        png = study / "reproduction" / f"synthetic-table{table}.png"
        assert png.read_bytes()[:4] == b"\x89PNG" and f"(reproduction/synthetic-table{table}.png)" in doc


def test_resume_skips_finished_runs_and_refuses_other_settings(study, capsys):
    runs = study / "runs"
    marker = next(runs.rglob("eval.json"))
    stamp = marker.stat().st_mtime_ns
    sessions = len(json.loads((runs / "sessions.json").read_text()))
    assert main(["reproduce", "--quick", "--out", str(runs), "--doc", str(study / "again.md")]) == 0
    assert marker.stat().st_mtime_ns == stamp  # not retrained
    assert len(json.loads((runs / "sessions.json").read_text())) == sessions + 1  # the total sums the sessions
    capsys.readouterr()
    assert main(["reproduce", "--quick", "--out", str(runs), "--doc", str(study / "other.md"), "--steps", "10"]) == 2
    assert "other settings" in capsys.readouterr().err
    assert not (study / "other.md").exists()


def test_missing_pretrained_start_says_what_to_do(tmp_path, capsys):
    assert main(["reproduce", "--out", str(tmp_path / "runs"), "--pretrained", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "make pretrain" in err and len(err.strip().splitlines()) == 1


def test_folders_are_reused_only_with_their_settings(tmp_path):
    from patchfield.study.reproduce import _settings_guard

    _settings_guard(tmp_path / "a", {"x": 1})
    _settings_guard(tmp_path / "a", {"x": 1})  # same settings: reused
    with pytest.raises(ValueError, match="other settings"):
        _settings_guard(tmp_path / "a", {"x": 2})
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "eval.json").write_text("{}")  # an older patchfield's run: no record, refused
    with pytest.raises(ValueError, match="older patchfield"):
        _settings_guard(tmp_path / "old", {"x": 1})


def test_report_only_keeps_the_hand_written_reading(study):
    (study / "again_reading.md").write_text("## Reading this run\n\nBy hand.\n")
    (study / "again_notes.md").write_text("## Reading of another study\n")  # another file: left out
    assert main(["reproduce", "--quick", "--out", str(study / "runs"), "--doc", str(study / "again.md"),
                 "--report-only"]) == 0
    doc = (study / "again.md").read_text()
    assert doc.index("## Summary") < doc.index("By hand.") < doc.index("## The pretrained start")
    assert "another study" not in doc


def test_session_clock_counts_a_session_that_never_ends(tmp_path):
    import time

    from patchfield.study.reproduce import _SessionClock

    (tmp_path / "sessions.json").write_text(json.dumps([{"started": "earlier", "seconds": 100.0}]))
    clock = _SessionClock(tmp_path, every=0.02)
    time.sleep(0.2)
    rows = json.loads((tmp_path / "sessions.json").read_text())  # as a kill would leave it: no stop()
    assert len(rows) == 2 and rows[0]["seconds"] == 100.0 and rows[1]["seconds"] > 0.0
    assert clock.stop() >= 100.0 + rows[1]["seconds"]


def test_report_only_refuses_an_older_study(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "results.json").write_text(json.dumps({"config": {}, "runs": []}))  # an older study's format
    assert main(["reproduce", "--out", str(tmp_path / "runs"), "--doc", str(tmp_path / "r.md"), "--report-only"]) == 2
    assert "older patchfield" in capsys.readouterr().err and not (tmp_path / "r.md").exists()


def test_status_reads_the_study_folder(study, tmp_path, capsys):
    from patchfield.study.config import QUICK, config_with
    from patchfield.study.reproduce import study_status

    results = json.loads((study / "runs" / "results.json").read_text())
    st = study_status(config_with(QUICK, out=str(study / "runs")))
    assert st["datasets"]["synthetic"] == {"planned": len(results["rows"]), "done": len(results["rows"]),
                                           "started": 0, "steps_left": 0}
    assert st["claims_done"] == st["claims_planned"] == len(results["claims"]["seeds"])
    assert st["seconds"] > 0 and st["hours_left"] == 0.0
    empty = study_status(config_with(QUICK, out=str(tmp_path / "none")))
    assert empty["datasets"]["synthetic"]["done"] == 0 and empty["hours_left"] is None
    assert empty["datasets"]["synthetic"]["steps_left"] == len(results["rows"]) * QUICK.steps
    capsys.readouterr()
    assert main(["reproduce", "--quick", "--out", str(study / "runs"), "--status"]) == 0
    out = capsys.readouterr().out
    assert f"synthetic: {len(results['rows'])} of {len(results['rows'])} runs done" in out
    assert "left: about 0.0 h" in out
    # a study part-way: the WinfT runs not finished, so their time is a ViT's and the hours left a lower bound
    part = tmp_path / "part"
    shutil.copytree(study / "runs", part)
    for row in results["rows"]:
        if row["kind"].startswith("winft"):
            name = row["row"] if row["start"] == "pretrained" else f"scratch-{row['row']}"
            shutil.rmtree(part / row["dataset"] / f"p{row['patch']}" / f"s{row['seed']}" / name)
    st = study_status(config_with(QUICK, out=str(part)))
    assert st["untimed"] == ["winft-paper/p4", "winft-paper/p8", "winft-restrict/p4", "winft-restrict/p8"]
    assert st["hours_left"] is not None  # a quick study: seconds, rounded to 0.0 h
    assert main(["reproduce", "--quick", "--out", str(part), "--status"]) == 0
    out = capsys.readouterr().out
    assert "left: at least" in out and "winft-restrict/p4, winft-restrict/p8 not yet timed" in out


def test_default_study_runs_the_protocol():
    from patchfield.study.config import StudyConfig, all_seeds, study_rows

    cfg = StudyConfig()
    assert all_seeds(cfg, "synthetic") == [0, 1, 2, 3, 4] and all_seeds(cfg, "fashion-mnist") == [0, 1, 2]
    count = {d: sum(len(study_rows(cfg, d, s)) for s in all_seeds(cfg, d)) for d in cfg.datasets}
    assert count == {"synthetic": 57, "fashion-mnist": 24}
    fm = [(r.key, r.start) for s in (0, 1, 2) for r in study_rows(cfg, "fashion-mnist", s)]
    for key in ("vit", "awd-0.1", "awd-dip-0.2", "winft-paper", "winft-restrict", "vit-p8", "winft-paper-p8",
                "winft-restrict-p8"):
        assert fm.count((key, "pretrained")) == 3
    assert not [k for k, start in fm if start == "scratch"]  # the real sets' from-scratch arm: not in the budget
    syn = [(r.key, r.start) for s in all_seeds(cfg, "synthetic") for r in study_rows(cfg, "synthetic", s)]
    assert sorted({k for k, start in syn if start == "scratch"}) == ["awd-0.1", "vit", "winft-paper"]
    assert syn.count(("vit", "pretrained")) == 5 and syn.count(("awd-0.5", "pretrained")) == 3


def test_budget_times_a_step_of_every_kind_it_trains(study):
    """AWD and WinfT steps cost more than a ViT step: the estimate times each (kind, patch) the study trains."""
    from patchfield.study.budget import step_key
    from patchfield.study.config import QUICK, all_seeds, study_rows

    results = json.loads((study / "runs" / "results.json").read_text())
    budget = results["budget"]
    trained = {step_key(r.kind, r.patch) for s in all_seeds(QUICK, "synthetic")
               for r in study_rows(QUICK, "synthetic", s)}
    assert set(budget["step_seconds"]) == set(budget["step_seconds_wall"]) == trained
    assert {"vit/p4", "awd/p4", "awd-dip/p4", "winft-paper/p4", "winft-restrict/p8"} <= trained
    assert all(v > 0 for v in budget["step_seconds"].values())
    assert budget["runs"] == len(results["rows"])


def test_the_committed_study_is_consistent_with_its_own_rows():
    """docs/reproduction.json (the committed run): its keys, E_O rules, and table verdicts that the
    committed statistics recompute from its rows, each in the markdown's summary."""
    from pathlib import Path

    docs = Path(__file__).resolve().parents[1] / "docs"
    doc = json.loads((docs / "reproduction.json").read_text())
    summary = (docs / "reproduction.md").read_text().split("\n## Summary\n", 1)[1].split("\n## ", 1)[0]
    assert {"name", "patch", "source", "source_top1", "train_seconds"} <= set(doc["pretrained"][0])
    rows = doc["rows"]
    assert len(rows) == 81
    for r in rows:
        assert {"dataset", "table", "row", "patch", "seed", "start", "top1", "eo", "final_gain_last20pct"} <= set(r)
        assert (r["eo"] == r["eo_full"]) == r["row"].startswith("vit")
    for d in ("synthetic", "fashion-mnist"):
        for seed in {r["seed"] for r in rows if r["dataset"] == d}:
            awd = sorted((r["alpha"], r["eo"]) for r in rows if r["dataset"] == d and r["seed"] == seed
                         and r["start"] == "pretrained" and r["row"].startswith("awd-0"))
            assert [eo for _, eo in awd] == sorted(eo for _, eo in awd)  # E_O grows with α
    fashion = [r["top1"] for r in rows if r["dataset"] == "fashion-mnist" and r["row"] == "vit"]
    assert len(fashion) == 3 and statistics.mean(fashion) >= 88.0
    cfg = doc["config"]
    table = [v for v in doc["verdicts"] if v["table"] != "analysis"]
    again = [v for d in ("synthetic", "fashion-mnist")
             for v in table_verdicts(rows, d, cfg["patch_sizes"], cfg["margin"])]
    assert [(v["dataset"], v["claim"], v["start"], v["verdict"]) for v in table] == \
        [(v["dataset"], v["claim"], v["start"], v["verdict"]) for v in again]
    assert [v["diff"] for v in table] == pytest.approx([v["diff"] for v in again])
    for v in doc["verdicts"]:
        assert v["verdict"] in VERDICTS
        line = next(line for line in summary.splitlines()
                    if f"{v['claim']} | {v['dataset']} | {v['start']} |" in line)
        assert line.rstrip().endswith(f"**{v['verdict']}** |")


def test_with_two_processes_the_budget_times_steps_in_two_processes_at_once():
    """Two training processes slow each other's steps: with ``--jobs 2`` every pair is timed in two workers at once
    (the slower one counts), each the same (CPU, wall) pair of positive times as one process gives."""
    from patchfield.kinds import AWD, VIT
    from patchfield.study.budget import _measure
    from patchfield.study.config import QUICK

    tiny = {"img_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 1, "num_heads": 2}
    pairs = [(VIT, 4, tiny), (AWD, 4, tiny)]
    for procs in (1, 2):
        measured = _measure(QUICK, pairs, procs)
        assert list(measured) == [(VIT, 4), (AWD, 4)]
        assert all(cpu > 0 and wall > 0 for cpu, wall in measured.values())


def test_the_budget_is_said_through_logging(caplog):
    from patchfield.study.budget import log_budget

    budget = {"runs": 2, "steps": 1000, "step_seconds": {"vit/p4": 0.25}, "step_seconds_wall": {"vit/p4": 0.5},
              "hours": 6.0, "hours_at_current_load": 7.0}
    with caplog.at_level(logging.INFO, logger="patchfield"):
        log_budget(budget, 3)
    assert caplog.messages[0] == (
        "[reproduce] 2 runs, 1,000 steps; a step takes 0.250 s CPU (0.500 s wall) for vit/p4 on one thread: about "
        "6.0 h on 2 idle core(s), 7.0 h at the current load (evaluation and stores +30%); finished runs are skipped")
    assert caplog.records[1].levelno == logging.WARNING and "more than the study's 5 hours" in caplog.messages[1]


def test_local_windows_match_the_interactions_by_hand():
    from patchfield.windows import local_windows

    # 3x3 grid: radius 0 gives O = 9, radius 1 (corners 2x2, edges 2x3, centre 3x3) 4·4 + 4·6 + 9 = 49, radius 2 81.
    # N = 9, s = 5 (coprime, nearest 9/φ = 5.56): patches grow to radius 1 in the order 0 5 1 6 2 7 3 8 4, by
    # 3 5 5 3 3 5 5 3 8 cells: O = 9 + 3 + 5 + 5 = 22 after three, 9 + 3 + 5 + 5 + 3 = 25 after four
    w = local_windows((3, 3), 23.0)
    assert int(w.interactions()) == 22 and w.area().tolist() == [4, 6, 1, 1, 1, 6, 1, 1, 1]
    assert w.bounds()[0].tolist() == [0, 1, 0, 1] and w.bounds()[4].tolist() == [1, 1, 1, 1]
    assert int(local_windows((3, 3), 24.0).interactions()) == 25
    assert int(local_windows((3, 3), 23.5).interactions()) == 22  # a tie: the fewer grown
    assert local_windows((3, 3), 49.0).area().tolist() == [4, 6, 4, 6, 9, 6, 4, 6, 4]  # exactly radius 1
    assert int(local_windows((3, 3), 5.0).interactions()) == 9  # no square is smaller than the patch itself
    assert int(local_windows((3, 3), 1e9).interactions()) == 81
    # 2x4 (s = 5): order 0 5 2 7 4 1 6 3, growth 3 5 5 3 3 5 5 3: O = 8, 11, 16, 21, 24, 27, ...
    assert local_windows((2, 4), 20.0).area().tolist() == [4, 1, 6, 1, 1, 6, 1, 1]
    assert int(local_windows((14, 14), 12345.0).interactions()) in range(12345 - 24, 12345 + 25)


def test_the_14x14_plan_runs_every_row_of_a_seed_from_the_same_start():
    from patchfield.study.config import GRID14, all_seeds, grid_of, study_rows

    rows = [(r.key, r.start) for s in all_seeds(GRID14) for r in study_rows(GRID14, "synthetic", s)]
    count = {k: rows.count((k, "pretrained")) for k, _ in rows}
    assert count == {"vit": 6, "awd-0.1": 6, "awd-0.1-random-u": 6, "awd-0.1-local": 6, "winft-paper": 6,
                     "awd-dip-0.2": 3, "winft-paper-no-bce": 3, "vit-2x": 1}
    assert grid_of(GRID14, 4) == [14, 14] and GRID14.val_images == 10000 and GRID14.claim_images == 1000
    by_key = {r.key: r for r in study_rows(GRID14, "synthetic", 0)}
    assert by_key["awd-0.1-local"].windows == "local" and by_key["awd-0.1-random-u"].kind is by_key["awd-0.1"].kind
    assert by_key["winft-paper-no-bce"].lambda_bce == 0.0 and by_key["vit-2x"].schedule == 2
    # a row at its defaults records what the small grid's run folders recorded: they stay resumable
    assert set(by_key["awd-0.1"].shaping()) == {"key", "kind", "patch", "alpha", "beta", "start"}
    assert by_key["awd-0.1-local"].shaping()["windows"] == "local"


def test_report_only_regenerates_the_committed_report_from_its_json(tmp_path):
    """The committed report is regenerated byte for byte from docs/reproduction.json alone."""
    from pathlib import Path

    docs = Path(__file__).resolve().parents[1] / "docs"
    for name in ("reproduction.json", "reproduction_reading.md", "reproduction_14x14_reading.md"):
        if (docs / name).is_file():
            shutil.copy(docs / name, tmp_path / name)
    assert main(["reproduce", "--out", str(tmp_path / "none"), "--doc", str(tmp_path / "reproduction.md"),
                 "--report-only"]) == 0
    assert (tmp_path / "reproduction.md").read_text() == (docs / "reproduction.md").read_text()


@pytest.fixture(scope="module")
def study14(tmp_path_factory):
    """The 14x14 grid's quick configuration, reported beside a copy of the committed small grid's report."""
    import shutil
    from pathlib import Path

    out = tmp_path_factory.mktemp("study14")
    docs = Path(__file__).resolve().parents[1] / "docs"
    shutil.copy(docs / "reproduction.json", out / "reproduction.json")
    shutil.copy(docs / "reproduction_reading.md", out / "reproduction_reading.md")
    assert main(["reproduce", "--grid", "14", "--quick", "--out", str(out / "runs"),
                 "--doc", str(out / "reproduction.md")]) == 0
    return out


def test_the_14x14_grid_leads_the_report_and_keeps_the_small_grid(study14):
    from pathlib import Path

    committed = (Path(__file__).resolve().parents[1] / "docs" / "reproduction.md").read_text()
    small = committed[committed.index("# Reproduction of the paper's claims at small scale"):
                      committed.index("# The 14×14 grid: protocol")]
    doc = (study14 / "reproduction.md").read_text()
    assert small.count("\n") > 100 and small in doc  # the small grid's part, byte for byte
    assert doc.index("## Summary: the 14×14 grid") < doc.index("Slot for the hand-written reading") \
        < doc.index(small) < doc.index("## Protocol (14×14)") < doc.index("## Is the baseline trained? (14×14)")
    first = doc
    assert main(["reproduce", "--grid", "14", "--quick", "--out", str(study14 / "none"),
                 "--doc", str(study14 / "reproduction.md"), "--report-only"]) == 0
    assert (study14 / "reproduction.md").read_text() == first  # regenerated from the JSON alone


def test_the_14x14_json_rows_verdicts_and_check(study14):
    from patchfield.windows import local_windows

    doc = json.loads((study14 / "reproduction.json").read_text())
    assert len(doc["rows"]) == 81 and all(r["grid"] in ([8, 8], [4, 4]) for r in doc["rows"])
    assert all(r["eo_fraction"] == pytest.approx(r["eo"] / r["eo_full"], abs=1e-6) for r in doc["rows"])
    assert all(v["grid"] in ([8, 8], [4, 4]) and "p_holm" in v for v in doc["verdicts"] if v["table"] != "analysis")
    grid = doc["grid_14x14"]
    keys = sorted({r["row"] for r in grid["rows"]})
    assert keys == sorted(["vit", "awd-0.1", "awd-0.1-random-u", "awd-0.1-local", "winft-paper",
                           "winft-paper-no-bce", "awd-dip-0.2", "vit-2x"])
    for r in grid["rows"]:
        assert r["grid"] == [14, 14] and r["eo_full"] == 196**2 and 0 < r["eo_fraction"] <= 1.0
        assert r["eo_fraction"] == pytest.approx(r["eo"] / r["eo_full"], abs=1e-6)
    for seed in {r["seed"] for r in grid["rows"] if r["row"] == "awd-0.1-local"}:
        folder = study14 / "runs" / "synthetic" / "p4" / f"s{seed}" / "groundtruth"
        made = json.loads((folder / "train_a0.1_b0_local" / "manifest.json").read_text())
        trained = json.loads((folder / "train_a0.1_b0" / "manifest.json").read_text())
        target = made["windows"]["target"]  # the E_O of the trained windows on the training images
        assert target == pytest.approx(trained["expected_interactions"])
        assert made["expected_interactions"] == int(local_windows((14, 14), target).interactions())
        assert abs(made["expected_interactions"] - target) <= 8 * 14  # within one patch's growth
        local = next(r for r in grid["rows"] if r["row"] == "awd-0.1-local" and r["seed"] == seed)
        assert local["eo"] == made["expected_interactions"]  # the same windows for every image
    table = [v for v in grid["verdicts"] if v["table"] != "analysis"]
    assert [(v["a"], v["b"]) for v in table] == [
        ("awd-0.1", "vit"), ("awd-0.1", "awd-0.1-random-u"), ("awd-0.1", "awd-0.1-local"), ("winft-paper", "vit"),
        ("winft-paper", "winft-paper-no-bce"), ("awd-dip-0.2", "awd-0.1")]
    for v in table:
        assert v["grid"] == [14, 14] and v["verdict"] in VERDICTS
        assert v["p_holm"] is None or v["p"] <= v["p_holm"] <= 1.0
    analysis = [v for v in grid["verdicts"] if v["table"] == "analysis"]
    assert analysis and all(v["verdict_vs_chance"] in VERDICTS and v["verdict_vs_random"] in VERDICTS
                            and v["grid"] == [14, 14] for v in analysis)
    (check,) = doc["well_trained"]
    assert set(check) == {"dataset", "row", "grid", "seed", "top1", "top1_2x", "gain"}
    assert check["grid"] == [14, 14] and check["gain"] == pytest.approx(check["top1_2x"] - check["top1"])
    base = next(r for r in grid["rows"] if r["row"] == "vit" and r["seed"] == check["seed"])
    assert check["top1"] == base["top1"]


def test_status_covers_the_14x14_grid(study14, capsys):
    capsys.readouterr()
    assert main(["reproduce", "--grid", "14", "--quick", "--out", str(study14 / "runs"), "--status"]) == 0
    out = capsys.readouterr().out
    assert "14x14 grid study" in out and "synthetic: 13 of 13 runs done" in out and "small-grid" not in out


def test_the_committed_14x14_study_has_the_keys_the_issue_asks_for():
    """docs/reproduction.json's 14x14 part (the committed run): 37 runs on the 14x14 grid, 6 seeds of the headline
    rows and 3 of the others, verdicts with Holm's p and two analysis verdicts, and the 2x-schedule check."""
    from pathlib import Path

    doc = json.loads((Path(__file__).resolve().parents[1] / "docs" / "reproduction.json").read_text())
    grid = doc["grid_14x14"]
    rows = grid["rows"]
    assert len(rows) == 37 and all(r["grid"] == [14, 14] and r["eo_full"] == 196**2 for r in rows)
    assert all(r["eo_fraction"] == pytest.approx(r["eo"] / r["eo_full"], abs=1e-6) for r in rows)
    seeds = {k: sorted(r["seed"] for r in rows if r["row"] == k) for k in {r["row"] for r in rows}}
    assert seeds["awd-0.1-random-u"] == list(range(6)) and seeds["winft-paper-no-bce"] == [0, 1, 2]
    for v in grid["verdicts"]:
        assert v["grid"] == [14, 14] and v["verdict"] in VERDICTS
        if v["table"] == "analysis":
            assert v["verdict_vs_chance"] in VERDICTS and v["verdict_vs_random"] in VERDICTS
        else:
            assert 0 <= v["p"] <= v["p_holm"] <= 1
    [check] = doc["well_trained"]
    vit = next(r["top1"] for r in rows if r["row"] == "vit" and r["seed"] == check["seed"])
    assert check["top1"] == vit and check["gain"] == pytest.approx(check["top1_2x"] - check["top1"])
