"""End-to-end sweeps with the torch-free `dummy` method (tests/test_runner_dummy.py): the runner is tested apart from
training. Covers the store layout, skip / overwrite / resume semantics, dry-run, failures, kill -9 at random
points, two runners on one store, the submitit path (local executor) and torchrun cells."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import test_runner_dummy  # noqa: F401  (registers the `dummy` method)
from test_runner_dummy import TINY, DummyAdapter, checkpointed_steps

from benchmark import results
from benchmark.errors import BenchError
from benchmark.io import read_json, write_json
from benchmark.runner import store as st
from benchmark.runner.api import SweepOptions, dry_run, grid, run_sweep
from benchmark.runner.cells import resolve_all
from benchmark.runner.run_cell import run_cell
from benchmark.runner.sweep import execute, plan

TESTS = Path(__file__).resolve().parents[1]  # tests/: the helper modules
KEY_COLUMNS = ["cell", "method", "dataset", "noise_model", "noise_level", "seed", "AP", "AP50", "AP75", "APs",
               "AR100", "VOC_AP50", "train_steps", "train_loss"]


def options(store: Path, **kw) -> SweepOptions:
    base = dict(methods="dummy", noise="0.1,0.2", seeds="2", datasets=[TINY], baselines=False, store=store,
                imports=["test_runner_dummy"], report=False, progress=False, jobs=2)
    base.update(kw)
    return SweepOptions(**base)


def table(store: Path):
    return results.load(store)[KEY_COLUMNS].reset_index(drop=True)


def done_markers(store: Path) -> dict[str, bytes]:
    return {d.name: (d / st.DONE).read_bytes() for d in (store / "cells").iterdir() if (d / st.DONE).exists()} \
        if (store / "cells").is_dir() else {}


def dummy_log(path: Path) -> list[tuple[str, int, int]]:
    if not path.exists():
        return []
    return [(c, int(p), int(s)) for c, p, s in (line.split() for line in path.read_text().splitlines())]


@pytest.fixture
def train_log(tmp_path, monkeypatch):
    path = tmp_path / "dummy-train.log"
    monkeypatch.setenv("NOISYBOX_DUMMY_LOG", str(path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same sweep run once, uninterrupted, with one worker."""
    store = tmp_path_factory.mktemp("reference") / "store"
    summary = run_sweep(options(store, jobs=1), echo=lambda s: None)
    assert len(summary.done) == 4
    return table(store)


def _same_table(a, b):
    import pandas.testing as pdt

    pdt.assert_frame_equal(a, b, check_dtype=False)


# ---- the basic contract -------------------------------------------------------------------------------------------
def test_sweep_writes_the_store_layout_then_skips_done_cells(tmp_path, train_log, reference):
    store = tmp_path / "store"
    messages = []
    summary = run_sweep(options(store), echo=messages.append)
    assert summary.counts() == {"cells": 4, "done": 4, "skipped": 0, "failed": 0, "busy": 0}
    for cell in summary.cells:
        d = store / "cells" / cell.id
        for name in (st.CONFIG, st.ENV, "noise/train.json", "noise/manifest.json", "train/checkpoint.json",
                     st.PREDICTIONS, st.METRICS, st.REFINED, st.LOG, st.DONE):
            assert (d / name).is_file(), name
        assert not (d / st.CLAIM).exists()
        newest = max(p.stat().st_mtime_ns for p in d.rglob("*") if p.is_file() and p.name not in (st.DONE, st.LOG))
        assert (d / st.DONE).stat().st_mtime_ns >= newest  # DONE is written last
        metrics = read_json(d / st.METRICS)
        assert set(metrics) >= {"coco", "voc", "train", "timing"}
        assert read_json(d / st.ENV)["packages"]["noisybox-bench"]
    assert (store / "results.csv").is_file() and (store / "results.parquet").is_file()
    assert any("4 done, 0 skipped" in m for m in messages)
    assert any(m.lstrip("\n").startswith("AP (") for m in messages)  # the AP table is printed
    _same_table(table(store), reference)  # two workers or one: the same numbers
    assert len(dummy_log(train_log)) == 4

    before = done_markers(store)
    again = run_sweep(options(store), echo=lambda s: None)
    assert again.counts()["done"] == 0 and again.counts()["skipped"] == 4
    assert done_markers(store) == before
    assert len(dummy_log(train_log)) == 4  # nothing retrained


