"""One check of "done and intact" for every reader of the store (`benchmark.store_layout.done_problem`): the runner,
the results table, the reports and `bench leaderboard add` agree on which cells are corrupt, leave them out with a
counted line naming them, and `bench run` redoes them. Cells come from a real sweep of the torch-free `dummy`
method (tests/test_runner_dummy.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import test_runner_dummy  # noqa: F401  (registers the `dummy` method)
from test_runner_dummy import TINY

from benchmark import results
from benchmark import store_layout as layout
from benchmark.io import read_json, write_json
from benchmark.runner import store as st
from benchmark.runner.api import SweepOptions, dry_run, run_sweep

TESTS = Path(__file__).resolve().parents[1]  # tests/: the helper modules
REPO = TESTS.parent


def options(store: Path, **kw) -> SweepOptions:
    base = dict(methods="dummy", noise="0.2,0.4", seeds="1", datasets=[TINY], baselines=False, store=store,
                imports=["test_runner_dummy"], report=False, progress=False, jobs=1)
    base.update(kw)
    return SweepOptions(**base)


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Path:
    """A finished two-cell sweep (noise 0.2 and 0.4), copied by each test before it damages it."""
    old = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(TESTS), old])
    try:
        store = tmp_path_factory.mktemp("swept") / "store"
        summary = run_sweep(options(store), echo=lambda s: None)
    finally:
        os.environ["PYTHONPATH"] = old
    assert len(summary.done) == 2
    return store


@pytest.fixture
def store(swept, tmp_path) -> Path:
    out = tmp_path / "store"
    shutil.copytree(swept, out)
    return out


def _fast():
    from reports import ReportConfig

    return ReportConfig(gallery_per_mode=1, tide_styles=("coco",), tide_sizes=("all",),
                        sensitivity=(("bad_iou", (0.5,)),))


def cell_at(store: Path, level: float) -> Path:
    for d in sorted((store / "cells").iterdir()):
        if read_json(d / layout.CONFIG)["noise"]["level"] == level:
            return d
    raise AssertionError(level)


def rewrite(path: Path, change) -> None:
    value = read_json(path)
    change(value)
    write_json(path, value, indent=True)


# ---- one verdict for every reader ---------------------------------------------------------------------------------
def test_an_edited_config_is_corrupt_for_the_table_the_leaderboard_and_the_runner(store, tmp_path):
    """The issue's case: noise 0.4 edited to 0.9 became a `noise 0.9` column and a leaderboard row never run."""
    from leaderboard.add import add_results

    victim = cell_at(store, 0.4)
    rewrite(victim / layout.CONFIG, lambda c: c["noise"].update(level=0.9))
    assert layout.done_problem(victim) == "config.json changed since the cell finished"
    df = results.load(store)
    assert list(df["noise_level"]) == [0.2]  # not 0.9, and not 0.4 either: the cell is not trusted
    corrupt, unfinished = results.left_out(store, df)
    assert corrupt == [victim.name] and unfinished == []
    written, warnings = add_results(store, root=tmp_path / "entries")
    rows = [read_json(p) for p in written]
    assert [r["noise"]["level"] for r in rows] == [0.2]
    assert f"{store}: left out: 1 corrupt cell(s): {victim.name} (`bench run` with the same options redoes them); " \
           "`bench report` says what changed in each" in warnings
    assert st.cell_status(victim) == st.CORRUPT
    line = [ln for ln in dry_run(options(store)).splitlines() if ln.startswith(victim.name)]
    assert line and line[0].endswith("corrupt  redo")


def test_an_emptied_predictions_file_is_left_out_of_the_report_with_a_counted_line(store):
    from reports import ReportConfig, build_report

    victim = cell_at(store, 0.2)
    (victim / layout.PREDICTIONS).write_text("[]")
    lines = []
    cfg = ReportConfig(gallery_per_mode=1, tide_styles=("coco",), tide_sizes=("all",),
                       sensitivity=(("bad_iou", (0.5,)),))
    index = build_report(store, formats=("md",), config=cfg, progress=False, echo=lines.append)
    assert lines == [f"left out: 1 corrupt cell(s): {victim.name} (`bench run` with the same options redoes them)"]
    text = index.read_text()
    assert f"corrupt: predictions.json changed size since the cell finished (cells/{victim.name}" in text
    assert "1 finished cell(s)" in text


