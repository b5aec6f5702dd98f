"""The metrics registry (`benchmark.evaluation.metrics`): one registration plus a compute function adds a metric to
`evaluate`, `bench eval`, the cell's metrics.json, the results table and the report, with no other code change;
the built-in registrations keep the results table's columns and the report's tables as they were."""

from __future__ import annotations

import pandas as pd
import pytest
import test_runner_dummy  # noqa: F401  (registers the `dummy` method)
from leaderboard_kit import _row
from store_kit import FAST
from test_runner_dummy import TINY

from benchmark import results
from benchmark.datasets.core import DetectionDataset
from benchmark.evaluation import evaluate
from benchmark.evaluation import metrics as registry
from benchmark.evaluation.cli import format_table
from benchmark.io import read_json
from benchmark.runner import store as st
from benchmark.runner.api import SweepOptions, grid
from benchmark.runner.cells import resolve_all
from benchmark.runner.run_cell import run_cell
from leaderboard.schema import row_errors


def confident_share(gt, arrays) -> dict:
    """Toy metric: the share of detections scoring at least 0.5 (undefined without detections)."""
    n = len(arrays.scores)
    return {"confident": float((arrays.scores >= 0.5).sum() / n) if n else None}


@pytest.fixture
def toy(monkeypatch):
    """The registry as built in, plus the toy evaluator and metric; restored afterwards."""
    for name in ("EVALUATORS", "METRICS", "TABLES"):
        monkeypatch.setattr(registry, name, dict(getattr(registry, name)))
    registry.register_evaluator("toy", confident_share, "toy: share of confident detections")
    return registry.register_metric("TOY_CONF", "toy", key="confident", label="confident %", table="toy")


def _gt() -> DetectionDataset:
    return DetectionDataset(images=[{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
                            annotations=[{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]},
                                         {"id": 2, "image_id": 2, "category_id": 1, "bbox": [50, 50, 30, 30]}],
                            categories=[{"id": 1, "name": "a"}])


DETS = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9},
        {"image_id": 2, "category_id": 1, "bbox": [50, 50, 30, 30], "score": 0.7},
        {"image_id": 2, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.2}]


def test_builtin_registrations_are_the_stored_keys_and_columns():
    """metrics.json keys and results.csv columns as they were before the registry (stored results unchanged)."""
    assert registry.evaluator_names() == ["coco", "voc"]
    assert registry.metric_names() == ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs",
                                       "ARm", "ARl", "VOC_AP50"]
    voc = registry.get_metric("VOC_AP50")
    assert (voc.evaluator, voc.key, voc.label) == ("voc", "AP50", "AP50 (VOC)")
    assert voc.stored({"voc": {"AP50": 0.5}, "coco": {"AP50": 0.1}}) == 0.5
    assert registry.metric_names(leaderboard=True) == ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR100",
                                                       "VOC_AP50"]
    assert [(t, names) for t, _, names in registry.report_tables()] == [
        ("main", ["AP", "AP50", "AP75", "VOC_AP50"]), ("size", ["APs", "APm", "APl"])]
    assert registry.metric_names(sweep=True) == ["AP", "AP50"]


def test_a_registration_twice_or_without_its_evaluator_is_refused(toy):
    with pytest.raises(ValueError, match="twice"):
        registry.register_metric("TOY_CONF", "toy")
    with pytest.raises(ValueError, match="no evaluator"):
        registry.register_metric("OTHER", "nowhere")


def test_a_registered_metric_is_evaluated_and_printed(toy):
    out = evaluate(_gt(), DETS)
    assert list(out) == ["coco", "voc", "toy"]
    assert out["toy"] == {"confident": pytest.approx(2 / 3)}  # 0.9 and 0.7 of three scores
    assert out["voc"]["AP50"] == pytest.approx(1.0)  # both objects found first: the built-ins are untouched
    assert list(evaluate(_gt(), DETS, ["toy"])) == ["toy"]
    text = format_table(_gt(), len(DETS), out)
    assert "toy: share of confident detections: 66.7" in text
    assert "VOC AP50 (mmdet eval_map, area, difficult ignored): 100.0" in text