def test_variants_and_noise_seeds_of_a_method_are_never_averaged_as_seeds(tmp_path, train_log):
    """A second sweep into the same store with `--set` (or another fixed noise seed) adds other experiments: the
    results table labels them apart, so reports and leaderboard rows do not mix them with the first."""
    store = tmp_path / "store"
    run_sweep(options(store, noise="0.2", jobs=1), echo=lambda s: None)
    run_sweep(options(store, noise="0.2", seeds="1", jobs=1, sets=["dummy:method.jitter=0.2"]), echo=lambda s: None)
    df = results.load(store)
    assert sorted(df["method"]) == ["dummy", "dummy", "dummy [method.jitter=0.2]"]
    assert set(df.loc[df["method"] == "dummy", "seed"]) == {0, 1}
    assert df.loc[df["variant"] != "", "variant"].tolist() == ["method.jitter=0.2"]
    run_sweep(options(store, noise="0.2", seeds="1", jobs=1, noise_seed=7), echo=lambda s: None)
    df = results.load(store)
    assert sorted(df["method"]) == ["dummy", "dummy [method.jitter=0.2]", "dummy [noise seed 0]",
                                    "dummy [noise seed 7]"]
    assert not df.duplicated(["dataset", "profile", "method", "noise_model", "noise_level", "seed"]).any()


def test_bad_noise_parameter_values_fail_the_sweep_before_any_cell(tmp_path, train_log):
    store = tmp_path / "store"
    with pytest.raises(BenchError, match="direction must be"):
        run_sweep(options(store, noise_model="bias", noise_params={"direction": "sideways"}), echo=lambda s: None)
    with pytest.raises(BenchError, match="strength"):  # fine at 0.1, not at 0.2: every level of the sweep is tried
        dry_run(options(store, noise_model="per_class", noise_params={"strength": {"triangle": 6}}))
    assert not (store / "cells").exists() or not any((store / "cells").iterdir())


def test_a_composed_noise_model_runs_as_a_sweep(tmp_path, train_log):
    """`--noise-model uniform+missing@0.1` as `bench noise make` takes it: checked before the sweep, run per cell."""
    store = tmp_path / "store"
    o = options(store, noise="0.3", seeds="1", jobs=1, noise_model="uniform+missing@0.1",
                noise_params={"missing.fraction": 1})
    with pytest.raises(BenchError, match="no parameter 'fraction'"):
        run_sweep(o, echo=lambda s: None)
    run_sweep(options(store, noise="0.3", seeds="1", jobs=1, noise_model="uniform+missing@0.1"), echo=lambda s: None)
    (cell,) = (store / "cells").iterdir()
    manifest = read_json(cell / "noise" / "manifest.json")
    assert manifest["model"] == "uniform+missing@0.1" and manifest["level"] == 0.3
    assert manifest["counts"]["removed"] > 0 and manifest["counts"]["perturbed"] > 0
    assert results.load(store)["noise_model"].tolist() == ["uniform+missing@0.1"]


def test_dry_run_lists_cells_and_writes_nothing(tmp_path, train_log):
    store = tmp_path / "store"
    out = dry_run(options(store))
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["cell", "method", "dataset"]
    assert len(lines) == 1 + 4 + 1 and lines[-1] == "4 cells: 4 run"
    assert all(" missing " in line and line.endswith(" run") for line in lines[1:5])
    assert not store.exists()
    run_sweep(options(store, noise="0.1"), echo=lambda s: None)
    out = dry_run(options(store))
    assert out.splitlines()[-1] == "4 cells: 2 run, 2 skip"
    assert sum(" done " in line for line in out.splitlines()) == 2


