"""Leaderboard: schema validation, rendering (sorting, deltas, missing values), adding reproduced rows."""

from __future__ import annotations

import copy
import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from leaderboard_kit import _row

from benchmark.cli import cli, main
from benchmark.errors import BenchError
from benchmark.io import read_json, write_json
from benchmark.runner import store as st
from benchmark.runner.cells import cell_id
from leaderboard.add import downgrade, rows_from_results
from leaderboard.render import build_tables, to_html, to_latex, to_markdown
from leaderboard.rows import ENTRIES, load_rows, validate_all, write_row
from leaderboard.schema import RowError, row_errors, row_filename, validate_row


def test_shipped_rows_are_valid_and_cover_both_papers():
    assert validate_all(ENTRIES) == []
    every = [r for _, r in load_rows(ENTRIES)]
    rows = [r for r in every if r["reported"] is not None]  # the papers' rows
    # the suite's own CPU rows (shapes, BCCD) are reproduced only, on the cpu profile, with their seeds
    cpu = [r for r in every if r["reported"] is None]
    assert cpu and all(r["profile"] == "cpu" and r["dataset"] in ("shapes", "bccd") and r["reproduced"]["seeds"]
                       for r in cpu)
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
    (lambda r: r.update(reproduced={**_row(reproduced=30.0)["reproduced"], "seeds": [0, 0, 1]}),
     "reproduced.seeds: a seed is listed twice"),
    (lambda r: r.update(reproduced={**_row(reproduced=30.0)["reproduced"], "seeds": [0, 1]}),
     "reproduced.metrics.AP.n: 3 seeds, but reproduced.seeds lists 2"),
])
def test_bad_rows_are_rejected_with_the_field_named(mutate, field):
    row = _row(reported=30.0)
    assert row_errors(row) == []
    mutate(row)
    errors = row_errors(row)
    assert any(field in e for e in errors), errors
    with pytest.raises(RowError, match="bad.json"):
        validate_row(row, "bad.json")


def test_row_file_names_are_portable():
    row = _row(reported=30.0, dataset="shapes:train=16,val=8,size=64,seed=3")
    path = row_filename(row)
    assert not any(c in str(path) for c in ':*?"<>|') and path.parts[0] == "shapes_train=16,val=8,size=64,seed=3"
    assert row_filename(_row(reported=30.0)).as_posix() == "coco2017/uniform-0.4/m1--R50-FPN.json"  # unchanged


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


def test_rendered_mean_rounds_once():
    """The table must show what the store's own tables show: per-seed AP 12.41 / 12.0852 / 11.9472 average 12.147,
    which is 12.1 at one decimal (a two-decimal row, 12.15, rendered as 12.2)."""
    df = pd.DataFrame([{"method": "sd_locnet", "dataset": "bccd", "noise_model": "uniform", "noise_level": 0.4,
                        "seed": s, "profile": "cpu", "cell": f"c{s}", "AP": ap}
                       for s, ap in enumerate([0.1241, 0.120852, 0.119472])])
    (row,) = rows_from_results(df)
    assert f"{np.mean([12.41, 12.0852, 11.9472]):.1f}" == "12.1"
    assert "| 12.1 ± 0.2 (n=3) |" in to_markdown(build_tables([row]))


def test_external_cells_do_not_claim_the_suite_detector(tmp_path):
    """A `bench run --external` cell (profile `external`) was trained elsewhere: its row must not say Faster R-CNN
    with the suite's backbone."""
    df = pd.DataFrame([{"method": "mmdet_retina", "dataset": "bccd", "noise_model": "uniform", "noise_level": 0.4,
                        "seed": 0, "profile": "external", "cell": "c0", "AP": 0.3, "AP50": 0.6}])
    (row,) = rows_from_results(df)
    assert row["detector"] == row["backbone"] == row["schedule"] == "unknown (external run)"
    assert row["method"] == "mmdet_retina" and row["reproduced"]["metrics"]["AP"]["mean"] == 30.0
    assert validate_all(tmp_path) == [] and write_row(row, tmp_path).is_file() and validate_all(tmp_path) == []


def test_a_variant_row_keeps_its_method_facts():
    """`clean [train.lr=0.002]` is still the oracle (clean-box supervision), and a variant of a method with a paper
    row takes that paper, not its label, as the title."""
    df = pd.DataFrame([{"method": m, "dataset": "coco", "noise_model": "uniform", "noise_level": lv, "seed": 0,
                        "profile": "paper", "cell": m, "AP": 0.3}
                       for m, lv in (("clean [train.lr=0.002]", 0.0), ("ssd_det [method.topk=3]", 0.4))])
    paper = _row("ssd_det", reported=27.6)
    rows = {r["method"]: r for r in rows_from_results(df, existing=[paper])}
    assert rows["clean [train.lr=0.002]"]["extra_supervision"] == "clean boxes (oracle)"
    assert rows["ssd_det [method.topk=3]"]["paper"] == paper["paper"]
    assert rows["ssd_det [method.topk=3]"]["extra_supervision"] == "none"


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


