"""Runner overhead: what `bench run` costs beyond training and evaluation, per cell.

Default mode runs a sweep of the torch-free `dummy` method (tests/test_runner_dummy.py: "training" takes
milliseconds, predictions are jittered ground truth) over the built-in `shapes` dataset, so nearly everything measured
is the runner itself: start-up and planning (dataset load + fingerprints, config resolution, cell hashing), worker
start, claiming, noise generation and writing, result files, DONE verification, the results table and its CSV/Parquet.
Per-cell overhead = (wall time x workers - time inside train/predict/evaluate) / cells, judged on the one-worker run
(with N workers on N cores the figure also counts workers competing for cores with each other and anything else
running). Also measured: a rerun where every cell is already done (the skip path) and `--dry-run`. Target: <= 2 s per
cell.

`--full` instead runs the README quick start, `bench run --method ssd_det --noise 0.1..0.4` with its default
baselines and executor, and records wall time and peak RSS (sum over the runner's process tree, and the largest
single process). Targets on 2 CPU cores: <= 20 min, <= 4 GB.

    python3 benchmarks/runner_overhead.py [--seeds 3] [--jobs 1,2] [--dataset shapes]
    python3 benchmarks/runner_overhead.py --full [--out DIR]

Prints a table and writes benchmarks/out/runner_overhead.json (or runner_full.json with --full).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "benchmarks" / "out"
TARGET_OVERHEAD_S, TARGET_WALL_MIN, TARGET_RSS_GB = 2.0, 20.0, 4.0
PAGE = os.sysconf("SC_PAGE_SIZE")


class TreeRSS:
    """Samples the resident memory of a process and all its descendants (Linux /proc) every `interval_s`."""

    def __init__(self, pid: int, interval_s: float = 0.2):
        self.pid, self.interval_s = pid, interval_s
        self.peak_sum = self.peak_single = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _tree(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
        out, todo = [], [self.pid]
        while todo:
            p = todo.pop()
            out.append(p)
            todo += children.get(p, [])
        return out

    def _rss(self, pid: int) -> int:
        try:
            return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        except (OSError, ValueError, IndexError):
            return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            sizes = [self._rss(p) for p in self._tree()]
            self.peak_sum = max(self.peak_sum, sum(sizes))
            self.peak_single = max([self.peak_single, *sizes])
            self._stop.wait(self.interval_s)

    def __enter__(self) -> TreeRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def bench_run(args: list[str], env: dict) -> dict:
    """Run `bench run ARGS` as a subprocess: wall time, peak RSS, exit code, last lines of output."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "benchmark.cli", "run", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    with TreeRSS(proc.pid) as rss:
        output = proc.communicate()[0]
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(output[-3000:], file=sys.stderr)
    return {"wall_s": wall, "peak_rss_gb": rss.peak_sum / 1e9, "peak_rss_single_gb": rss.peak_single / 1e9,
            "returncode": proc.returncode, "output_tail": output.strip().splitlines()[-12:]}


def cell_timings(store: Path) -> list[dict]:
    out = []
    for m in sorted(store.glob("cells/*/metrics.json")):
        if (m.parent / "DONE").exists():
            out.append(json.loads(m.read_text())["timing"])
    return out


