"""The results store's completion state: claims (exclusive, stale, re-entrant, lost), DONE verification, statuses,
and the one-line messages for disk-full and permission problems."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from benchmark.errors import BenchError
from benchmark.io import dumps_json, write_json
from benchmark.runner import store as st
from benchmark.runner.cells import cell_id

CONFIG = {"schema": 1, "code_version": "0.1.0", "method": "m", "profile": "cpu", "seed": 0,
          "method_config": {"train": {}}, "dataset": {"name": "d", "kind": "coco", "train_sha256": "a",
                                                      "test_sha256": "b"},
          "noise": {"model": "uniform", "level": 0.2, "params": {}, "seed": 0, "rng": "numpy"}}


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _write_claim(cell: Path, **info) -> Path:
    cell.mkdir(parents=True, exist_ok=True)
    path = cell / st.CLAIM
    path.write_bytes(dumps_json({"owner": "other", "pid": 1, "host": st.HOST, "time": time.time(), **info}))
    return path


# ---- claims -------------------------------------------------------------------------------------------------------
def test_claim_is_exclusive_until_released(tmp_path):
    a = st.Claim.acquire(tmp_path, owner="a")
    assert a is not None and st.claim_holder(tmp_path)["owner"] == "a"
    assert st.Claim.acquire(tmp_path, owner="b") is None
    a.release()
    assert not (tmp_path / st.CLAIM).exists()
    b = st.Claim.acquire(tmp_path, owner="b")
    assert b is not None
    b.release()
    assert not list(tmp_path.glob("claim.*")), "no temp files left behind"


def test_claim_of_a_dead_process_is_stale(tmp_path):
    _write_claim(tmp_path, pid=_dead_pid())
    assert st.claim_holder(tmp_path) is None
    c = st.Claim.acquire(tmp_path, owner="me")
    assert c is not None and st.claim_holder(tmp_path)["owner"] == "me"
    c.release()


def test_claim_with_reused_pid_is_stale(tmp_path):
    # our own (live) pid, but a different process start time: the pid was reused
    _write_claim(tmp_path, pid=os.getpid(), pid_start="1")
    assert st.claim_holder(tmp_path) is None
    _write_claim(tmp_path, pid=os.getpid(), pid_start=st._proc_start(os.getpid()))
    assert st.claim_holder(tmp_path) is not None


def test_claim_from_another_host_goes_stale_without_heartbeat(tmp_path):
    path = _write_claim(tmp_path, host="some-other-node", pid=123)
    assert st.Claim.acquire(tmp_path, owner="me") is None  # fresh heartbeat: respected
    old = time.time() - st.STALE_AFTER_S - 5
    os.utime(path, (old, old))
    c = st.Claim.acquire(tmp_path, owner="me")
    assert c is not None
    c.release()


def test_unreadable_claim_is_respected_only_while_young(tmp_path):
    path = tmp_path / st.CLAIM
    path.write_bytes(b"{not json")
    assert st.Claim.acquire(tmp_path, owner="me") is None
    old = time.time() - 120
    os.utime(path, (old, old))
    assert st.Claim.acquire(tmp_path, owner="me") is not None


def test_requeued_owner_takes_over_its_own_stale_claim(tmp_path):
    _write_claim(tmp_path, owner="slurm:77_3", pid=_dead_pid())
    c = st.Claim.acquire(tmp_path, owner="slurm:77_3")
    assert c is not None and not c.reentered
    c.release()
    assert not (tmp_path / st.CLAIM).exists()


def test_child_of_the_claimer_reenters_without_releasing(tmp_path):
    outer = st.Claim.acquire(tmp_path, owner="slot-1")
    code = textwrap.dedent(f"""
        from benchmark.runner import store as st
        c = st.Claim.acquire({str(tmp_path)!r}, owner="slot-1")
        print(c is not None and c.reentered)
        c.release()
        other = st.Claim.acquire({str(tmp_path)!r}, owner="someone-else")
        print(other is None)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True"]
    assert st.claim_holder(tmp_path)["owner"] == "slot-1"  # the child's release left the outer claim alone
    outer.release()


def test_lost_claim_is_noticed_by_the_heartbeat(tmp_path):
    c = st.Claim.acquire(tmp_path, owner="me")
    assert c.heartbeat() and not c.lost
    _write_claim(tmp_path, owner="thief", pid=os.getpid())
    assert not c.heartbeat() and c.lost
    c.release()
    assert st.claim_holder(tmp_path)["owner"] == "thief"  # release never removes someone else's claim


def test_heartbeat_thread_touches_the_claim(tmp_path):
    c = st.Claim.acquire(tmp_path, owner="me")
    old = time.time() - 1000
    os.utime(c.path, (old, old))
    c.start_heartbeat(interval_s=0.05)
    time.sleep(0.3)
    assert time.time() - c.path.stat().st_mtime < 5
    c.release()


_RACE = textwrap.dedent("""
    import os, sys, time
    from benchmark.runner import store as st
    cell, go, done, owner = sys.argv[1:5]
    print("ready", flush=True)
    while not os.path.exists(go):
        pass
    c = st.Claim.acquire(cell, owner=owner)
    print("won" if c is not None else "lost", flush=True)
    while not os.path.exists(done):  # hold the claim (alive) until every racer has tried
        time.sleep(0.01)
""")