def _cell(store, method="ssd_det", level=0.4, seed=0, ap=0.3):
    """One done cell of a results store, as the runner writes it (config, metrics, predictions, DONE last)."""
    config = {"schema": 1, "code_version": "0.1.0", "method": method, "profile": "cpu", "seed": seed,
              "method_config": {"train": {"seed": seed}},
              "dataset": {"name": "shapes", "kind": "shapes", "train_sha256": "a", "test_sha256": "b"},
              "noise": {"model": "uniform", "level": level, "params": {}, "seed": 0, "rng": "numpy"}}
    config["cell_id"] = cell_id(config)
    d = store / "cells" / config["cell_id"]
    write_json(d / st.CONFIG, config)
    write_json(d / st.PREDICTIONS, [])
    write_json(d / st.METRICS, {"coco": {"AP": ap, "AP50": ap + 0.2}, "train": {"device": "cpu"}})
    st.mark_done(d)
    return d


def _reproduced_ap(entries):
    return {(r["noise"]["level"]): r["reproduced"]["metrics"]["AP"] for _, r in load_rows(entries)}


def test_single_seed_has_null_std_and_renders_without_spread(tmp_path):
    df = pd.DataFrame([{"method": "ssd_det", "dataset": "coco", "noise_model": "uniform", "noise_level": 0.4,
                        "seed": 0, "profile": "paper", "cell": "c0", "AP": 0.458}])
    (row,) = rows_from_results(df, dataset_name="coco2017", test_split="val2017")
    assert row["reproduced"]["metrics"]["AP"] == {"mean": 45.8, "std": None, "n": 1}
    assert row_errors(row) == []
    legacy = _row("legacy", reproduced=40.0)  # written before std became null: std 0.0 with n 1 stays valid
    legacy["reproduced"]["metrics"]["AP"].update(std=0.0, n=1)
    assert row_errors(legacy) == []
    tables = build_tables([row, legacy, _row("multi", reproduced=30.0)])
    md, page, tex = to_markdown(tables), to_html(tables), to_latex(tables)
    for text in (md, page):
        assert "45.8 (n=1)" in text and "40.0 (n=1)" in text and "30.0 ± 0.5 (n=3)" in text
        assert "± 0.0" not in text
    assert " & 45.8 \\\\" in tex and " & 40.0 \\\\" in tex and "30.0$\\pm$0.5" in tex and "$\\pm$0.0" not in tex


@pytest.mark.parametrize("std, n, ok", [
    (None, 1, True), (0.0, 1, True), (1.2, 3, True),
    (None, 3, False), (-0.5, 3, False), ("0.5", 3, False), (True, 3, False), (float("nan"), 3, False),
])
def test_reproduced_std_is_null_only_for_one_seed(std, n, ok):
    row = _row(reproduced=30.0)
    row["reproduced"]["metrics"]["AP"].update(std=std, n=n)
    errors = row_errors(row)
    assert (errors == []) == ok, errors
    if not ok:
        assert any("reproduced.metrics.AP.std" in e for e in errors), errors


def test_add_keeps_complete_rows_when_a_half_finished_store_is_added(tmp_path):
    store, entries = tmp_path / "store", tmp_path / "new" / "board" / "entries"  # the folder does not exist yet
    cells = {(lvl, s): _cell(store, level=lvl, seed=s, ap=0.3 + s / 100) for lvl in (0.2, 0.4) for s in (0, 1)}
    runner = CliRunner()
    res = runner.invoke(cli, ["leaderboard", "add", str(store), "--entries", str(entries)])
    assert res.exit_code == 0, res.output
    assert {lvl: ap["n"] for lvl, ap in _reproduced_ap(entries).items()} == {0.2: 2, 0.4: 2}

    half = tmp_path / "half"
    shutil.copytree(store, half)
    (half / "cells" / cells[(0.4, 1)].name / st.DONE).unlink()  # one cell of the copy lost its DONE marker
    res = runner.invoke(cli, ["leaderboard", "add", str(half), "--entries", str(entries)])
    assert res.exit_code == 0, res.output
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2 and "1 cell(s) are not finished" in warnings[0] and cells[(0.4, 1)].name in warnings[0]
    assert "uniform-0.4" in warnings[1] and "had n=2 seeds, would have n=1" in warnings[1]
    assert cells[(0.4, 1)].name in warnings[1] and "--replace" in warnings[1]
    assert res.stdout.count("wrote ") == 1 and "uniform-0.2" in res.stdout  # the complete row is rewritten as before
    kept = _reproduced_ap(entries)[0.4]
    assert kept["n"] == 2 and kept["std"] is not None

    res = runner.invoke(cli, ["leaderboard", "add", str(half), "--entries", str(entries), "--replace"])
    assert res.exit_code == 0 and res.stdout.count("wrote ") == 2
    assert [line for line in res.stderr.splitlines() if "warning" in line] == [warnings[0]]  # still not finished
    assert _reproduced_ap(entries)[0.4] == {"mean": 30.0, "std": None, "n": 1}

    _cell(store, level=0.4, seed=2, ap=0.35)  # more seeds than the row holds: a superset replaces it
    res = runner.invoke(cli, ["leaderboard", "add", str(store), "--entries", str(entries)])
    assert res.exit_code == 0 and "warning" not in res.stderr
    assert _reproduced_ap(entries)[0.4]["n"] == 3 and validate_all(entries) == []


