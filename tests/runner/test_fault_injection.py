"""Fault injection on one sweep (torch-free `dummy` method, tests/test_runner_dummy.py): a full disk, SIGKILL of a
worker and of the runner at random (seeded) moments, a file truncated under a finished cell. After each fault the
done cells are intact (the store's one check, `benchmark.store_layout.done_problem`); rerunning the same command
ends with a results table identical to an uninterrupted run's, and every damaged cell redone.

The full disk is a 4 MiB tmpfs mounted for the test where that is allowed (root); elsewhere it is simulated by
`tests/fault_disk.py` (every atomic write spends a byte budget and fails with ENOSPC once it is spent), and the
test says which in its output. `NOISYBOX_FAULT_SEED` varies the moments (default 25).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pandas.testing as pdt
import pytest
from test_runner_dummy import TINY, checkpointed_steps

from benchmark import results
from benchmark import store_layout as layout
from benchmark.runner import store as st

TESTS = Path(__file__).resolve().parents[1]  # tests/: the helper modules
KEY_COLUMNS = ["cell", "method", "dataset", "noise_model", "noise_level", "seed", "AP", "AP50", "AP75", "APs",
               "AR100", "VOC_AP50", "train_steps", "train_loss"]
ARGS = ["--method", "dummy", "--noise", "0.1,0.2,0.3", "--seeds", "2", "--dataset", TINY, "--no-baselines",
        "--import", "test_runner_dummy", "--import", "fault_disk", "--no-report",
        "--set", "dummy:method.step_s=0.1", "--set", "dummy:method.steps=5"]
CELLS = 6


@pytest.fixture
def env(tmp_path, monkeypatch):
    log = tmp_path / "dummy-train.log"
    monkeypatch.setenv("NOISYBOX_DUMMY_LOG", str(log))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.delenv("NOISYBOX_FAULT_SPACE", raising=False)
    return log


def start(store: Path, jobs: int, out: Path, **env) -> subprocess.Popen:
    with open(out, "ab") as fh:
        return subprocess.Popen([sys.executable, "-m", "benchmark.cli", "run", *ARGS, "--out", str(store),
                                 "--jobs", str(jobs)], stdout=fh, stderr=subprocess.STDOUT,
                                env={**os.environ, **env})


def finish(store: Path, out: Path, jobs: int = 2, **env) -> int:
    proc = start(store, jobs, out, **env)
    return proc.wait(timeout=300)


def table(store: Path):
    return results.load(store)[KEY_COLUMNS].reset_index(drop=True)


def cell_dirs(store: Path) -> list[Path]:
    return sorted(d for d in (store / "cells").glob("*") if d.is_dir()) if (store / "cells").is_dir() else []


def markers(store: Path) -> dict[str, bytes]:
    return {d.name: (d / layout.DONE).read_bytes() for d in cell_dirs(store) if (d / layout.DONE).is_file()}


def trainings(log: Path) -> list[tuple[str, int]]:
    """(cell, step it started from) of every finished training run, in order."""
    if not log.exists():
        return []
    return [(c, int(s)) for c, _, s in (line.split() for line in log.read_text().splitlines())]


def assert_intact(store: Path) -> None:
    """Whatever was interrupted, every cell with DONE passes the store's check."""
    bad = {d.name: layout.done_problem(d) for d in cell_dirs(store) if (d / layout.DONE).is_file()}
    assert not {k: v for k, v in bad.items() if v}, bad


def wait_claims_gone(store: Path, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while any(st.claim_holder(d) for d in cell_dirs(store)):
        assert time.time() < deadline, "a worker outlived its runner"
        time.sleep(0.1)


@contextmanager
def small_disk(where: Path, size: str = "4m", simulate: bool = False):
    """A size-limited folder: a tmpfs mount (root only), else None (the caller simulates ENOSPC)."""
    where.mkdir()
    mounted = not simulate and os.geteuid() == 0 and shutil.which("mount") and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True).returncode == 0
    try:
        yield where if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def cell_bytes(cell: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in cell.rglob("*") if p.is_file())