def test_the_cli_report_prints_the_left_out_line(store, tmp_path, capsys):
    from benchmark.cli import main

    def bench(*args):
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code
        out = capsys.readouterr()
        return code, out.out, out.err

    a, b = cell_at(store, 0.2), cell_at(store, 0.4)
    (a / layout.PREDICTIONS).write_bytes((a / layout.PREDICTIONS).read_bytes()[:40])  # truncated
    code, out, err = bench("report", str(store), "--format", "md", "--quiet", "--out", str(tmp_path / "r1"))
    assert code == 0, err
    assert f"left out: 1 corrupt cell(s): {a.name} (`bench run` with the same options redoes them)" in err
    (b / layout.METRICS).unlink()
    code, out, err = bench("report", str(store), "--format", "md", "--quiet", "--out", str(tmp_path / "r2"))
    assert code == 2 and "no finished cells (2 corrupt" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("name, damage, why", [
    ("config", lambda v: v.update(locator=["x"]), "config.json: `locator` is a list, not an object"),
    ("config", lambda v: v["locator"].update(overrides="x"), "config.json: `locator.overrides` is a str"),
    ("config", lambda v: v["noise"].update(level="0.4"), "config.json: `noise.model` is not text or `noise.level`"),
    ("metrics", lambda v: v.update(coco=[0.5]), "metrics.json: `coco` is a list, not an object"),
    ("metrics", lambda v: v["coco"].update(AP="0.5"), "metrics.json: `coco.AP` is not a number"),
    ("metrics", lambda v: v["voc"].update(per_class=[1]), "metrics.json: `voc.per_class` is a list"),
])
def test_a_finished_cell_with_unreadable_config_or_metrics_is_corrupt_not_a_traceback(store, name, damage, why):
    """Even when DONE was rewritten to match: one line, left out of every table, redone by `bench run`."""
    from reports import build_report

    victim = cell_at(store, 0.4)
    rewrite(victim / {"config": layout.CONFIG, "metrics": layout.METRICS}[name], damage)
    layout.mark_done(victim)
    assert (layout.done_problem(victim) or "").startswith(why)
    assert st.cell_status(victim) == st.CORRUPT
    assert list(results.load(store)["cell"]) == [cell_at(store, 0.2).name]
    assert results.read_cell(victim)[1].startswith(f"corrupt: {why}")
    lines = []
    build_report(store, formats=("md",), config=_fast(), progress=False, echo=lines.append)
    assert lines == [results.corrupt_line([victim.name])]


@pytest.mark.parametrize("name, damage, why", [
    (layout.REFINED, lambda v: v[0].update(id="abc"), "refined_boxes.json: entry 0 is not {id: integer, bbox: 4 "
                                                      "numbers}"),
    (layout.REFINED, lambda v: v[1].update(bbox=["1", 2, 3, 4]), "refined_boxes.json: entry 1 is not"),
    (layout.PREDICTIONS, lambda v: v[0].update(bbox=[1, 2]), "predictions.json: detection 0 is not"),
    (layout.PREDICTIONS, lambda v: v[2].update(image_id=None), "predictions.json: detection 2 is not"),
])
def test_bad_refined_boxes_or_predictions_under_a_matching_done_cost_their_analyses_not_the_report(
        store, name, damage, why):
    """Large files are parsed by their readers, not on every status check: a report skips what needs the file,
    with a counted line; the runner's deep check (before it writes DONE) names the same problem."""
    from reports import build_report

    victim = cell_at(store, 0.4)
    rewrite(victim / name, damage)
    layout.mark_done(victim)
    assert layout.done_problem(victim) is None
    assert layout.done_problem(victim, deep=True).startswith(why)
    text = build_report(store, formats=("md",), config=_fast(), progress=False).read_text()
    skipped = text[text.index("## Skipped"):]
    assert f"1 cell(s): {why}" in skipped and "(its analyses skipped)" in skipped