def test_a_registered_metric_reaches_the_results_table_and_the_report(toy, tmp_path):
    """Cells run in this process (so they see the test's registration) write the toy section; the results table
    gets its column and the report its table, headed by its label, in points."""
    from reports import build_report

    store = st.Store(tmp_path / "store")
    opts = SweepOptions(methods="dummy", noise="0.1,0.2", seeds="1", datasets=[TINY], baselines=False,
                        store=store.root, imports=["test_runner_dummy"], report=False, progress=False, jobs=1)
    for cell in resolve_all(grid(opts)):
        assert run_cell(store.write_config(cell.config), progress=False)["status"] == "done"
    df = results.load(store.root)
    assert len(df) == 2 and "TOY_CONF" in df.columns
    for row in df.itertuples():
        scores = [d["score"] for d in read_json(f"{row.cell_dir}/predictions.json")]
        assert row.TOY_CONF == pytest.approx(sum(s >= 0.5 for s in scores) / len(scores))  # counted from the file
        assert read_json(f"{row.cell_dir}/metrics.json")["toy"]["confident"] == pytest.approx(row.TOY_CONF)
    out = tmp_path / "report"
    build_report(store.root, out, config=FAST, progress=False)
    tables = sorted(p.name for p in (out / "tables").glob("*_toy.csv"))
    assert len(tables) == 1
    csv = pd.read_csv(out / "tables" / tables[0])
    assert set(csv["metric"]) == {"TOY_CONF"}
    by_level = df.groupby("noise_level")["TOY_CONF"].mean() * 100
    for r in csv.itertuples():
        assert r.mean == pytest.approx(by_level[float(r.group.removeprefix("noise "))])
    md = (out / "tables" / tables[0].replace(".csv", ".md")).read_text()
    assert "confident %" in md and "confident %, points" in md  # its label heads the column; default title
    # not a leaderboard metric unless registered as one
    row = _row(reproduced=40.0)
    assert row_errors(row) == []
    row["reproduced"]["metrics"]["TOY_CONF"] = {"mean": 50.0, "std": None, "n": 1}
    assert row_errors(row) == ["reproduced.metrics.TOY_CONF: unknown metric (known: AP, AP50, AP75, APs, APm, APl, "
                               "AR100, VOC_AP50)"]


def test_lower_is_better_metric_marks_the_lowest_mean_best(toy):
    from reports.tables import metric_table

    registry.register_metric("TOY_ERR", "toy", key="error", label="error %", higher_is_better=False)
    frame = pd.DataFrame({"method": ["a", "b"], "noise_level": [0.1, 0.1], "AP": [0.2, 0.3],
                          "TOY_ERR": [0.1, 0.4]})
    t = metric_table(frame, ["AP", "TOY_ERR"], "t", oracle_methods=())
    best = t.best()
    assert best.loc["b", ("noise 0.1", "AP")] and not best.loc["a", ("noise 0.1", "AP")]
    assert best.loc["a", ("noise 0.1", "TOY_ERR")] and not best.loc["b", ("noise 0.1", "TOY_ERR")]


def test_a_plugin_registers_through_its_entry_point(monkeypatch):
    """A module under the `noisybox_bench.metrics` entry points is imported on the registry's first read; a broken
    one warns and leaves the others working."""
    for name in ("EVALUATORS", "METRICS", "TABLES"):
        monkeypatch.setattr(registry, name, dict(getattr(registry, name)))
    monkeypatch.setattr(registry, "_plugins_loaded", False)

    class Plugin:
        name, value = "toy", "toy_metrics"

        def load(self):  # what importing the plug-in's module does
            registry.register_evaluator("toy", confident_share, "toy")
            registry.register_metric("TOY_CONF", "toy", key="confident")

    class Broken:
        name, value = "broken", "missing_module"

        def load(self):
            raise ModuleNotFoundError("No module named 'missing_module'")

    monkeypatch.setattr(registry, "entry_points",
                        lambda group: [Broken(), Plugin()] if group == registry.ENTRY_POINT_GROUP else [])
    with pytest.warns(UserWarning, match="metrics plugin 'broken'.*No module named"):
        assert registry.metric_names()[-1] == "TOY_CONF"
    assert list(evaluate(_gt(), DETS)) == ["coco", "voc", "toy"]