def test_downgrade_compares_seeds_and_metrics():
    def block(seeds, **metrics):
        return {"metrics": {m: {"mean": 30.0, "std": None if n == 1 else 0.5, "n": n} for m, n in metrics.items()},
                "cells": [f"c{s}" for s in seeds], "seeds": seeds}

    old = block([0, 1], AP=2, AP50=2)
    assert downgrade(None, old) is None
    assert downgrade(old, block([0, 1, 2], AP=3, AP50=3)) is None
    assert downgrade(old, block([5, 6], AP=2, AP50=2)) is None  # a rerun with as many seeds replaces
    assert downgrade(old, block([0], AP=1, AP50=1)) == "had n=2 seeds, would have n=1 (cells missing: c1)"
    assert downgrade(old, block([0, 1], AP=2, AP50=1)) == "AP50 had n=2 seeds, would have n=1"
    assert downgrade(old, block([0, 1], AP=2)) == "AP50 had n=2 seeds, would be missing"
    hand_written = _row(reproduced=30.0)["reproduced"]  # no seeds list: n=3 counts
    assert downgrade(hand_written, block([0, 1], AP=2)) == "had n=3 seeds, would have n=2 (cells missing: abc)"


def test_missing_entries_folder_is_an_error_for_validate_and_render(tmp_path, capsys):
    missing = tmp_path / "nonexistent" / "entries"
    for cmd in (["validate"], ["render", "--out", str(tmp_path / "out")]):
        with pytest.raises(SystemExit) as exc:
            main(["leaderboard", *cmd, "--entries", str(missing)])
        err = capsys.readouterr().err
        assert exc.value.code != 0 and err.strip().splitlines() == [f"error: {missing}: leaderboard entries folder not found"]
    assert not missing.exists() and not (tmp_path / "out").exists()
    with pytest.raises(BenchError, match="not found"):
        validate_all(missing)


def test_add_reports_bad_entries_paths_and_rows_in_one_line(tmp_path, capsys):
    store = tmp_path / "store"
    _cell(store)
    not_a_folder = tmp_path / "entries.txt"
    not_a_folder.write_text("x")
    bad = tmp_path / "bad"
    write_json(bad / "coco2017" / "x.json", {"schema_version": 1})
    for entries, message in ((not_a_folder, "is not a folder"), (bad, "method: missing")):
        for cmd in (["add", str(store)], ["render"]):
            if cmd == ["render"] and entries == not_a_folder:
                continue
            with pytest.raises(SystemExit) as exc:
                main(["leaderboard", *cmd, "--entries", str(entries)])
            err = capsys.readouterr().err.strip().splitlines()
            assert exc.value.code == 2 and len(err) == 1 and message in err[0], err


def test_runnable_paper_rows_name_a_registered_adapter_and_a_store_maps_back_to_them():
    from methods import METHODS

    rows = [r for _, r in load_rows(ENTRIES)]
    runnable = [r for r in rows if r.get("runnable")]
    names = {r.get("run_method", r["method"]) for r in runnable}
    assert {"retinanet", "retinanet_clean", "free_anchor", "co_teaching", "sd_locnet"} <= names
    assert names <= set(METHODS.names())
    paper = next(r for r in runnable if r["run_method"] == "free_anchor" and r["dataset"] == "coco2017"
                 and r["noise"]["level"] == 0.4)
    df = pd.DataFrame([{"method": "free_anchor", "dataset": "coco", "noise_model": "uniform", "noise_level": 0.4,
                        "noise_rng": "oamil-legacy", "seed": 0, "profile": "paper", "cell": "c0", "AP": 0.1}])
    (row,) = rows_from_results(df, dataset_name="coco2017", test_split="val2017", existing=[paper])
    assert row["method"] == "freeanchor" and row["reported"] == paper["reported"]  # merged into the paper row
    assert row_errors({**_row(), "run_method": "x"})[0].startswith("run_method")
