"""Evaluation and runner problems a new user hit: `--executor slurm` without Slurm, `--set NAME:...` for no method
of the sweep, pickles that raise while loading, `--seeds 0`, and the `--overwrite never` summary."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import test_runner_dummy  # noqa: F401  (registers the `dummy` method)
from test_runner_dummy import TINY

from benchmark.errors import BenchError
from benchmark.evaluation import load_detections
from benchmark.io import write_json
from benchmark.runner import store as st
from benchmark.runner.api import SweepOptions, make_executor, run_sweep
from benchmark.runner.grid import expand_grid, parse_seeds
from methods._core.toy import make_toy_dataset


# ---- --executor slurm -----------------------------------------------------------------------------------------
def test_executor_slurm_without_slurm_is_an_error_not_a_local_run(tmp_path, monkeypatch):
    """submitit's AutoExecutor falls back to running the jobs locally when there is no Slurm; the sweep then
    trained every cell on the login machine under `--executor slurm`."""
    pytest.importorskip("submitit")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no srun / sbatch
    o = SweepOptions("dummy", executor="slurm", store=tmp_path / "store")
    with pytest.raises(BenchError, match="Slurm is not available"):
        make_executor(o, st.Store(o.store))
    make_executor(SweepOptions("dummy", executor="slurm", cluster="local", store=tmp_path / "s"),
                  st.Store(tmp_path / "s"))  # the tests' local cluster still works


def test_slurm_options_with_the_local_executor_are_an_error(tmp_path):
    """`--partition gpu` (or `--no-wait`, ...) without `--executor slurm` trained the sweep here, options dropped."""
    for changed, flag in (({"partition": "gpu"}, "--partition"), ({"wait": False}, "--no-wait"),
                          ({"slurm_args": {"account": "x"}}, "--slurm-arg"), ({"cpus_per_task": 8}, "--cpus-per-task")):
        o = SweepOptions("dummy", store=tmp_path / "store", **changed)
        with pytest.raises(BenchError, match=f"{flag} applies to --executor slurm only .* leave it out"):
            make_executor(o, st.Store(o.store))
    make_executor(SweepOptions("dummy", store=tmp_path / "store"), st.Store(tmp_path / "store"))  # defaults: fine


# ---- --set NAME:KEY=V -----------------------------------------------------------------------------------------
def test_scoped_set_for_a_method_not_in_the_sweep_is_an_error():
    """`--set ssd-det:method.topk=3` (typo) was dropped silently: the cells ran without it."""
    with pytest.raises(BenchError, match="'dumy' is not a method of this sweep"):
        expand_grid(["dummy"], [0.1], [0], overrides={"dumy": {"method.steps": 9}}, baselines=False)
    with pytest.raises(BenchError, match="'faster_rcnn' is not a method"):
        expand_grid(["dummy"], [0.1], [0], overrides={"faster_rcnn": {"train.lr": 0.1}}, baselines=False)
    cells = expand_grid(["dummy"], [0.1], [0], overrides={"faster_rcnn": {"train.lr": 0.1}})  # a baseline here
    assert {c.method: c.overrides for c in cells}["faster_rcnn"] == {"train.lr": 0.1}


# ---- pickles ----------------------------------------------------------------------------------------------------
class _RaisesTypeError:
    def __reduce__(self):
        return (int, ("x", "y", "z"))  # int() with three arguments: TypeError while unpickling


@pytest.fixture
def gt(tmp_path):
    return make_toy_dataset(tmp_path / "images", num_images=2, size=(32, 32), category_ids=(1, 2))


def test_pickle_raising_any_error_while_loading_is_one_line(tmp_path, gt):
    bad = tmp_path / "odd.pkl"
    bad.write_bytes(pickle.dumps([_RaisesTypeError()]))
    with pytest.raises(BenchError, match=r"odd\.pkl: cannot unpickle \(TypeError"):
        load_detections(bad, gt)
    torch = pytest.importorskip("torch")
    saved = tmp_path / "model.pkl"  # a torch.save file given by mistake: a two-line UnpicklingError
    torch.save({"a": torch.zeros(1)}, saved)
    with pytest.raises(BenchError) as info:
        load_detections(saved, gt)
    assert "\n" not in str(info.value) and "cannot unpickle" in str(info.value)


# ---- --seeds 0 --------------------------------------------------------------------------------------------------
def test_seeds_zero_says_a_lone_number_is_a_count():
    with pytest.raises(BenchError, match="a single number is a count"):
        parse_seeds("0")
    assert parse_seeds("0,") == [0] and parse_seeds("1") == [0]


# ---- --overwrite never summary ----------------------------------------------------------------------------------
def test_overwrite_never_does_not_call_failed_cells_done(tmp_path, monkeypatch):
    monkeypatch.setenv("NOISYBOX_DUMMY_LOG", str(tmp_path / "dummy.log"))
    o = dict(methods="dummy", noise="0.1", seeds="2", datasets=[TINY], baselines=False, store=tmp_path / "store",
             imports=["test_runner_dummy"], report=False, progress=False, jobs=1)
    run_sweep(SweepOptions(**o), echo=lambda s: None)
    failed = sorted((tmp_path / "store" / "cells").iterdir())[0]
    (failed / st.DONE).unlink()
    write_json(failed / st.FAILED, {"error": "earlier failure"})
    lines: list[str] = []
    run_sweep(SweepOptions(**o, overwrite="never"), echo=lines.append)
    text = "\n".join(lines)
    assert "1 skipped (already done), 1 kept unfinished (--overwrite never)" in text, text
    assert Path(failed / st.FAILED).exists()