def test_overwrite_never_missing_always(tmp_path, train_log, reference):
    store = tmp_path / "store"
    run_sweep(options(store), echo=lambda s: None)
    cells = sorted(done_markers(store))
    partial, failed = store / "cells" / cells[0], store / "cells" / cells[1]
    (partial / st.DONE).unlink()  # half-written: results there, no DONE
    (failed / st.DONE).unlink()
    write_json(failed / st.FAILED, {"error": "earlier failure"})
    n0 = len(dummy_log(train_log))

    never = run_sweep(options(store, overwrite="never"), echo=lambda s: None)
    assert never.counts()["done"] == 0 and never.counts()["skipped"] == 4
    assert not (partial / st.DONE).exists() and (failed / st.FAILED).exists()

    missing = run_sweep(options(store, overwrite="missing"), echo=lambda s: None)
    assert sorted(r["cell"] for r in missing.done) == sorted([partial.name, failed.name])
    assert not (failed / st.FAILED).exists()
    resumed = dummy_log(train_log)[n0:]
    assert sorted(c for c, _, _ in resumed) == sorted([partial.name, failed.name])
    assert all(start == 3 for _, _, start in resumed), resumed  # resumed from the last checkpoint
    _same_table(table(store), reference)

    before = done_markers(store)
    always = run_sweep(options(store, overwrite="always"), echo=lambda s: None)
    assert always.counts()["done"] == 4
    after = done_markers(store)
    assert all(after[c] != before[c] for c in before)
    assert all(start == 0 for _, _, start in dummy_log(train_log)[-4:])  # from scratch
    _same_table(table(store), reference)


def test_half_trained_cell_resumes_from_its_checkpoint(tmp_path, train_log, reference):
    store = tmp_path / "store"
    o = options(store, sets=["dummy:method.steps=3"])
    cells = resolve_all(grid(o))
    target = cells[1]
    cell_dir = st.Store(store).write_config(target.config)
    # an interrupted training: two of the three steps checkpointed, nothing else
    from benchmark.datasets import load
    from noise import make_noisy

    n = target.config["noise"]
    noisy = make_noisy(load(TINY)["train"], n["model"], n["level"], n["seed"]).dataset
    cfg = {**target.config["method_config"], "method": {**target.config["method_config"]["method"], "steps": 2}}
    DummyAdapter().train(noisy, cfg, cell_dir / st.TRAIN_DIR)
    train_log.unlink()
    assert dry_run(o).count(" partial ") == 1

    run_sweep(o, echo=lambda s: None)
    starts = {c: s for c, _, s in dummy_log(train_log)}
    assert starts[target.id] == 2 and all(s == 0 for c, s in starts.items() if c != target.id)
    _same_table(table(store), reference)


def test_corrupted_cell_is_detected_and_redone(tmp_path, train_log, reference):
    store = tmp_path / "store"
    run_sweep(options(store), echo=lambda s: None)
    victim = store / "cells" / sorted(done_markers(store))[2]
    metrics = read_json(victim / st.METRICS)
    metrics["coco"]["AP"] = 0.999  # a result altered after the fact
    write_json(victim / st.METRICS, metrics)
    (victim / st.PREDICTIONS).write_text("[{")  # and a truncated file
    assert victim.name not in set(results.load(store)["cell"])  # never reported as a result
    listing = dry_run(options(store))
    assert [line for line in listing.splitlines() if line.startswith(victim.name)][0].endswith("corrupt  redo")
    summary = run_sweep(options(store), echo=lambda s: None)
    assert [r["cell"] for r in summary.done] == [victim.name]
    assert dummy_log(train_log)[-1][2] == 0  # redone from scratch, not resumed from possibly bad state
    _same_table(table(store), reference)


def test_failed_and_crashed_cells_are_reported_and_do_not_stop_others(tmp_path, train_log, capsys):
    store = tmp_path / "store"
    messages = []
    summary = run_sweep(options(store, noise="0.1", seeds="3", progress=True,
                                sets=["dummy:method.fail_seed=1", "dummy:method.crash_seed=2"]),
                        echo=messages.append)
    assert summary.counts() == {"cells": 3, "done": 1, "skipped": 0, "failed": 2, "busy": 0}
    by_seed = {r["label"].split("seed=")[1][0]: r for r in summary.failed}
    fail, crash = by_seed["1"], by_seed["2"]
    assert fail["error"] == "RuntimeError: dummy failure at step 0"
    assert "RuntimeError: dummy failure" in Path(fail["log"]).read_text()  # traceback in the cell's log
    assert crash["error"].startswith("worker process died (signal 9")
    for r in (fail, crash):
        assert Path(r["log"]).parent.is_dir() and (Path(r["log"]).parent / st.FAILED).is_file()
        assert st.cell_status(Path(r["log"]).parent) == st.FAILED_S
    text = "\n".join(messages)
    assert "1 done, 0 skipped (already done), 2 failed" in text and fail["log"] in text
    bars = capsys.readouterr().err
    assert "cells" in bars and "3/3" in bars  # the overall progress bar
    assert f"failed: {fail['label']}" in bars  # reported as it happens, above the bar
    assert len(results.load(store)) == 1


