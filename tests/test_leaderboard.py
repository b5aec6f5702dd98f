"""Leaderboard: schema validation, rendering (sorting, deltas, missing values), adding reproduced rows."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
from click.testing import CliRunner

from benchmark.cli import cli
from benchmark.io import read_json, write_json
from leaderboard.add import rows_from_results
from leaderboard.render import build_tables, to_html, to_latex, to_markdown
from leaderboard.rows import ENTRIES, load_rows, validate_all, write_row
from leaderboard.schema import RowError, row_errors, row_filename, validate_row


def _row(method="m1", level=0.4, reported=None, reproduced=None, dataset="coco2017"):
    return {
        "schema_version": 1, "method": method, "method_name": method.upper(), "paper": {"title": f"Paper {method}"},
        "dataset": dataset, "test_split": "val2017",
        "noise": {"model": "uniform", "level": level, "rng": "numpy"},
        "detector": "Faster R-CNN", "backbone": "R50-FPN", "schedule": "1x", "extra_supervision": "none",
        "reported": None if reported is None else {"source": "Table 1", "metrics": {"AP": reported}},
        "reproduced": None if reproduced is None else {
            "metrics": {"AP": {"mean": reproduced, "std": 0.5, "n": 3}}, "cells": ["abc"], "suite_version": "0",
            "hardware": "cpu"},
    }


def test_shipped_rows_are_valid_and_cover_both_papers():
    assert validate_all(ENTRIES) == []
    rows = [r for _, r in load_rows(ENTRIES)]
    coco40 = {r["method"]: r["reported"]["metrics"] for r in rows
              if r["dataset"] == "coco2017" and r["test_split"] == "val2017" and r["noise"]["level"] == 0.4
              and r["backbone"] == "R50-FPN"}
    assert coco40["ssd_det"]["AP"] == 27.6 and coco40["oa_mil"]["AP"] == 18.6 and coco40["faster_rcnn"]["AP"] == 10.3
    assert {"retinanet", "freeanchor", "co_teaching", "sd_locnet", "kl_loss", "ssd_det+retrain"} <= set(coco40)
    voc = {(r["method"], r["noise"]["level"]): r["reported"]["metrics"]["VOC_AP50"] for r in rows if r["dataset"] == "voc2007"}
    assert voc[("ssd_det", 0.4)] == 66.9 and voc[("oa_mil", 0.1)] == 77.4 and voc[("kl_loss", 0.3)] == 64.6
    assert all(r["reported"]["source"] for r in rows)


@pytest.mark.parametrize("mutate, field", [
    (lambda r: r.pop("method"), "method: missing"),
    (lambda r: r["noise"].update(level=1.5), "noise.level"),
    (lambda r: r["noise"].update(rng="mt19937"), "noise.rng"),
    (lambda r: r["reported"]["metrics"].update(AP=130.0), "reported.metrics.AP"),
    (lambda r: r["reported"]["metrics"].update(mAP=30.0), "reported.metrics.mAP: unknown metric"),
    (lambda r: r.update(reported=None), "at least one"),
    (lambda r: r.update(colour="red"), "colour: unknown field"),
    (lambda r: r["reported"].pop("source"), "reported.source"),
    (lambda r: r.update(schema_version=7), "schema_version"),
])
def test_bad_rows_are_rejected_with_the_field_named(mutate, field):
    row = _row(reported=30.0)
    assert row_errors(row) == []
    mutate(row)
    errors = row_errors(row)
    assert any(field in e for e in errors), errors
    with pytest.raises(RowError, match="bad.json"):
        validate_row(row, "bad.json")


def test_reproduced_block_needs_stats():
    row = _row(reproduced=30.0)
    row["reproduced"]["metrics"]["AP"] = 30.0
    assert any("{mean, std, n}" in e for e in row_errors(row))


def test_render_sorts_by_metric_and_flags_deltas():
    rows = [_row("low", reported=10.0, reproduced=10.4), _row("high", reported=30.0, reproduced=25.0),
            _row("paper_only", reported=20.0), _row("high", level=0.2, reported=33.0),
            _row("missing_at_sort_level", level=0.2, reported=40.0)]
    (table,) = build_tables(rows)
    assert [label for label, _, _ in table.rows] == ["HIGH", "PAPER_ONLY", "LOW", "MISSING_AT_SORT_LEVEL"]
    md = to_markdown([table], tolerance=1.0)
    assert "30.0 / 25.0 ± 0.5 (n=3), Δ -5.0 ⚠" in md
    assert "10.0 / 10.4 ± 0.5 (n=3), Δ +0.4 |" in md  # within tolerance: no flag
    assert "| 4 | MISSING_AT_SORT_LEVEL | R50-FPN | 40.0 | – |" in md
    html = to_html([table])
    assert html.count('class="flag"') == 1 and "<table>" in html
    tex = to_latex([table])
    assert r"\toprule" in tex and "25.0$\\pm$0.5" in tex and "20.0$^\\dagger$" in tex
    (by_low_level,) = build_tables(rows, sort_level=0.2)
    assert by_low_level.rows[0][0] == "MISSING_AT_SORT_LEVEL"


def test_rows_from_results_groups_seeds_and_merges_reported(tmp_path):
    df = pd.DataFrame([
        {"method": "ssd_det", "dataset": "coco", "noise_model": "uniform", "noise_level": 0.4, "seed": s,
         "profile": "paper", "cell": f"c{s}", "AP": ap, "AP50": 0.5} for s, ap in enumerate([0.27, 0.28, 0.29])
    ])
    paper = _row("ssd_det", reported=27.6)
    paper["backbone"] = "R50-FPN"
    paper["profile"] = "paper"
    paper["dataset"] = "coco2017"
    (row,) = rows_from_results(df, dataset_name="coco2017", test_split="val2017", existing=[paper])
    rep = row["reproduced"]["metrics"]["AP"]
    assert rep["n"] == 3 and rep["mean"] == pytest.approx(28.0) and rep["std"] == pytest.approx(1.0)
    assert row["reported"]["metrics"]["AP"] == 27.6  # merged into the paper row
    assert row["reproduced"]["cells"] == ["c0", "c1", "c2"]
    path = write_row(row, tmp_path)
    assert path == tmp_path / row_filename(row) and validate_all(tmp_path) == []


def test_external_cells_do_not_claim_the_suite_detector(tmp_path):
    """A `bench run --external` cell (profile `external`) was trained elsewhere: its row must not say Faster R-CNN
    with the suite's backbone."""
    df = pd.DataFrame([{"method": "mmdet_retina", "dataset": "bccd", "noise_model": "uniform", "noise_level": 0.4,
                        "seed": 0, "profile": "external", "cell": "c0", "AP": 0.3, "AP50": 0.6}])
    (row,) = rows_from_results(df)
    assert row["detector"] == row["backbone"] == row["schedule"] == "unknown (external run)"
    assert row["method"] == "mmdet_retina" and row["reproduced"]["metrics"]["AP"]["mean"] == 30.0
    assert validate_all(tmp_path) == [] and write_row(row, tmp_path).is_file() and validate_all(tmp_path) == []