def overhead(args) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", f"from benchmark.datasets import load; load({args.dataset!r})"], env=env,
                   check=True, capture_output=True)  # generate / cache the dataset first: not runner overhead
    common = ["--method", "dummy", "--noise", args.noise, "--seeds", str(args.seeds), "--dataset", args.dataset,
              "--no-baselines", "--import", "test_runner_dummy", "--no-report", "--no-progress"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="runner-overhead-") as tmp:
        dry = bench_run([*common, "--out", f"{tmp}/dry", "--dry-run"], env)
        for jobs in args.jobs:
            store = Path(tmp) / f"store-j{jobs}"
            first = bench_run([*common, "--out", str(store), "--jobs", str(jobs)], env)
            if first["returncode"] != 0:
                raise SystemExit(f"bench run failed (jobs={jobs})")
            timings = cell_timings(store)
            n = len(timings)
            work = sum(t.get("train_s", 0) + t.get("predict_s", 0) + t.get("eval_s", 0) for t in timings)
            inside = sum(t.get("load_s", 0) + t.get("noise_s", 0) for t in timings)
            rerun = bench_run([*common, "--out", str(store), "--jobs", str(jobs)], env)
            rows.append({
                "jobs": jobs, "cells": n, "wall_s": first["wall_s"], "train_predict_eval_s": work,
                "overhead_per_cell_s": (first["wall_s"] * min(jobs, n) - work) / n,
                "in_cell_load_noise_s_per_cell": inside / n,
                "rerun_all_skipped_wall_s": rerun["wall_s"], "skip_per_cell_s": rerun["wall_s"] / n,
                "peak_rss_gb": first["peak_rss_gb"],
            })
    return {"mode": "dummy", "dataset": args.dataset, "noise": args.noise, "seeds": args.seeds,
            "dry_run_wall_s": dry["wall_s"], "runs": rows, "target_overhead_per_cell_s": TARGET_OVERHEAD_S,
            # judged on the sequential run: with N workers the figure also counts workers waiting for busy cores
            "meets_target": min(rows, key=lambda r: r["jobs"])["overhead_per_cell_s"] <= TARGET_OVERHEAD_S,
            "cpu_count": len(os.sched_getaffinity(0)), "load_average": os.getloadavg()[0]}


def full(args) -> dict:
    out_dir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="runner-full-"))
    run = bench_run(["--method", "ssd_det", "--noise", "0.1..0.4", "--out", str(out_dir), "--no-progress"],
                    dict(os.environ))
    return {"mode": "full", "command": "bench run --method ssd_det --noise 0.1..0.4", "store": str(out_dir),
            **run, "wall_min": run["wall_s"] / 60, "cells": len(cell_timings(out_dir)),
            "targets": {"wall_min": TARGET_WALL_MIN, "peak_rss_gb": TARGET_RSS_GB},
            "meets_targets": run["returncode"] == 0 and run["wall_s"] / 60 <= TARGET_WALL_MIN
            and run["peak_rss_gb"] <= TARGET_RSS_GB, "cpu_count": len(os.sched_getaffinity(0))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="run the README quick start and record wall time + RSS")
    ap.add_argument("--out", default=None, help="--full: results store to use (default: a temp dir)")
    ap.add_argument("--dataset", default="shapes")
    ap.add_argument("--noise", default="0.1..0.4")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--jobs", default="1,2", type=lambda s: [int(x) for x in s.split(",")])
    args = ap.parse_args()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    if args.full:
        res = full(args)
        path = OUT_DIR / "runner_full.json"
        print(f"{res['command']}: {res['cells']} cells, wall {res['wall_min']:.1f} min (target <= {TARGET_WALL_MIN:g}),"
              f" peak RSS {res['peak_rss_gb']:.2f} GB summed over processes / {res['peak_rss_single_gb']:.2f} GB "
              f"largest process (target <= {TARGET_RSS_GB:g}), exit {res['returncode']}")
        print("\n".join(res["output_tail"]))
    else:
        res = overhead(args)
        path = OUT_DIR / "runner_overhead.json"
        print(f"runner overhead, dummy method on {res['dataset']} ({res['noise']} x {res['seeds']} seeds), "
              f"{res['cpu_count']} cores; dry-run {res['dry_run_wall_s']:.2f} s")
        head = ("jobs", "cells", "wall s", "train+pred+eval s", "overhead s/cell", "load+noise s/cell",
                "rerun (skip) s", "peak RSS GB")
        print("  ".join(f"{h:>17}" for h in head))
        for r in res["runs"]:
            vals = (r["jobs"], r["cells"], f"{r['wall_s']:.2f}", f"{r['train_predict_eval_s']:.2f}",
                    f"{r['overhead_per_cell_s']:.3f}", f"{r['in_cell_load_noise_s_per_cell']:.3f}",
                    f"{r['rerun_all_skipped_wall_s']:.2f}", f"{r['peak_rss_gb']:.2f}")
            print("  ".join(f"{v:>17}" for v in vals))
        print(f"target <= {TARGET_OVERHEAD_S:g} s/cell (one worker): {'met' if res['meets_target'] else 'NOT met'}"
              f"; load average {os.getloadavg()[0]:.1f} on {res['cpu_count']} cores")
    path.write_text(json.dumps(res, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