def test_disk_full_stops_the_sweep_with_a_clear_message(tmp_path, train_log):
    store = st.Store(tmp_path / "store")
    planned = plan(grid(options(store.root)), store)

    class FullDisk:
        calls = 0

        def run(self, cell_dirs, on_result):
            for d in cell_dirs:
                self.calls += 1
                on_result({"cell": d.name, "label": d.name, "status": "failed", "log": str(d / st.LOG),
                           "error": f"{d}/metrics.json: no space left on device", "seconds": 0})

    ex = FullDisk()
    summary = execute(planned, store, ex, progress=False, echo=lambda s: None)
    assert ex.calls == 1 and "no space left on device" in summary.aborted


def test_run_cell_reports_a_full_disk_in_one_line(tmp_path, train_log, monkeypatch):
    store = st.Store(tmp_path / "store")
    cell = resolve_all(grid(options(store.root)))[0]
    cell_dir = store.write_config(cell.config)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    out = run_cell(cell_dir, progress=False)
    assert out["status"] == "failed" and "no space left on device" in out["error"]
    assert "\n" not in out["error"] and not (cell_dir / st.DONE).exists()
    assert not (cell_dir / st.CLAIM).exists()


def test_run_cell_turns_raw_os_errors_into_clear_messages(tmp_path, train_log, monkeypatch):
    store = st.Store(tmp_path / "store")
    cell = resolve_all(grid(options(store.root)))[0]
    cell_dir = store.write_config(cell.config)

    def no_space(self, *a, **k):  # e.g. torch.save inside the engine
        raise OSError(errno.ENOSPC, "No space left on device", str(cell_dir / "train" / "checkpoint.pth"))

    monkeypatch.setattr(DummyAdapter, "train", no_space)
    out = run_cell(cell_dir, progress=False)
    assert out["error"].startswith(str(cell_dir / "train" / "checkpoint.pth") + ": no space left on device")
    assert st.is_disk_full(out["error"])
    monkeypatch.setattr(DummyAdapter, "train", lambda *a, **k: (_ for _ in ()).throw(
        PermissionError(errno.EACCES, "Permission denied", str(cell_dir / "train"))))
    assert "permission denied" in run_cell(cell_dir, progress=False)["error"]


# ---- the CLI ------------------------------------------------------------------------------------------------------
def bench(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmark.cli", "run", *args], capture_output=True, text=True,
                          **kw)


CLI_ARGS = ["--method", "dummy", "--noise", "0.1,0.2", "--seeds", "2", "--dataset", TINY, "--no-baselines",
            "--import", "test_runner_dummy", "--no-report"]


def test_cli_noise_seed_defaults_to_the_fixed_seed_not_the_training_seed(tmp_path, train_log):
    """As `--help` and the papers: one noisy file for every training seed unless `--noise-seed seed`."""
    def cells(*extra):
        r = bench(*CLI_ARGS, "--dry-run", "--out", str(tmp_path / "s"), *extra)
        assert r.returncode == 0, r.stderr
        return [line.split()[0] for line in r.stdout.splitlines() if line.split() and "dummy" in line.split()]

    default, fixed, tied = cells(), cells("--noise-seed", "0"), cells("--noise-seed", "seed")
    assert len(default) == 4 and default == fixed
    assert tied != default and tied[:2] == default[:2]  # training seed 0 draws with noise seed 0 either way
    legacy = cells("--noise-rng", "oamil-legacy")
    assert legacy == cells("--noise-rng", "oamil-legacy", "--noise-seed", "45")


def test_cli_errors_are_one_line(tmp_path, train_log):
    r = bench(*CLI_ARGS[:2], "--noise", "0.1..x", "--dry-run", "--out", str(tmp_path / "s"))
    assert r.returncode == 2 and r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1
    r = bench("--method", "nope", "--noise", "0.1", "--dataset", TINY, "--dry-run")
    assert r.returncode == 2 and "unknown method 'nope'" in r.stderr
    if Path("/sys").is_dir():  # /sys refuses new directories even to root
        r = bench(*CLI_ARGS, "--out", "/sys/noisybox-results")
        assert r.returncode == 2 and "permission denied" in r.stderr and len(r.stderr.strip().splitlines()) == 1