def test_a_large_file_with_bad_content_costs_its_analyses_not_the_report(store, monkeypatch):
    """Files above the check's size limit are compared by size only: the report checks their content when it
    reads them, and skips what depends on them with a counted line."""
    from reports import ReportConfig, build_report

    victim = cell_at(store, 0.4)
    p = victim / layout.PREDICTIONS
    p.write_bytes(b"[" + b" " * (p.stat().st_size - 2) + b"{")  # same size, truncated JSON
    monkeypatch.setattr(layout, "HASH_LIMIT", 0)
    assert layout.done_problem(victim) is None
    cfg = ReportConfig(gallery_per_mode=1, tide_styles=("coco",), tide_sizes=("all",),
                       sensitivity=(("bad_iou", (0.5,)),))
    text = build_report(store, formats=("md",), config=cfg, progress=False).read_text()
    assert "1 cell(s): predictions.json: malformed JSON (unexpected end of data: line 1 column" in text
    assert "(its analyses skipped)" in text


def test_bench_run_redoes_every_corrupt_cell(store, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    before = results.load(store)
    a, b = cell_at(store, 0.2), cell_at(store, 0.4)
    (a / layout.PREDICTIONS).write_bytes((a / layout.PREDICTIONS).read_bytes()[:40])  # truncated
    rewrite(b / layout.REFINED, lambda v: v[0].update(id="abc"))
    summary = run_sweep(options(store), echo=lambda s: None)
    assert sorted(r["cell"] for r in summary.done) == sorted([a.name, b.name])
    assert results.left_out(store, results.load(store)) == ([], [])
    import pandas.testing as pdt

    pdt.assert_frame_equal(results.load(store).drop(columns=[c for c in before if c.startswith("time_")]),
                           before.drop(columns=[c for c in before if c.startswith("time_")]))


def test_run_cell_never_marks_done_what_the_check_would_call_corrupt(store, monkeypatch):
    from benchmark.runner.run_cell import run_cell

    victim = cell_at(store, 0.4)
    real = test_runner_dummy.DummyAdapter.train

    def bad_refined(self, *a, **k):
        out = real(self, *a, **k)
        rewrite(Path(out.refined_boxes), lambda v: v[0].update(bbox=[1, 2]))
        return out

    monkeypatch.setattr(test_runner_dummy.DummyAdapter, "train", bad_refined)
    out = run_cell(victim, overwrite="always", progress=False)
    assert out["status"] == "failed" and "refined_boxes.json: entry 0 is not" in out["error"]
    assert not (victim / layout.DONE).exists() and st.cell_status(victim) == st.FAILED_S


def test_done_lists_the_noisy_training_set_too(store):
    victim = cell_at(store, 0.4)
    assert set(read_json(victim / layout.DONE)["files"]) >= {layout.NOISY_TRAIN, layout.MANIFEST}
    rewrite(victim / layout.NOISY_TRAIN, lambda v: v["annotations"][0].update(bbox=[0, 0, 1, 1]))
    assert layout.done_problem(victim).startswith("noise/train.json changed")


def test_old_done_markers_without_the_noise_files_still_verify(store):
    victim = cell_at(store, 0.4)
    rewrite(victim / layout.DONE, lambda v: [v["files"].pop(k) for k in (layout.NOISY_TRAIN, layout.MANIFEST)])
    assert layout.done_problem(victim) is None


# ---- env.json ----------------------------------------------------------------------------------------------------
def test_env_json_records_every_runtime_dependency_plugins_and_cuda(store):
    from importlib import metadata

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    env = read_json(cell_at(store, 0.2) / layout.ENV)
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    from benchmark.runner.environment import _requirement_name

    for req in declared:
        name = _requirement_name(req)
        assert env["packages"][name] == metadata.version(name), name
    assert env["packages"]["noisybox-bench"]
    assert set(env["plugins"]) == {"methods", "noise", "formats"}
    for group, key in (("noisybox_bench.methods", "methods"), ("noisybox_bench.noise", "noise"),
                       ("noisybox_bench.formats", "formats")):
        for ep in metadata.entry_points(group=group):
            assert env["plugins"][key][ep.name] == {"dist": ep.dist.name, "version": ep.dist.version,
                                                    "value": ep.value}


def test_env_capture_names_cuda_and_cudnn_when_torch_is_loaded():
    import torch

    from benchmark.runner.environment import capture

    libs = capture()["libraries"]
    assert libs["cuda"] == torch.version.cuda
    assert libs["cudnn"] == (torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)


def test_requirement_names_skip_extras():
    from benchmark.runner.environment import _requirement_name

    assert _requirement_name("pillow>=9.0") == "pillow"
    assert _requirement_name("faster-coco-eval>=1.6") == "faster-coco-eval"
    assert _requirement_name('pytest>=7.4; extra == "test"') is None