@pytest.mark.parametrize("stale_first", [False, True])
def test_racing_claimers_get_exactly_one_winner(tmp_path, stale_first):
    for round_ in range(1):
        cell, go, done = tmp_path / f"cell{round_}", tmp_path / f"go{round_}", tmp_path / f"done{round_}"
        cell.mkdir()
        if stale_first:  # everyone also races to break the same stale claim
            _write_claim(cell, pid=_dead_pid())
        procs = [subprocess.Popen([sys.executable, "-c", _RACE, str(cell), str(go), str(done), f"p{i}"],
                                  stdout=subprocess.PIPE, text=True) for i in range(6)]
        try:
            assert all(p.stdout.readline().strip() == "ready" for p in procs)
            go.touch()
            results = sorted(p.stdout.readline().strip() for p in procs)
        finally:
            done.touch()
            for p in procs:
                p.communicate(timeout=60)
        assert results == ["lost"] * 5 + ["won"], results


# ---- DONE and statuses --------------------------------------------------------------------------------------------
def _done_cell(root: Path) -> Path:
    config = {**CONFIG, "cell_id": cell_id(CONFIG)}
    cell = root / config["cell_id"]
    write_json(cell / st.CONFIG, config)
    write_json(cell / st.PREDICTIONS, [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}])
    write_json(cell / st.METRICS, {"coco": {"AP": 0.5}})
    (cell / st.TRAIN_DIR).mkdir()
    (cell / st.TRAIN_DIR / "checkpoint.pth").write_bytes(b"x")
    st.mark_done(cell, owner="me")
    return cell


def test_done_cell_verifies_and_alterations_are_caught(tmp_path):
    cell = _done_cell(tmp_path)
    assert st.done_problem(cell) is None and st.cell_status(cell) == st.DONE_S
    metrics = (cell / st.METRICS).read_bytes()
    (cell / st.METRICS).write_bytes(metrics.replace(b"0.5", b"0.9"))
    assert "metrics.json changed" in st.done_problem(cell)
    assert st.cell_status(cell) == st.CORRUPT
    (cell / st.METRICS).write_bytes(metrics)
    (cell / st.PREDICTIONS).unlink()
    assert "predictions.json is missing" in st.done_problem(cell)


def test_done_marker_damage_and_foreign_config_are_caught(tmp_path):
    cell = _done_cell(tmp_path)
    (cell / st.DONE).write_bytes(b"\x00garbage")
    assert "unreadable" in st.done_problem(cell)
    cell2 = _done_cell(tmp_path / "b")
    renamed = cell2.parent / "0123456789abcdef"
    cell2.rename(renamed)  # a config that does not hash to its directory name
    assert "does not hash" in st.done_problem(renamed)


def test_statuses(tmp_path):
    cell = tmp_path / "c"
    assert st.cell_status(cell) == st.MISSING
    write_json(cell / st.CONFIG, CONFIG)
    assert st.cell_status(cell) == st.MISSING  # planned, never started
    (cell / st.TRAIN_DIR).mkdir()
    assert st.cell_status(cell) == st.PARTIAL
    write_json(cell / st.FAILED, {"error": "boom"})
    assert st.cell_status(cell) == st.FAILED_S
    c = st.Claim.acquire(cell, owner="me")
    assert st.cell_status(cell) == st.RUNNING
    assert st.cell_status(cell, ignore_claim=True) == st.FAILED_S
    c.release()


def test_reset_keeps_progress_for_resume_and_clears_for_redo(tmp_path):
    cell = _done_cell(tmp_path)
    write_json(cell / st.NOISE_DIR / "manifest.json", {})
    (cell / st.LOG).write_text("history\n")
    st.reset(cell, keep_progress=True)
    names = sorted(p.name for p in cell.iterdir())
    assert names == sorted([st.CONFIG, st.TRAIN_DIR, st.NOISE_DIR, st.LOG])
    st.reset(cell, keep_progress=False)
    assert sorted(p.name for p in cell.iterdir()) == sorted([st.CONFIG, st.LOG])


# ---- clear messages ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "no space left on device"),
                                         (errno.EACCES, "permission denied"), (errno.EPERM, "permission denied"),
                                         (errno.EROFS, "read-only file system")])
def test_store_errors_are_one_line(tmp_path, code, words):
    err = st.store_error(OSError(code, os.strerror(code), str(tmp_path / "x")), tmp_path)
    assert isinstance(err, BenchError) and words in str(err) and str(tmp_path / "x") in str(err)
    assert "\n" not in str(err)


def test_unwritable_store_is_reported_before_anything_runs(tmp_path, monkeypatch):
    def deny(self, *a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", deny)
    with pytest.raises(BenchError, match="permission denied"):
        st.Store(tmp_path / "results").ensure_writable()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_directory_gives_permission_message(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(BenchError, match="permission denied"):
            st.Store(ro / "results").ensure_writable()
    finally:
        ro.chmod(0o700)
