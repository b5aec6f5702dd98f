"""Reports end to end on a hand-built results store (no training): tables with known means and stds, plots
without a display, galleries, the CLI, and the self-contained HTML page in headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from store_kit import FAST, cid, make_store

from benchmark.errors import BenchError
from benchmark.io import read_json, write_json
from benchmark.owned import OwnedFolder
from benchmark.runner import store as st
from benchmark.runner.store import mark_done
from reports import ReportConfig, build_report
from reports.store import load_cells
from reports.tables import auc, metric_table, summary_table, to_latex, to_markdown

# a cheaper report for the tests that check plumbing rather than content


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("reports"))


@pytest.fixture(scope="module")
def built(store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report-out")
    return build_report(store, out, progress=False)


# ---- store and tables --------------------------------------------------------------------------------------------

def test_load_cells_reads_done_cells_only(store):
    frame = load_cells(store)
    assert len(frame) == 18
    assert "unfinished" not in set(frame["cell"])
    assert set(frame["method"]) == {"faster_rcnn", "oa_mil", "clean"}
    row = frame[frame["cell"] == cid("faster_rcnn", 0.1, 1)].iloc[0]
    assert row["AP"] == pytest.approx(0.42) and row["VOC_AP50"] == pytest.approx(0.74)
    assert row["noise_level"] == 0.1 and row["dataset"] == "toy" and Path(row["path"]).is_dir()


def test_metric_table_means_stds_and_best(store):
    t = metric_table(load_cells(store), ["AP", "AP75"], "t")
    assert list(t.mean.index) == ["faster_rcnn", "oa_mil", "clean"]  # store order, oracle last
    assert t.mean.loc["faster_rcnn", ("noise 0.1", "AP")] == pytest.approx(42.0)
    assert t.std.loc["faster_rcnn", ("noise 0.1", "AP")] == pytest.approx(2.0)
    assert t.std.loc["faster_rcnn", ("noise 0.3", "AP")] == pytest.approx(np.std([20, 22, 27], ddof=1))
    assert t.n.loc["oa_mil", ("noise 0.3", "AP")] == 3
    best = t.best()
    assert best.loc["oa_mil", ("noise 0.3", "AP")] and not best.loc["faster_rcnn", ("noise 0.3", "AP")]
    assert not best.loc["clean"].any()  # the oracle is never "best"
    md = to_markdown(t)
    assert "**32.0** ± 2.0 (3)" in md and "42.0 ± 2.0 (3)" in md and "*clean (oracle)*" in md
    tex = to_latex(t)
    assert "\\toprule" in tex and "\\cmidrule(lr){2-3}" in tex and "\\textbf{32.0} $\\pm$ 2.0" in tex
    assert "faster\\_rcnn" in tex and "\\textit{clean (oracle)}" in tex


def test_summary_retention_and_auc(store):
    t = summary_table(load_cells(store), "s")
    # retention per seed = AP / oracle mean (52.0): faster_rcnn at 0.1 -> mean 42/52
    assert t.mean.loc["faster_rcnn", ("retention %", "noise 0.1")] == pytest.approx(100 * 42 / 52)
    assert t.std.loc["faster_rcnn", ("retention %", "noise 0.1")] == pytest.approx(100 * 2 / 52)
    # AUC over levels 0.1..0.3 = mean of the two level means (trapezoid / span)
    assert t.mean.loc["oa_mil", ("AUC", "AP")] == pytest.approx((46 + 32) / 2)
    assert t.mean.loc["oa_mil", ("rAUC %", "AP")] == pytest.approx(100 * 39 / 52)


def test_an_oracle_rerun_in_a_variant_is_still_the_oracle_but_not_the_reference(store):
    """`clean [train.lr=0.002]` (the oracle of a `--set` rerun into the same store) is an oracle row, never "best"
    among the methods; retention keeps dividing by the default-variant oracle."""
    frame = load_cells(store)
    extra = frame[frame["method"] == "clean"].assign(method="clean [train.lr=0.002]", AP=0.90,
                                                      cell=lambda d: d["cell"] + "-v")
    frame = pd.concat([frame, extra], ignore_index=True)
    t = metric_table(frame, ["AP"], "t")
    assert t.oracle_rows == ["clean", "clean [train.lr=0.002]"]
    assert list(t.mean.index)[-2:] == ["clean", "clean [train.lr=0.002]"]
    assert not t.best().loc["clean [train.lr=0.002]"].any()
    s = summary_table(frame, "s")
    assert s.mean.loc["faster_rcnn", ("retention %", "noise 0.1")] == pytest.approx(100 * 42 / 52)
    assert "(clean)" in s.note


def test_no_retention_against_an_oracle_that_did_not_learn(store):
    frame = load_cells(store)
    frame.loc[frame["method"] == "clean", "AP"] = 0.002  # 0.2 AP points: a failed or far too short run
    t = summary_table(frame, "s")
    assert t.mean.xs("retention %", axis=1, level=0).isna().all().all()
    assert t.mean.xs("rAUC %", axis=1, level=0).isna().all().all()
    assert "did not learn" in t.note
    assert t.mean.loc["oa_mil", ("AUC", "AP")] == pytest.approx((46 + 32) / 2)  # AUC needs no oracle


def test_auc_is_normalised_trapezoid():
    s = pd.Series({0.0: 50.0, 0.2: 30.0, 0.4: 10.0})
    assert auc(s, [0.0, 0.2, 0.4]) == pytest.approx(30.0)
    assert auc(pd.Series({0.0: 40.0, 0.1: 40.0, 0.4: 10.0}), [0.0, 0.1, 0.4]) == pytest.approx(
        (0.1 * 40 + 0.3 * 25) / 0.4)
    assert np.isnan(auc(s, [0.2]))


# ---- the built report ------------------------------------------------------------------------------------------

def test_report_writes_every_format(built):
    out = built.parent
    assert built.name == "index.html"
    assert (out / "report.md").is_file()
    tables = {p.name for p in (out / "tables").iterdir()}
    for ext in ("md", "tex", "csv"):
        assert f"toy-oamil-cpu_main.{ext}" in tables and f"toy-oamil-cpu_summary.{ext}" in tables
    csv = pd.read_csv(out / "tables" / "toy-oamil-cpu_main.csv")
    row = csv[(csv["row"] == "oa_mil") & (csv["group"] == "noise 0.3") & (csv["metric"] == "AP")].iloc[0]
    assert row["mean"] == pytest.approx(32.0) and row["std"] == pytest.approx(2.0) and row["best"]
    for name in ("ap_vs_noise", "realised_iou", "refined_iou", "modes_training", "modes_test", "tide"):
        for ext in ("png", "svg"):
            p = out / "plots" / f"toy-oamil-cpu_{name}.{ext}"
            assert p.is_file() and p.stat().st_size > 1000, p
    assert Image.open(out / "plots" / "toy-oamil-cpu_ap_vs_noise.png").size[0] > 300
    assert (out / "plots" / "toy-oamil-cpu_ap_vs_noise.svg").read_text().lstrip().startswith("<?xml")


def test_report_failure_mode_tables(built):
    out = built.parent / "tables"
    rates = pd.read_csv(out / "toy-oamil-cpu_modes_training.csv")
    oa = rates[(rates["method"] == "oa_mil") & (rates["variant"] == "any class")]
    assert set(oa["mode"]) == {"good", "group", "drift", "part", "oversize", "shift"}
    # the hand-made group box is in every oa_mil cell: 3 seeds per level
    assert oa[(oa["mode"] == "group")]["count"].sum() == 6
    assert (oa.groupby("noise_level")["pct_all"].sum().round(6) == 100).all()
    sens = pd.read_csv(out / "toy-oamil-cpu_sensitivity_training.csv")
    assert set(zip(sens["bad_iou"], sens["group_cover"])) == {(b, c) for b in (0.3, 0.5) for c in (0.6, 0.7, 0.8)}
    # a stricter "good" threshold can only make more boxes bad
    bad = sens[sens["mode"] == "good"].groupby("bad_iou")["count"].sum()
    assert bad[0.3] >= bad[0.5]
    assert (out / "toy-oamil-cpu_modes_test_by_size.csv").is_file()
    gal = built.parent / "galleries"
    assert (gal / "toy-oamil-cpu_training_group.png").is_file()
    assert Image.open(gal / "toy-oamil-cpu_test_good.png").size[0] >= 400


def test_report_tide_tables(built):
    tide = pd.read_csv(built.parent / "tables" / "toy-oamil-cpu_tide_coco_AP50_all.csv")
    assert {"dAP_Loc", "dAP_Dupe", "dAP_Bkg", "dAP_FalsePos", "n_Miss"} <= set(tide.columns)
    assert set(tide["size"]) == {"all", "small", "medium", "large"}
    # every synthetic image has one background detection
    assert (tide[tide["size"] == "all"]["n_Bkg"] >= 3).all()
    voc = pd.read_csv(built.parent / "tables" / "toy-oamil-cpu_tide_voc_AP50_all.csv")
    assert len(voc) == len(tide)


def test_report_html_is_self_contained(built):
    text = built.read_text()
    assert "<table class='results'>" in text and "data:image/png;base64," in text
    assert "src='http" not in text and "href='http" not in text and "<script" not in text
    assert "oracle" in text and "abc123" in text  # environment section
    assert "manifest: changed" in text  # noise manifest summary


def test_missing_images_and_predictions_are_reported_skips(tmp_path):
    store = make_store(tmp_path, with_images=False, seeds=1)
    lost, altered = cid("faster_rcnn", 0.1, 0), cid("oa_mil", 0.3, 0)
    (store / "cells" / lost / "predictions.json").unlink()
    (store / "cells" / altered / "metrics.json").write_text('{"coco": {"AP": 0.9}}')  # altered after DONE
    lines = []
    index = build_report(store, formats=("html",), config=FAST, progress=False, echo=lines.append)
    assert index == store / "report" / "index.html"
    text = index.read_text()
    assert lines == [f"left out: 2 corrupt cell(s): {', '.join(sorted([lost, altered]))} (`bench run` with the "
                     "same options redoes them)"]
    redo = "rerun the sweep to redo it: `bench run --dry-run` lists it as corrupt → redo"
    assert (f"1 cell(s): DONE but left out of the results table: faster_rcnn oamil=0.1 seed=0 (toy), corrupt: "
            f"predictions.json is missing (cells/{lost}; {redo})") in text
    assert (f"1 cell(s): DONE but left out of the results table: oa_mil oamil=0.3 seed=0 (toy), corrupt: "
            f"metrics.json changed size since the cell finished (cells/{altered}; {redo})") in text
    assert "1 cell(s): not finished: unreadable config.json, not started (log: cells/unfinished/cell.log)" in text
    assert not (store / "report" / "report.md").exists() and not list((store / "report" / "tables").glob("*"))
    # galleries still drawn, on a grey canvas
    assert Image.open(store / "report" / "galleries" / "toy-oamil-cpu_training_group.png").size[0] > 300


def test_a_rebuilt_report_holds_only_its_own_files(tmp_path):
    store = make_store(tmp_path, with_images=False, seeds=1)
    out = store / "report"
    build_report(store, formats=("md", "html", "csv"), config=FAST, progress=False)
    stale = out / "galleries" / "old-group_test_drift.png"  # a group an earlier report had, in its record
    stale.write_bytes(b"png")
    earlier = OwnedFolder(out, "bench report").open()
    earlier.now = dict(earlier.before)
    earlier.add(stale)
    earlier.save()
    mine = out / "galleries" / "my-notes.png"  # the user's, never recorded: kept
    mine.write_bytes(b"mine")
    assert (out / "index.html").is_file() and list((out / "tables").glob("*.csv"))
    build_report(store, formats=("md",), config=FAST, progress=False)  # fewer formats, same cells
    assert not stale.exists() and mine.read_bytes() == b"mine"
    assert not (out / "index.html").exists() and not list((out / "tables").glob("*.csv"))  # formats dropped
    assert (out / "report.md").is_file() and list((out / "tables").glob("*.md"))
    assert list((out / "galleries").glob("*.png")) and list((out / "plots").glob("*.png"))


def test_failed_and_half_run_cells_are_listed_in_the_report(tmp_path):
    store = make_store(tmp_path, with_images=False, seeds=1)
    failed = store / "cells" / cid("oa_mil", 0.3, 0)
    (failed / "DONE").unlink()
    write_json(failed / "FAILED", {"error": "BenchError: out of memory"})
    (store / "cells" / cid("faster_rcnn", 0.1, 0) / "DONE").unlink()  # interrupted: outputs but no marker
    text = build_report(store, formats=("md",), config=FAST, progress=False).read_text()
    assert "not finished: oa_mil oamil=0.3 seed=0 (toy), failed: BenchError: out of memory " \
           f"(log: cells/{failed.name}/cell.log)" in text
    assert (f"not finished: faster_rcnn oamil=0.1 seed=0 (toy), partial (log: cells/{cid('faster_rcnn', 0.1, 0)}/"
            "cell.log)") in text


def test_a_store_without_finished_cells_says_what_it_holds(tmp_path):
    """Only failed / half-run cells: the one-line error counts them and quotes a failure, not just "no DONE"."""
    store = make_store(tmp_path, with_images=False, seeds=1)
    for d in (store / "cells").iterdir():
        (d / "DONE").unlink(missing_ok=True)
    write_json(store / "cells" / cid("oa_mil", 0.3, 0) / "FAILED", {"error": "BenchError: out of\nmemory"})
    with pytest.raises(BenchError) as info:
        build_report(store, formats=("md",), config=FAST, progress=False)
    text = str(info.value)
    assert "no finished cells (1 failed, " in text and "partial" in text and "\n" not in text
    assert f"e.g. cell {cid('oa_mil', 0.3, 0)[:8]} (oa_mil oamil=0.3 seed=0 (toy)): BenchError: out of memory" in text


def test_done_cells_left_out_of_the_table_are_named_with_their_problem(tmp_path):
    store = make_store(tmp_path, with_images=False, seeds=1)
    cells = store / "cells"
    lost, bad_done, bad_config = cid("faster_rcnn", 0.3, 0), cid("clean", 0.1, 0), cid("clean", 0.3, 0)
    (cells / lost / "metrics.json").unlink()
    (cells / bad_done / "DONE").write_text("{not json")
    (cells / bad_config / "config.json").write_text("{not json")
    text = build_report(store, formats=("md",), config=FAST, progress=False).read_text()
    skipped = text[text.index("## Skipped"):]
    redo = "rerun the sweep to redo it: `bench run --dry-run` lists it as corrupt → redo"
    assert (f"DONE but left out of the results table: faster_rcnn oamil=0.3 seed=0 (toy), corrupt: metrics.json is "
            f"missing (cells/{lost}; {redo})") in skipped
    assert ("DONE but left out of the results table: clean oamil=0.1 seed=0 (toy), corrupt: unreadable DONE ("
            in skipped and f"(cells/{bad_done}; {redo})" in skipped)
    assert (f"DONE but left out of the results table: corrupt: config.json changed size since the cell finished "
            f"(cells/{bad_config}; {redo})") in skipped


def test_a_cell_the_table_leaves_out_is_one_the_runner_redoes(tmp_path):
    """A DONE that recorded an unparsable metrics.json: one check for every reader, so the runner calls it corrupt
    too and redoes it (it used to count it done while the table left it out)."""
    from benchmark.runner.cells import cell_id
    from reports.store import unloaded_cell

    config = {"schema": 1, "method": "m", "method_config": {}, "profile": "cpu", "dataset": {"name": "toy"},
              "noise": {"model": "oamil", "level": 0.1, "params": {}, "seed": 0, "rng": "numpy"}, "seed": 0}
    config["cell_id"] = cid = cell_id(config)
    cell = tmp_path / "cells" / cid
    write_json(cell / "config.json", config)
    write_json(cell / "predictions.json", [])
    (cell / "metrics.json").write_text("{not json")
    mark_done(cell)
    assert unloaded_cell(cell) == (cid, "m oamil=0.1 seed=0 (toy)", "corrupt: metrics.json is not valid JSON", True)
    assert st.cell_status(cell) == st.CORRUPT


# ---- CLI ---------------------------------------------------------------------------------------------------------

def _bench(capsys, *args) -> tuple[int, str, str]:
    from benchmark.cli import main

    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_errors_are_one_line(tmp_path, capsys):
    code, _, err = _bench(capsys, "report", str(tmp_path / "nope"))
    assert code == 2 and err.startswith("error: ") and "results directory not found" in err
    (tmp_path / "plain").mkdir()
    code, _, err = _bench(capsys, "report", str(tmp_path / "plain"))
    assert code == 2 and err.startswith("error: ") and "not a results store" in err
    (tmp_path / "empty" / "cells").mkdir(parents=True)
    code, _, err = _bench(capsys, "report", str(tmp_path / "empty"))
    assert code == 2 and "no finished cells" in err and "Traceback" not in err
    code, _, err = _bench(capsys, "report", str(tmp_path / "empty"), "--format", "md,pdf")
    assert code == 2 and "unknown report format 'pdf'" in err
    cfg = tmp_path / "cfg.json"
    write_json(cfg, {"failure_modes": {"bad_iuo": 0.4}})
    code, _, err = _bench(capsys, "report", str(tmp_path / "empty"), "--config", str(cfg))
    assert code == 2 and "bad_iuo" in err and len(err.strip().splitlines()) == 1


def test_cli_writes_selected_formats_without_torch(tmp_path):
    """`bench report` end to end in a fresh interpreter, which must not import torch or any method."""
    store = make_store(tmp_path, seeds=1)
    cfg = tmp_path / "cfg.json"
    write_json(cfg, {"failure_modes": {"bad_iou": 0.3}, "gallery_per_mode": 2, "tide_styles": ["coco"],
                     "tide_sizes": ["all"], "sensitivity": {"bad_iou": [0.3]}})
    out = tmp_path / "r"
    code = ("import sys\nfrom benchmark.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'methods')]\n"
            "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code, "report", str(store), "--out", str(out), "--format", "md,latex",
                        "--config", str(cfg), "--quiet"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == f"report: {out / 'report.md'}"
    assert not (out / "index.html").exists()
    assert list((out / "tables").glob("*.tex")) and not list((out / "tables").glob("*.csv"))
    assert "IoU(D,G) >= 0.3" in (out / "report.md").read_text()


def test_config_from_dict_rejects_unknown_keys():
    from benchmark.errors import BenchError

    assert ReportConfig.from_dict({"tide": {"pos_threshold": 0.75}}).tide.pos_threshold == 0.75
    with pytest.raises(BenchError, match="unknown report setting"):
        ReportConfig.from_dict({"colour": "red"})
    with pytest.raises(BenchError, match='tide.style is "lvis", expected one of coco, voc'):
        ReportConfig.from_dict({"tide": {"style": "lvis"}})


@pytest.mark.parametrize("settings, message", [
    ({"failure_modes": {"bad_iou": "x"}}, 'failure_modes.bad_iou is "x", expected a number in [0, 1]'),
    ({"gallery_per_mode": "3"}, 'gallery_per_mode is "3", expected a whole number >= 0'),
    ({"oracle_methods": "clean"}, 'oracle_methods is "clean", expected a list of strings'),
])
def test_cli_rejects_a_config_value_of_the_wrong_type_in_one_line(tmp_path, capsys, settings, message):
    store = make_store(tmp_path, with_images=False, seeds=1)
    cfg = tmp_path / "cfg.json"
    write_json(cfg, settings)
    code, out, err = _bench(capsys, "report", str(store), "--out", str(tmp_path / "r"), "--config", str(cfg),
                            "--quiet")
    assert (code, out, err) == (2, "", f"error: {cfg}: bad report config: {message}\n")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("settings, message", [
    ({"failure_modes": {"bad_iou": True}}, "failure_modes.bad_iou is true, expected a number in [0, 1]"),
    ({"failure_modes": {"group_cover": 1.5}}, "failure_modes.group_cover is 1.5, expected a number in [0, 1]"),
    ({"failure_modes": {"group_min_objects": 2.5}},
     "failure_modes.group_min_objects is 2.5, expected a whole number >= 1"),
    ({"failure_modes": {"part_area_ratio": -1}}, "failure_modes.part_area_ratio is -1, expected a number >= 0"),
    ({"failure_modes": [0.5]}, "failure_modes is [0.5], expected a JSON object of failure-mode settings"),
    ({"tide": {"max_dets": "100"}}, 'tide.max_dets is "100", expected a whole number >= 1'),
    ({"tide": {"bg_threshold": 0.6}}, "tide.bg_threshold 0.6 is above tide.pos_threshold 0.5"),
    ({"gallery_seed": -1}, "gallery_seed is -1, expected a whole number >= 0"),
    ({"tide_iou_range": "yes"}, 'tide_iou_range is "yes", expected true or false'),
    ({"tide_sizes": ["all", "tiny"]}, 'tide_sizes is ["all", "tiny"], expected a list of strings from: all, small'),
    ({"tide_styles": "coco"}, 'tide_styles is "coco", expected a list of strings from: coco, voc'),
    ({"oracle_methods": ["clean", 1]}, 'oracle_methods is ["clean", 1], expected a list of strings'),
    ({"sensitivity": {"bad_iou": 0.3}}, "sensitivity.bad_iou is 0.3, expected a non-empty list of values"),
    ({"sensitivity": {"bad_iou": [0.3, 2]}}, "sensitivity.bad_iou is 2, expected a number in [0, 1]"),
    ({"sensitivity": {"bad_iuo": [0.3]}}, "unknown sensitivity setting 'bad_iuo'"),
])
def test_config_values_are_checked_against_their_defaults(settings, message):
    from benchmark.errors import BenchError

    with pytest.raises(BenchError) as exc:
        ReportConfig.from_dict(settings, "cfg.json")
    assert str(exc.value).startswith(f"cfg.json: bad report config: {message}")
    assert "\n" not in str(exc.value)


def test_a_valid_config_is_read_with_the_defaults_types():
    cfg = ReportConfig.from_dict({
        "failure_modes": {"bad_iou": 1, "group_min_objects": 3, "min_score": 0}, "tide": {"pos_threshold": 0.75},
        "oracle_methods": ["clean"], "sensitivity": {"bad_iou": [0.3, 1], "group_min_objects": [2, 3]},
        "gallery_per_mode": 0, "gallery_seed": 7, "tide_sizes": ["all"], "tide_styles": [], "tide_iou_range": True})
    fm = cfg.failure_modes
    assert (fm.bad_iou, fm.group_min_objects, fm.min_score, fm.group_cover) == (1.0, 3, 0.0, 0.7)
    assert isinstance(fm.bad_iou, float) and cfg.tide.pos_threshold == 0.75 and cfg.tide.max_dets == 100
    assert cfg.oracle_methods == ("clean",)  # a list, not the characters of a string
    assert cfg.sensitivity == (("bad_iou", (0.3, 1.0)), ("group_min_objects", (2, 3)))
    assert (cfg.gallery_per_mode, cfg.gallery_seed, cfg.tide_sizes, cfg.tide_styles, cfg.tide_iou_range) == \
        (0, 7, ("all",), (), True)
    assert ReportConfig.from_dict({}) == ReportConfig()


def test_plots_need_no_display(tmp_path):
    """Figures are drawn with matplotlib's object API (no pyplot figures): no GUI backend, no DISPLAY needed."""
    code = ("import sys, numpy as np\nfrom pathlib import Path\nfrom reports import plots\n"
            "fig = plots.realised_iou({0.1: np.array([0.8, 0.9]), 0.4: np.array([0.3, 0.5])})\n"
            f"paths = plots.save_figure(fig, Path({str(tmp_path / 'f')!r}))\n"
            "import matplotlib\nassert matplotlib.get_backend().lower() == 'agg', matplotlib.get_backend()\n"
            "print(sorted(paths))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['png', 'svg']"
    assert Image.open(tmp_path / "f.png").size[0] > 300 and (tmp_path / "f.svg").read_text().count("<path") > 5


# ---- HTML in a real browser -------------------------------------------------------------------------------------

def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_html_renders_in_headless_chromium(built, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no `chromium` on PATH (Debian/Ubuntu: apt-get install -y chromium)")
    shot = tmp_path / "shot.png"
    base = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    env = dict(os.environ, HOME=str(tmp_path))
    r = subprocess.run(base + [f"--screenshot={shot}", "--window-size=1280,2000", built.as_uri()],
                       capture_output=True, text=True, timeout=120, env=env)
    assert shot.is_file(), r.stderr[-2000:]
    console = [line for line in r.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    dom = subprocess.run(base + ["--dump-dom", built.as_uri()], capture_output=True, text=True, timeout=120, env=env)
    assert "<table class=\"results\">" in dom.stdout and "data:image/png;base64," in dom.stdout
    assert not [line for line in dom.stderr.splitlines() if "CONSOLE" in line], dom.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape[:2] == (2000, 1280)
    # the page is not blank: table text (dark pixels) and the AP plot's method lines (matplotlib's tab10 orange,
    # used only by the second method's curve) were painted in the first screen
    assert (img.sum(axis=2) < 200).mean() > 0.002
    orange = np.abs(img - np.array([255, 127, 14])).max(axis=2) < 40
    assert orange.sum() > 200, orange.sum()


def test_report_noise_figures_count_the_boxes_noise_stats_and_the_manifest_count():
    """One definition of realised IoU everywhere: crowd boxes (never perturbed) are left out, or they would pull
    the report's mean towards 1 while `bench noise stats` and the manifest say otherwise."""
    import orjson

    from benchmark.datasets.core import DetectionDataset
    from benchmark.evaluation.failure_modes import classify_training
    from noise import make_noisy, noise_stats
    from reports.analysis import realised_ious, refined_ious

    rng = np.random.default_rng(3)
    images = [{"id": i + 1, "file_name": f"{i}.png", "width": 200, "height": 150} for i in range(4)]
    anns = []
    for k in range(24):
        x, y = rng.uniform(5, 100, 2)
        anns.append({"id": k + 1, "image_id": 1 + k % 4, "category_id": 1, "bbox": [x, y, 40.0, 30.0],
                     "area": 1200.0, "iscrowd": int(k % 5 == 0)})
    ds = DetectionDataset.from_coco({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}]})
    made = make_noisy(ds, "uniform", 0.4, seed=1)
    ious = realised_ious(orjson.loads(made.payload))
    stats, manifest = noise_stats(made.dataset)["rows"]["all"], made.manifest["realised_iou"]["all"]
    assert len(ious) == stats["n"] == manifest["n"] == 24 - 5
    noisy = orjson.loads(made.payload)
    assert len(classify_training(noisy, None)) == 24 - 5  # the failure modes count the same boxes
    same = [{"id": a["id"], "bbox": a["bbox"]} for a in noisy["annotations"]]  # a method refining every box
    assert len(refined_ious(noisy, same)[0]) == 24 - 5  # and so do the refined-box histograms
    assert round(float(ious.mean()), 4) == stats["mean_iou"] == manifest["mean"] < 0.9


def test_box_errors_split_a_mean_iou_into_centre_and_size_bias_and_spread():
    """Two objects, clean 10 x 20 at the origin. Noisy: shifted right by 2 / left by 2 (x error +-20 %: bias 0,
    spread 20); refined: both 12 x 20 about the true centre (w log 1.2 each: bias 18.2, spread 0). A crowd box and a
    degenerate refined box are left out."""
    from reports.analysis import box_error_table, box_errors

    clean = [0.0, 0.0, 10.0, 20.0]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2.0, 0.0, 10.0, 20.0], "true_bbox": clean},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [-2.0, 0.0, 10.0, 20.0], "true_bbox": clean},
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": clean, "true_bbox": clean, "iscrowd": 1},
            {"id": 4, "image_id": 1, "category_id": 1, "bbox": clean, "true_bbox": clean}]
    noisy = {"images": [{"id": 1, "width": 50, "height": 50}], "annotations": anns, "categories": [{"id": 1}]}
    refined = [{"id": 1, "bbox": [-1.0, 0.0, 12.0, 20.0]}, {"id": 2, "bbox": [-1.0, 0.0, 12.0, 20.0]},
               {"id": 3, "bbox": clean}, {"id": 4, "bbox": [0.0, 0.0, 0.0, 20.0]}]
    table = box_error_table(box_errors(noisy, refined), []).set_index("boxes")
    assert table.loc["noisy", "n"] == 3 and table.loc["refined", "n"] == 2  # id 4's refined box is degenerate
    assert table.loc["noisy", "x spread %"] == pytest.approx(100 * np.std([0.2, -0.2, 0.0]))
    assert table.loc["noisy", "x bias %"] == pytest.approx(0.0) and table.loc["noisy", "w bias %"] == 0.0
    assert table.loc["refined", "w bias %"] == pytest.approx(100 * np.log(1.2))
    assert table.loc["refined", "w spread %"] == pytest.approx(0.0, abs=1e-9)
    assert table.loc["refined", "IoU"] == pytest.approx(10 / 12)
    assert table.loc["noisy", "IoU"] == pytest.approx(np.mean([8 / 12, 8 / 12, 1.0]))