# ---- reliability --------------------------------------------------------------------------------------------------
SLOW = ["--set", "dummy:method.step_s=0.15", "--set", "dummy:method.steps=6"]


def test_kill_dash_nine_at_random_points_loses_and_recomputes_nothing(tmp_path, train_log):
    args = [*CLI_ARGS, "--seeds", "3", *SLOW]
    ref_store, store = tmp_path / "ref", tmp_path / "store"
    r = bench(*args, "--out", str(ref_store), "--jobs", "2")
    assert r.returncode == 0, r.stderr
    expected = table(ref_store)
    rng = random.Random(int(os.environ.get("NOISYBOX_TEST_SEED", "8")))  # vary it to stress the runner
    seen: dict[str, bytes] = {}
    killed_mid_training = 0
    for attempt in range(4):
        proc = subprocess.Popen([sys.executable, "-m", "benchmark.cli", "run", *args, "--out", str(store),
                                 "--jobs", str(1 + attempt % 2)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        if attempt == 0:  # somewhere in start-up / planning
            time.sleep(rng.uniform(0.2, 1.5))
        else:  # after a random amount of training progress, at a random moment within a step
            target = checkpointed_steps(store) + rng.randint(1, 8)
            deadline = time.time() + 120
            while checkpointed_steps(store) < target and proc.poll() is None and time.time() < deadline:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.2))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 20  # the workers die with the runner: every claim goes stale
        while (store / "cells").is_dir() and any(st.claim_holder(d) for d in (store / "cells").glob("*")):
            assert time.time() < deadline, "a worker outlived the killed runner"
            time.sleep(0.1)
        now = done_markers(store)
        assert all(now.get(c) == marker for c, marker in seen.items()), "a done cell was lost or recomputed"
        killed_mid_training += any(st.cell_status(d) == st.PARTIAL for d in store.glob("cells/*"))
        seen = now
    assert killed_mid_training >= 2, "the kills should interrupt training, not only start-up"
    assert len(seen) < 6
    r = bench(*args, "--out", str(store))
    assert r.returncode == 0, r.stderr
    final = done_markers(store)
    assert all(final[c] == marker for c, marker in seen.items())
    assert len(final) == 6
    resumed = [start for _, _, start in dummy_log(train_log) if start > 0]
    assert resumed, "some cell resumed from a checkpoint"
    _same_table(table(store), expected)


