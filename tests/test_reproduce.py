"""The reproduction study in its seconds-long configuration: well-formed, consistent tables."""

from __future__ import annotations

import json
import re

import pytest

from patchfield.cli import main
from patchfield.study.report import aggregate


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    assert main(["reproduce", "--quick", "--out", str(out / "runs"), "--doc", str(out / "reproduction.md")]) == 0
    return out


def test_tables_are_consistent(study):
    results = json.loads((study / "runs" / "results.json").read_text())
    agg = aggregate(results, "synthetic")
    rows = {r["key"]: r for r in results["rows"]["synthetic"]}
    assert agg["vit"]["eo"] == agg["vit"]["eo_full"] == 64**2  # patch 4 on 32 px: N = 64
    assert agg["vit-p8"]["eo"] == 16**2
    assert all(a["seeds"] == 2 for a in agg.values())
    alphas = sorted((rows[k]["alpha"], agg[k]["eo"]) for k in agg if rows[k]["kind"] == "awd")
    assert [a for a, _ in alphas] == [0.025, 0.1, 0.5]
    eos = [eo for _, eo in alphas]
    assert eos == sorted(eos) and eos[-1] < 64**2  # E_O grows with alpha, below N² for every alpha < 1
    dip = [agg[f"awd-dip-{b:g}"]["eo"] for b in (0.2, 0.5)]
    assert dip == sorted(dip, reverse=True) and dip[0] <= agg["awd-0.1"]["eo"]  # DIP removes interactions
    for key, a in agg.items():
        assert 0.0 <= a["top1"] <= 100.0 and a["top1_std"] >= 0.0
        if key.startswith("winft"):
            assert 0 < a["eo"] < a["eo_full"]
    setting = next(s for s in results["claims"]["settings"] if s["beta"] == 0.2)  # patchfield.claims' schema
    for who in ("trained", "random"):
        assert 0.0 <= setting["claims"]["dip_on_background"][who]["mean"] <= 1.0
        assert -1.0 <= setting["claims"]["tendency_to_object"][who]["mean"] <= 1.0


def test_report_is_well_formed(study):
    doc = (study / "reproduction.md").read_text()
    for title in ("Table 1", "Table 2", "Table 3", "analysis claims", "Total run time"):
        assert title in doc
    tables = [line for line in doc.splitlines() if line.startswith("|")]
    widths = {line.replace("\\|", "").count("|") for line in tables if not line.startswith("|---")}
    assert widths <= {6, 7}  # 5-column table rows and 6-column claim rows, every row complete
    assert len(re.findall(r"\*\*(supported|contradicted|within spread|not supported)", doc)) >= 6 + 6


def test_resume_skips_finished_runs(study, capsys):
    before = (study / "runs" / "results.json").stat().st_mtime_ns
    marker = next((study / "runs").rglob("eval.json"))
    stamp = marker.stat().st_mtime_ns
    assert main(["reproduce", "--quick", "--out", str(study / "runs"), "--doc", str(study / "again.md")]) == 0
    assert marker.stat().st_mtime_ns == stamp  # not retrained
    assert (study / "runs" / "results.json").stat().st_mtime_ns >= before