def test_plain_tables_print_no_negative_zero():
    from reports.tables import plain_markdown

    md = plain_markdown(pd.DataFrame({"bias": [-0.04, -0.06, 0.0]}), decimals=1)
    assert md.splitlines()[2:] == ["| 0.0 |", "| -0.1 |", "| 0.0 |"]


def test_report_has_the_box_error_table(built):
    axes = pd.read_csv(built.parent / "tables" / "toy-oamil-cpu_refined_axes.csv")
    oa = axes[axes["method"] == "oa_mil"]
    assert set(oa["boxes"]) == {"noisy", "refined"} and oa["IoU"].between(0, 1).all()
    assert "centre offset (x, y)" in (built.parent / "report.md").read_text()


# ---- training curves -------------------------------------------------------------------------------------------

def _write_scalars(cell: Path, seed: int, with_diagnostic: bool) -> None:
    lines = ["iteration,epoch,lr,seconds,loss,loss_classifier" + (",oamil_mean_best_score" if with_diagnostic else "")]
    for it in (20, 40):
        loss = 1.0 + seed - it / 40  # seeds 0/1/2 at iteration 40: 0, 1, 2 -> mean 1, std 1
        lines.append(f"{it},{it / 20:g},0.001,{it / 10:g},{loss:g},{loss / 2:g}" + (",0.5" if with_diagnostic else ""))
    (cell / "train").mkdir(exist_ok=True)
    (cell / "train" / "scalars.csv").write_text("\n".join(lines) + "\n")