@pytest.mark.parametrize("disk", ["tmpfs where allowed", pytest.param("simulated", marks=pytest.mark.slow)])
def test_faults_end_with_the_uninterrupted_table_and_every_damaged_cell_redone(tmp_path, env, capsys, disk):
    rng = random.Random(int(os.environ.get("NOISYBOX_FAULT_SEED", "25")))
    out = tmp_path / "bench.out"
    ref = tmp_path / "ref"
    assert finish(ref, out) == 0, out.read_text()
    expected = table(ref)
    assert len(expected) == CELLS
    per_cell = max(cell_bytes(d) for d in cell_dirs(ref))
    damaged: list[tuple[str, str]] = []  # (cell, what happened to it)

    with small_disk(tmp_path / "disk", simulate=disk == "simulated") as disk:
        store = (disk or tmp_path) / "store"
        # 1. full disk: room for about two cells; the sweep stops with one line, done cells stay intact
        if disk is not None:
            mode = "tmpfs"
            vfs = os.statvfs(disk)
            free = vfs.f_bavail * vfs.f_frsize
            filler = disk / "filler"
            filler.write_bytes(b"\0" * max(0, free - int(2.5 * per_cell)))
            code = finish(store, out, jobs=1)
            filler.unlink()
        else:
            mode = "simulated ENOSPC (tests/fault_disk.py)"
            budget = tmp_path / "budget"
            budget.write_text(str(int(2.5 * sum(p.stat().st_size for p in cell_dirs(ref)[0].rglob("*")
                                                if p.is_file()))))
            code = finish(store, out, jobs=1, NOISYBOX_FAULT_SPACE=str(budget))
        text = out.read_text()
        assert code in (1, 2) and "no space left on device" in text, text[-3000:]  # 2: the table could not be written either
        assert "Traceback" not in text.split("no space left on device")[-1]
        wait_claims_gone(store)
        assert_intact(store)
        assert 0 < len(markers(store)) < CELLS, "the disk should fill part-way through the sweep"
        damaged += [(d.name, "disk full") for d in cell_dirs(store) if (d / layout.FAILED).exists()]

        # 2. SIGKILL of a worker in the middle of a cell's training
        proc = start(store, 2, out)
        victim, deadline = None, time.time() + 120
        while victim is None and proc.poll() is None and time.time() < deadline:
            for d in cell_dirs(store):
                holder = st.claim_holder(d)
                if holder and holder.get("pid") not in (None, proc.pid) and (d / "train" / "checkpoint.json").exists():
                    victim = (d, holder["pid"])
                    break
            time.sleep(0.02)
        assert victim is not None, "no worker was seen training"
        time.sleep(rng.uniform(0.0, 0.15))
        os.kill(victim[1], signal.SIGKILL)
        damaged.append((victim[0].name, "worker killed"))
        proc.wait(timeout=300)
        text = out.read_text()
        if not (victim[0] / layout.DONE).exists():  # it may have finished in the moment before the kill
            assert "worker process died (signal 9" in text
        assert_intact(store)

        # 3. SIGKILL of the runner (its workers die with it) at a random moment of training
        for d in cell_dirs(store):  # start from a store with training left to do
            if (d / layout.DONE).exists() and rng.random() < 0.5:
                shutil.rmtree(d)
        before = markers(store)
        proc = start(store, 2, out)
        target = checkpointed_steps(store) + rng.randint(1, 8)
        deadline = time.time() + 120
        while checkpointed_steps(store) < target and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.1))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        wait_claims_gone(store)
        assert_intact(store)
        assert all(markers(store).get(c) == m for c, m in before.items()), "a done cell was lost or recomputed"
        damaged += [(d.name, "runner killed") for d in cell_dirs(store) if st.cell_status(d) == st.PARTIAL]

        # 4. run to the end, then truncate a file under a finished cell
        assert finish(store, out) == 0, out.read_text()[-3000:]
        done = markers(store)
        assert len(done) == CELLS
        victim = rng.choice(sorted(done))
        name = rng.choice([layout.PREDICTIONS, layout.METRICS, layout.REFINED, layout.NOISY_TRAIN, layout.ENV])
        path = store / "cells" / victim / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        damaged.append((victim, f"{name} truncated"))
        df = results.load(store)
        assert victim not in set(df["cell"])
        assert results.corrupt_line(results.left_out(store, df)[0]).startswith(f"left out: 1 corrupt cell(s): {victim}")
        trained_before = len(trainings(env))

        # 5. the same command again: every damaged cell redone, the table the uninterrupted run's
        assert finish(store, out) == 0, out.read_text()[-3000:]
        assert_intact(store)
        final = markers(store)
        assert len(final) == CELLS and all(c in final for c, _ in damaged)  # every damaged cell done and intact
        assert final[victim] != done[victim]
        assert (victim, 0) in trainings(env)[trained_before:], "the truncated cell was redone from scratch"
        assert all(final[c] == m for c, m in done.items() if c != victim), "an intact cell was recomputed"
        pdt.assert_frame_equal(table(store), expected, check_dtype=False)
        with capsys.disabled():  # read by benchmarks/fault_injection.py
            print("\nFAULT-INJECTION " + json.dumps({"disk": mode, "damaged": damaged, "cells": CELLS,
                                                     "redone": sorted({c for c, _ in damaged}),
                                                     "table_identical": True}))