def test_cli_validate_and_render(tmp_path):
    good = _row(reported=30.0)
    write_row(good, tmp_path)
    runner = CliRunner()
    res = runner.invoke(cli, ["leaderboard", "validate", "--entries", str(tmp_path)])
    assert res.exit_code == 0 and "1 rows valid" in res.output
    res = runner.invoke(cli, ["leaderboard", "render", "--entries", str(tmp_path), "--out", str(tmp_path / "out"), "--latex"])
    assert res.exit_code == 0, res.output
    assert "30.0" in (tmp_path / "out" / "README.md").read_text()
    assert (tmp_path / "out" / "leaderboard.tex").exists() and (tmp_path / "out" / "index.html").exists()
    bad = copy.deepcopy(good)
    bad["method"] = "other"
    bad["noise"]["level"] = -0.1
    write_json(tmp_path / "coco2017" / "x.json", bad)
    res = runner.invoke(cli, ["leaderboard", "validate", "--entries", str(tmp_path)])
    assert res.exit_code != 0 and "noise.level" in res.output


def test_committed_rendering_is_up_to_date():
    rows = [r for _, r in load_rows(ENTRIES)]
    expected = to_markdown(build_tables(rows), 1.0)
    assert (ENTRIES.parent / "README.md").read_text() == expected, "run `bench leaderboard render`"
    assert read_json(next(ENTRIES.rglob("*.json")))["schema_version"] == 1