def test_training_curves_pool_seeds_and_reach_the_report(tmp_path):
    from reports.analysis import Skips
    from reports.curves import pooled, training_curves

    store = make_store(tmp_path, seeds=3)
    for cell in (store / "cells").iterdir():
        if cell.name != "unfinished":
            config = read_json(cell / "config.json")
            _write_scalars(cell, config["seed"], with_diagnostic=config["method"] == "oa_mil")
    unreadable = cid("clean", 0.1, 2)
    (store / "cells" / unreadable / "train" / "scalars.csv").write_bytes(b"iteration,epoch\n\xff\xfe")
    cells = load_cells(store)
    skips = Skips()
    stats = pooled(training_curves(cells, skips))
    at = stats[(stats.method == "faster_rcnn") & (stats.noise_level == 0.3) & (stats.scalar == "loss")
               & (stats.iteration == 40)].iloc[0]
    assert (at["mean"], at["std"], at["n"]) == (pytest.approx(1.0), pytest.approx(1.0), 3)
    assert set(stats.loc[stats.method == "oa_mil", "scalar"]) == {"loss", "loss_classifier", "lr",
                                                                   "oamil_mean_best_score"}
    assert "oamil_mean_best_score" not in set(stats.loc[stats.method == "faster_rcnn", "scalar"])
    assert any(unreadable in cells_ for cells_ in skips.reasons.values())  # unreadable file: a counted skip
    out = tmp_path / "out"
    build_report(store, out, config=FAST, progress=False)
    plots = {p.name for p in (out / "plots").iterdir()}
    assert any(n.endswith("_loss_curves.png") for n in plots)
    assert any(n.endswith("_diagnostic_curves.png") for n in plots)
    assert "Training curves" in (out / "report.md").read_text()