@pytest.mark.parametrize("sig", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)])
def test_ctrl_c_or_sigterm_stops_cleanly_and_the_rerun_resumes(tmp_path, train_log, sig):
    store = tmp_path / "store"
    args = [*CLI_ARGS, "--noise", "0.1", "--set", "dummy:method.step_s=0.2", "--set", "dummy:method.steps=15",
            "--out", str(store)]
    proc = subprocess.Popen([sys.executable, "-m", "benchmark.cli", "run", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while checkpointed_steps(store) < 4:
        assert time.time() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted: finished cells are kept" in out + err
    assert "aborted" not in out + err  # the line above says it all
    cells = list(store.glob("cells/*"))
    assert not list(store.glob("cells/*/claim*")), "claims released"
    assert all(st.cell_status(d) == st.PARTIAL for d in cells)
    assert all("interrupted" in (d / st.LOG).read_text() for d in cells)
    # A cell whose worker had not checkpointed yet (it started late) rightly begins again at step 0.
    checkpointed = {d.name: read_json(d / "train" / "checkpoint.json")["step"] for d in cells
                    if (d / "train" / "checkpoint.json").is_file()}
    assert sum(checkpointed.values()) >= 4
    r = bench(*args)
    assert r.returncode == 0, r.stderr
    resumed_at = {c: s for c, _, s in dummy_log(train_log)}
    assert {c: resumed_at.get(c) for c in checkpointed} == checkpointed, "each cell resumes where it stopped"


def test_two_runners_on_one_store_do_not_corrupt_it(tmp_path, train_log):
    store = tmp_path / "store"
    args = [*CLI_ARGS, "--seeds", "3", *SLOW, "--out", str(store), "--jobs", "1"]
    procs = [subprocess.Popen([sys.executable, "-m", "benchmark.cli", "run", *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    trained = [c for c, _, _ in dummy_log(train_log)]
    assert len(trained) == 6 and len(set(trained)) == 6  # every cell trained exactly once, by one runner
    assert len(done_markers(store)) == 6
    assert all(st.done_problem(d) is None for d in (store / "cells").iterdir())
    assert not list(store.glob("cells/*/claim*"))
    ref = tmp_path / "ref"
    r = bench(*[*CLI_ARGS, "--seeds", "3", *SLOW, "--out", str(ref)])
    assert r.returncode == 0, r.stderr
    _same_table(table(store), table(ref))


# ---- other executors ------------------------------------------------------------------------------------------------
def test_submitit_local_executor_runs_the_array_and_resumes_a_preempted_job(tmp_path, train_log, reference):
    pytest.importorskip("submitit")
    store = tmp_path / "store"
    o = options(store, executor="slurm", cluster="local", gpus_per_task=0, cpus_per_task=1)
    summary = run_sweep(o, echo=lambda s: None)
    assert summary.counts()["done"] == 4, summary.failed
    assert list((store / "slurm").glob("*_log.out")), "submitit wrote its job logs into the store"
    _same_table(table(store), reference)

    # preemption / time limit: the cluster signals the task (SIGUSR2 for submitit); CellJob is checkpointed, the
    # task requeued (submitit's local controller restarts it as Slurm would) and the cell resumes from its checkpoint
    from benchmark.runner.executors import SubmititExecutor

    slow = options(tmp_path / "store2", executor="slurm", cluster="local", gpus_per_task=0, noise="0.1", seeds="1",
                   sets=["dummy:method.step_s=0.4", "dummy:method.steps=8"])
    s2 = st.Store(slow.store)
    (p,) = plan(grid(slow), s2)
    cell_dir = s2.write_config(p.cell.config)
    ex = SubmititExecutor(s2.root / "slurm", cluster="local", imports=slow.imports, wait=False)
    ex.run([cell_dir], lambda r: None)
    (job,) = ex.jobs
    deadline = time.time() + 120
    while not (cell_dir / "train" / "checkpoint.json").exists():
        assert time.time() < deadline and not job.done(), "job did not start training"
        time.sleep(0.05)
    task_pid = st.claim_holder(cell_dir)["pid"]
    os.kill(task_pid, signal.SIGUSR2)  # what Slurm sends before preempting / at the time limit
    out = job.result()  # waits through the requeue
    assert out["status"] == "done"
    assert "interrupted" in (cell_dir / st.LOG).read_text()
    (entry,) = [e for e in dummy_log(train_log) if e[0] == cell_dir.name]
    assert entry[1] != task_pid and entry[2] > 0  # finished by the requeued task, resumed mid-training
    assert st.cell_status(cell_dir) == st.DONE_S


def test_torchrun_cell(tmp_path, train_log, reference):
    """`--gpus-per-cell 2` on a CPU machine: each cell is `torchrun --nproc_per_node 2 -m benchmark.runner`; rank 0
    alone claims and writes, both ranks train."""
    store = tmp_path / "store"
    summary = run_sweep(options(store, gpus_per_cell=2, noise="0.1", seeds="1"), echo=lambda s: None)
    assert summary.counts()["done"] == 1, summary.failed
    log = dummy_log(train_log)
    assert len(log) == 2 and len({pid for _, pid, _ in log}) == 2  # two ranks trained
    assert not list(store.glob("cells/*/claim*"))
    ref = reference[reference["cell"] == summary.cells[0].id].reset_index(drop=True)
    _same_table(table(store), ref)


def test_the_cell_entry_point_loads_run_cell_once():
    """torchrun's workers start `python -m benchmark.runner`: `-m benchmark.runner.run_cell` ran a second copy of a
    module the package had already imported (runpy's RuntimeWarning on every rank)."""
    done = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "benchmark.runner", "--help"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m benchmark.runner ") and "RuntimeWarning" not in done.stderr


def test_slurm_no_wait_rerun_does_not_resubmit_queued_cells(tmp_path, train_log):
    """`--executor slurm --no-wait`, then the same command again while the jobs wait or run: the cells are busy
    (queued or claimed), nothing is submitted twice; once the job finishes the cell is done."""
    pytest.importorskip("submitit")
    o = options(tmp_path / "store", executor="slurm", cluster="local", gpus_per_task=0, noise="0.1", seeds="1",
                wait=False, sets=["dummy:method.step_s=0.3", "dummy:method.steps=6"])
    first = run_sweep(o, echo=lambda s: None)
    (cell,) = first.cells
    cell_dir = tmp_path / "store" / "cells" / cell.id
    queued = read_json(cell_dir / st.QUEUED)
    assert queued["scheduler"] == "local" and st.cell_status(cell_dir) in (st.QUEUED_S, st.RUNNING)
    again = run_sweep(o, echo=lambda s: None)
    assert again.counts()["busy"] == 1 and not again.done
    jobs_before = len(list((tmp_path / "store" / "slurm").glob("*_submitted.pkl")))
    assert jobs_before == 1, "the rerun submitted the queued cell again"
    deadline = time.time() + 120
    while st.cell_status(cell_dir) != st.DONE_S:
        assert time.time() < deadline, "the submitted job did not finish the cell"
        time.sleep(0.2)
    assert not (cell_dir / st.QUEUED).exists()
    assert run_sweep(o, echo=lambda s: None).counts()["skipped"] == 1


def test_queued_slurm_job_is_looked_up_with_squeue(tmp_path, monkeypatch):
    """A Slurm job squeue still lists keeps its cell queued; one it no longer lists releases the cell; without
    squeue the record is trusted."""
    cell_dir = tmp_path / "cell"
    cell_dir.mkdir()
    st.mark_queued(cell_dir, "123_4", "slurm")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    squeue = bin_dir / "squeue"
    monkeypatch.setattr(st, "_SQUEUE_TTL_S", -1.0)  # ask every time

    def fake(lines: str) -> None:
        squeue.write_text(f"#!/bin/sh\nprintf '{lines}'\n")
        squeue.chmod(0o755)

    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    fake("123_3\\n123_4\\n")
    assert st.cell_status(cell_dir) == st.QUEUED_S
    fake("123_3\\n")
    assert st.cell_status(cell_dir) == st.MISSING
    squeue.unlink()
    monkeypatch.setenv("PATH", str(bin_dir))
    assert st.cell_status(cell_dir) == st.QUEUED_S  # cannot ask: trusted until the file is deleted


def test_import_of_a_missing_or_failing_file_is_one_line(tmp_path):
    from benchmark.runner.run_cell import import_modules

    with pytest.raises(BenchError, match="--import: file not found"):
        import_modules([str(tmp_path / "nope.py")])
    bad = tmp_path / "broken_plugin.py"
    bad.write_text("x = 1\nraise ValueError('half-written plug-in')\n")
    with pytest.raises(BenchError, match=r"--import: ValueError: half-written plug-in \(line 2\)"):
        import_modules([str(bad)])
    assert "broken_plugin" not in sys.modules
    r = bench("--method", "dummy", "--noise", "0.1", "--dataset", TINY, "--dry-run", "--import", str(bad),
              "--out", str(tmp_path / "s"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr


@pytest.mark.parametrize("progress", [False, True])
def test_planning_and_cells_load_datasets_with_the_sweeps_progress_flag(tmp_path, monkeypatch, progress):
    """`--no-progress` reaches the dataset loader (the shapes dataset draws a bar while it is generated), both when
    the sweep is planned and when a worker runs a cell."""
    import benchmark.datasets as datasets
    from benchmark.runner.cells import DatasetCache

    rc = sys.modules["benchmark.runner.run_cell"]  # the package exports a function of the same name
    real, seen = datasets.load, []

    def recording_load(spec, progress=True):
        seen.append(progress)
        return real(spec, progress=progress)

    monkeypatch.setattr(datasets, "load", recording_load)
    monkeypatch.setattr(rc, "_DATASETS", DatasetCache())
    o = options(tmp_path / "store", progress=progress, noise="0.1", jobs=1)
    assert "dummy" in dry_run(o) and seen == [progress]
    cell = resolve_all(grid(o), DatasetCache(progress=progress))[0]
    cell_dir = st.Store(o.store).write_config(cell.config)
    assert run_cell(cell_dir, progress=progress)["status"] == "done"
    assert seen[1:] == [progress, progress]  # planning here, then the worker's own cache
