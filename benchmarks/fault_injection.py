"""Fault injection on a sweep, several seeds: full disk, SIGKILL of a worker and of the runner, a truncated file.

Runs tests/runner/test_fault_injection.py once per seed (`NOISYBOX_FAULT_SEED`: the moments of the kills and which file
of which finished cell is truncated) and collects what each run damaged, whether every damaged cell was redone and
whether the final results table equals the uninterrupted run's. The full disk is a 4 MiB tmpfs where the user may
mount one (root), else simulated (`--simulated` forces that): every atomic write spends a byte budget and fails with
ENOSPC once it is spent (tests/fault_disk.py).

    python3 benchmarks/fault_injection.py [--seeds 25,1,7] [--simulated]

Prints a table and writes benchmarks/out/fault_injection.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "benchmarks" / "out"
TEST = "tests/runner/test_fault_injection.py"


def run(seed: int, simulated: bool) -> dict:
    variant = "simulated" if simulated else "tmpfs where allowed"
    env = {**os.environ, "NOISYBOX_FAULT_SEED": str(seed),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-m", "",
                           f"{TEST}::test_faults_end_with_the_uninterrupted_table_and_every_damaged_cell_redone"
                           f"[{variant}]"], cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    found = [line for line in proc.stdout.splitlines() if line.startswith("FAULT-INJECTION ")]
    out = json.loads(found[-1].split(" ", 1)[1]) if found else {"disk": None, "damaged": [], "redone": [],
                                                                 "table_identical": False}
    return {"seed": seed, "passed": proc.returncode == 0, "seconds": round(seconds, 1), **out,
            "tail": "" if proc.returncode == 0 else proc.stdout[-2000:]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="25,1,7")
    ap.add_argument("--simulated", action="store_true", help="simulate the full disk even where tmpfs can be mounted")
    args = ap.parse_args(argv)
    rows = [run(int(s), args.simulated) for s in args.seeds.split(",")]
    print(f"{'seed':>5} {'disk':<40} {'damaged cells (what)':<60} {'redone':>6} {'table ==':>8} {'s':>6}")
    for r in rows:
        what = ", ".join(f"{c[:8]} ({w})" for c, w in r["damaged"])
        print(f"{r['seed']:>5} {str(r['disk']):<40} {what:<60} {len(r['redone']):>6} "
              f"{'yes' if r['passed'] and r['table_identical'] else 'NO':>8} {r['seconds']:>6}")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / "fault_injection.json"
    path.write_text(json.dumps(rows, indent=2))
    print(f"wrote {path}")
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