def test_the_first_screen_answers_without_horizontal_scroll(built, tmp_path):
    """At 1280 px wide the first screen holds the headline and the AP table, and nothing in it runs past the
    right edge (measured in the browser on a copy of the page with a probe script; the page itself has none)."""
    browser = _chromium()
    if browser is None:
        pytest.skip("no `chromium` on PATH (Debian/Ubuntu: apt-get install -y chromium)")
    probe = ("<script>addEventListener('load', () => { let right = 0, lead = 0;"
             " for (const e of document.body.querySelectorAll('*')) { const r = e.getBoundingClientRect();"
             " if (r.top < 800 && r.height > 0) right = Math.max(right, r.right); }"
             " for (const p of document.querySelectorAll('p.lead')) if (p.getBoundingClientRect().top < 800) lead++;"
             " const t = document.querySelector('table.results'); const ap = t ? t.getBoundingClientRect().top : 1e9;"
             " document.title = `probe ${Math.ceil(right)} ${document.documentElement.scrollWidth} ${lead} ${ap}`; });"
             "</script>")
    page = tmp_path / "probe.html"
    page.write_text(built.read_text().replace("</body>", probe + "</body>"))
    env = dict(os.environ, HOME=str(tmp_path))
    r = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,800",
                        "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                       capture_output=True, text=True, timeout=120, env=env)
    found = re.search(r"<title>probe (\d+) (\d+) (\d+) ([\d.e+]+)</title>", r.stdout)
    assert found, r.stderr[-2000:]
    right, scroll_width, leads, ap_top = (float(v) for v in found.groups())
    assert right <= 1280 and scroll_width <= 1280, (right, scroll_width)
    assert leads >= 1 and ap_top < 800, (leads, ap_top)  # the answer and the AP table are in the first screen
