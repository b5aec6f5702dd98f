"""Noise generation speed at COCO train2017 scale: the suite's `noise` package against a per-box loop.

Generates (seeded, into a temporary folder) a COCO-train-sized annotation file like the synthetic
one the targets of issue 4 were set on: 118 287 images (W, H ~ U{320..640}), 860 001 boxes on uniformly random images
(fully inside, w and h 2-90 % of the side, 0.01 px), 1 % crowd, 80 COCO category ids, one 4-point polygon per box
(~200 MB). Then runs, each in its own subprocess so its wall time and peak RSS are its own (`os.wait4`):

  kernel       the perturbation alone on extracted arrays: the published script's per-box loop (float32 rows, four
               scalar legacy draws per box) vs the vectorised kernels (`numpy` and `oamil-legacy` modes, best of 3);
               a second loop with NumPy-1.x float64 arithmetic is checked bit-equal to the legacy kernel
  one level    load_coco + make_noisy(uniform, 0.4) + write_noisy (json + manifest)
  four levels  one load_coco, then 0.1..0.4 through iter_noisy, each written by write_levels while the next is made
               (as `bench noise make` writes)
  bench CLI    `bench noise make -d coco:TRAIN,TEST -l 0.4` as a user runs it (interpreter start-up included)
  I/O floor    orjson loads + dumps + write with the garbage collector off, nothing else

The VM this runs on changes speed between sessions (the same per-box loop has read 8 s and 18 s), and the absolute
targets were set on a machine where the loop took 18 s and the I/O floor 3.6 s. So the table also states the
targets scaled by this run's I/O floor (the floor, like one level, is parse, allocation and write bound; the loop
is pure interpretation and moves differently): "one level <= 8 s x floor here / 3.6 s", whole process against
whole process.

Targets (issue 4): kernel >= 50x faster than the per-box loop; one level <= 8 s; four levels <= 20 s; peak RSS
<= 2.5 GB. Prints a table and writes benchmarks/out/noise_speed.json.

    python3 benchmarks/noise_speed.py [--images 118287] [--boxes 860001] [--seed 20240601] [--skip-cli] [--repeat 3]

One level, four levels and the I/O floor run `--repeat` times each; the run with the median time is reported, and the
median whole-process time of the runs is what the scaled targets compare.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out" / "noise_speed.json"
COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
TARGET_KERNEL_SPEEDUP, TARGET_ONE_S, TARGET_FOUR_S, TARGET_RSS_GB = 50.0, 8.0, 20.0, 2.5
# the 2-vCPU machine the targets of issue 4 were set on: the published per-box loop (OA-MIL `utils/gen_noisy_coco.py`,
# `gen_noise_gt`) and the I/O floor
# (orjson loads + dumps with the garbage collector off, whole process under GNU time), on the same file size
REFERENCE_LOOP_S, REFERENCE_FLOOR_S = 18.05, 3.6


# ---- data -------------------------------------------------------------------------------------------------------
def write_train_file(path: Path, seed: int, n_images: int, n_boxes: int, crowd_rate: float = 0.01) -> None:
    import orjson

    rng = np.random.default_rng(seed)
    wh = rng.integers(320, 641, size=(n_images, 2)).astype(np.float64)
    img = rng.integers(0, n_images, size=n_boxes)
    side = wh[img]
    size = np.round(rng.uniform(0.02, 0.9, size=(n_boxes, 2)) * side, 2)
    xy = np.round(rng.uniform(0, 1, size=(n_boxes, 2)) * (side - size), 2)
    boxes = np.concatenate([xy, size], axis=1)
    cat = rng.choice(COCO_IDS, size=n_boxes)
    crowd = rng.random(n_boxes) < crowd_rate
    images = [{"id": i + 1, "file_name": f"{i + 1:012d}.jpg", "width": int(w), "height": int(h)}
              for i, (w, h) in enumerate(wh)]
    anns = []
    for k, (i, c, (x, y, w, h), cr) in enumerate(zip(img.tolist(), cat.tolist(), boxes.tolist(), crowd.tolist())):
        poly = [round(x, 2), round(y, 2), round(x + w, 2), round(y, 2), round(x + w, 2), round(y + h, 2),
                round(x, 2), round(y + h, 2)]
        anns.append({"id": k + 1, "image_id": i + 1, "category_id": c, "bbox": [x, y, w, h],
                     "area": round(w * h, 4), "iscrowd": int(cr), "segmentation": [poly]})
    coco = {"info": {"description": "synthetic COCO-train-sized file (noise_speed benchmark)"}, "images": images,
            "annotations": anns, "categories": [{"id": c, "name": f"class{c}"} for c in COCO_IDS]}
    path.write_bytes(orjson.dumps(coco))


def write_test_file(path: Path) -> None:
    import orjson

    coco = {"images": [{"id": 1, "file_name": "t.jpg", "width": 100, "height": 100}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": c, "bbox": [1, 1, 5, 5], "area": 25}
                            for c in COCO_IDS[:1]],
            "categories": [{"id": c, "name": f"class{c}"} for c in COCO_IDS]}
    path.write_bytes(orjson.dumps(coco))


# ---- children -------------------------------------------------------------------------------------------------------
def per_box_loop(bs, gamma: float, seed: int = 45) -> np.ndarray:
    """The protocol box by box, as OA-MIL's script runs it (NumPy-1.x arithmetic, scalar legacy draws)."""
    from noise.legacy import legacy_order, mmdet_boxes

    rows = legacy_order(bs)
    boxes = mmdet_boxes(bs, rows)
    sizes = bs.image_size[bs.image[rows]].tolist()
    rs = np.random.RandomState(seed)
    out = np.empty((rows.size, 4), np.float32)
    for k, ((x1, y1, x2, y2), (W, H)) in enumerate(zip(boxes, sizes)):
        bw, bh = float(x2 - x1), float(y2 - y1)
        cx, cy = float(x1 + x2) / 2, float(y1 + y2) / 2
        ncx = cx + bw * rs.uniform(-gamma, gamma)
        ncy = cy + bh * rs.uniform(-gamma, gamma)
        nw = bw * (rs.uniform(-gamma, gamma) + 1.0)
        nh = bh * (rs.uniform(-gamma, gamma) + 1.0)
        nx1, ny1 = max(0, ncx - nw / 2), max(0, ncy - nh / 2)
        nx2, ny2 = min(ncx + nw / 2, W - 1), min(ncy + nh / 2, H - 1)
        out[k] = (x1, y1, x2, y2) if (nx2 <= nx1 or ny2 <= ny1) else (nx1, ny1, nx2, ny2)
    return out


def _best_of(fn, repeat: int = 3) -> tuple[float, float, object]:
    """(min wall s, min CPU s, last result) over `repeat` calls: the machine is shared, the minimum is the figure."""
    walls, cpus, out = [], [], None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return min(walls), min(cpus), out


def published_loop(bs, gamma: float, seed: int = 45) -> list:
    """The per-box loop as OA-MIL's script is written (float32 box rows, scalar `np.random.uniform`, Python
    max/min), run on today's NumPy: the speed reference of issue 4 (~18 s for COCO train on the reference machine)."""
    from noise.legacy import legacy_order, mmdet_boxes

    rows = legacy_order(bs)
    boxes = mmdet_boxes(bs, rows)
    sizes = bs.image_size[bs.image[rows]].astype(int).tolist()
    rs = np.random.RandomState(seed)
    noisy = []
    for bbox, (img_w, img_h) in zip(boxes, sizes):
        x1, y1, x2, y2 = bbox
        w, h = x2 - x1, y2 - y1
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        noisy_cx = cx + w * rs.uniform(-gamma, gamma)
        noisy_cy = cy + h * rs.uniform(-gamma, gamma)
        noisy_w = w * (rs.uniform(-gamma, gamma) + 1.0)
        noisy_h = h * (rs.uniform(-gamma, gamma) + 1.0)
        nx1, ny1 = max(0, noisy_cx - noisy_w / 2), max(0, noisy_cy - noisy_h / 2)
        nx2, ny2 = min(noisy_cx + noisy_w / 2, img_w - 1), min(noisy_cy + noisy_h / 2, img_h - 1)
        noisy.append(bbox if (nx2 <= nx1 or ny2 <= ny1) else [nx1, ny1, nx2, ny2])
    return noisy


def child_kernel(train: Path, out_dir: Path) -> dict:
    from benchmark.datasets import load_coco
    from benchmark.io import gc_paused
    from noise.boxset import extract
    from noise.geometric import uniform
    from noise.legacy import legacy_order

    ds = load_coco(train, keep_columns=True)
    with gc_paused():
        base_np = extract(ds, "numpy")
        base_legacy = extract(ds, "oamil-legacy", "coco")
    np_wall, np_cpu, _ = _best_of(lambda: uniform(base_np, 0.4, np.random.default_rng(0)))
    lg_wall, lg_cpu, done = _best_of(lambda: uniform(base_legacy, 0.4, np.random.RandomState(45)))
    loop_wall, loop_cpu, _ = _best_of(lambda: published_loop(base_legacy, 0.4), repeat=1)
    exact_wall, exact_cpu, looped = _best_of(lambda: per_box_loop(base_legacy, 0.4), repeat=1)
    rows = legacy_order(base_legacy)
    got = done.boxes[rows].astype(np.float32)
    return {"boxes": int(rows.size), "kernel_numpy_s": np_wall, "kernel_numpy_cpu_s": np_cpu,
            "kernel_legacy_s": lg_wall, "kernel_legacy_cpu_s": lg_cpu, "loop_s": loop_wall, "loop_cpu_s": loop_cpu,
            "exact_loop_s": exact_wall, "exact_loop_cpu_s": exact_cpu,
            "loop_equals_legacy_kernel": bool(np.array_equal(got, looped))}


def child_floor(train: Path, out_dir: Path) -> dict:
    """Read and rewrite the file with orjson and the garbage collector off: what any tool pays for this file."""
    import gc

    import orjson

    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    gc.disable()
    data = orjson.loads(train.read_bytes())
    load_s = time.perf_counter() - t0
    (out_dir / "floor.json").write_bytes(orjson.dumps(data))
    return {"load_s": load_s, "total_s": time.perf_counter() - t0}


def child_phases(train: Path, out_dir: Path) -> dict:
    """Where one level's time goes (the same work as `one level`, timed step by step)."""
    from benchmark.datasets import load_coco
    from benchmark.io import gc_paused, read_json
    from noise.boxset import extract
    from noise.make import OutputTemplate, _finish, new_rng, params_record, write_noisy
    from noise.registry import get_model

    out = {}

    def step(name, fn):
        w, c = time.perf_counter(), time.process_time()
        result = fn()
        out[name] = {"wall_s": time.perf_counter() - w, "cpu_s": time.process_time() - c}
        return result

    step("read_json (part of load_coco)", lambda: read_json(train))
    ds = step("load_coco", lambda: load_coco(train, keep_columns=True))
    nm = get_model("uniform")
    with gc_paused():
        sha = step("fingerprint", ds.fingerprint)
        base = step("extract", lambda: extract(ds))
    bs = step("kernel", lambda: nm.fn(base, 0.4, new_rng("numpy", 0)))
    with gc_paused():
        template = step("output template", lambda: OutputTemplate(ds.annotations))
        result = step("write-back + serialise", lambda: _finish(ds, bs, nm, 0.4, 0, "numpy", "coco", params_record(nm, {}),
                                                                 {"sha256": sha}, template))
    step("write files", lambda: write_noisy(result, out_dir))
    return out


def child_levels(train: Path, out_dir: Path, levels: list[float]) -> dict:
    from benchmark.datasets import load_coco
    from noise import iter_noisy, write_levels

    t0, c0 = time.perf_counter(), time.process_time()
    ds = load_coco(train, keep_columns=True)
    load_s = time.perf_counter() - t0
    ious = []
    # as `bench noise make` writes: each level's files written while the next level is made
    made = iter_noisy(ds, "uniform", levels, seed=0)
    for result, _ in write_levels(made, lambda r: out_dir / f"uniform-r{r.manifest['level']:g}"):
        ious.append(result.manifest["realised_iou"]["all"]["mean"])
        del result
    return {"load_s": load_s, "make_and_write_s": time.perf_counter() - t0 - load_s,
            "total_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "mean_iou": ious}


def run_child(args: list[str]) -> tuple[dict, float, float]:
    """(child's JSON, wall s, peak RSS GB) of one child process."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, cwd=REPO)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"child {' '.join(args)} failed")
    rss_gb = usage.ru_maxrss / 1024 ** 2  # KiB on Linux
    lines = out.decode().strip().splitlines()
    return (json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}), wall, rss_gb


def median_run(runs: list[tuple[dict, float, float]]) -> dict:
    """The run with the median in-process time (the reference machine's figures are medians of 3 runs too), with
    every run's times kept; `wall_s`, the whole-process time the scaled targets compare, is the median of the
    runs' own (a run's start-up and exit vary apart from its work); peak RSS is the highest of the runs."""
    ordered = sorted(runs, key=lambda r: r[0].get("total_s", r[1]))
    res = ordered[len(ordered) // 2][0]
    walls = sorted(r[1] for r in runs)
    return {**res, "wall_s": walls[len(walls) // 2], "peak_rss_gb": max(r[2] for r in runs),
            "runs_total_s": [round(r[0].get("total_s", r[1]), 3) for r in runs],
            "runs_wall_s": [round(r[1], 3) for r in runs]}


# ---- main -----------------------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=118_287)
    ap.add_argument("--boxes", type=int, default=860_001)
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--skip-cli", action="store_true", help="do not time `bench noise make`")
    ap.add_argument("--repeat", type=int, default=3, help="runs of one level, four levels and the I/O floor "
                    "(the median is reported)")
    ap.add_argument("--child", choices=["kernel", "phases", "one", "four", "floor"], help=argparse.SUPPRESS)
    ap.add_argument("--train", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.repeat < 1:
        ap.error(f"--repeat must be at least 1, got {a.repeat}")
    sys.path.insert(0, str(REPO))
    if a.child:
        res = (child_kernel(a.train, a.out) if a.child == "kernel"
               else child_phases(a.train, a.out) if a.child == "phases"
               else child_floor(a.train, a.out) if a.child == "floor"
               else child_levels(a.train, a.out, [0.4] if a.child == "one" else [0.1, 0.2, 0.3, 0.4]))
        res["self_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
        print(json.dumps(res))
        return

    with tempfile.TemporaryDirectory(prefix="noise_speed_") as tmp:
        tmp = Path(tmp)
        train, test = tmp / "instances_train.json", tmp / "instances_test.json"
        t = time.perf_counter()
        write_train_file(train, a.seed, a.images, a.boxes)
        write_test_file(test)
        gen_s = time.perf_counter() - t
        mb = train.stat().st_size / 1e6
        print(f"generated {a.images} images, {a.boxes} boxes, {mb:.0f} MB in {gen_s:.1f} s", file=sys.stderr)
        me = str(Path(__file__).resolve())
        rows = {}
        for name, child in (("kernel", "kernel"), ("phases", "phases"), ("one level", "one"),
                            ("four levels", "four"), ("I/O floor", "floor")):
            repeat = 1 if child in ("kernel", "phases") else a.repeat
            print(f"running {name} ({repeat}x) ...", file=sys.stderr)
            runs = [run_child([me, "--child", child, "--train", str(train), "--out", str(tmp / child)])
                    for _ in range(repeat)]
            rows[name] = median_run(runs)
        if not a.skip_cli:
            print("running bench noise make ...", file=sys.stderr)
            _, wall, rss = run_child(["-m", "benchmark.cli", "noise", "make", "-d", f"coco:{train},{test}",
                                      "-l", "0.4", "-o", str(tmp / "cli")])
            rows["bench CLI"] = {"wall_s": wall, "peak_rss_gb": rss}

    k = rows["kernel"]
    speedup = k["loop_s"] / k["kernel_numpy_s"]
    speedup_legacy = k["loop_s"] / k["kernel_legacy_s"]
    one, four, floor = rows["one level"], rows["four levels"], rows["I/O floor"]
    peak = max(r["peak_rss_gb"] for r in rows.values())
    scale = floor["wall_s"] / REFERENCE_FLOOR_S  # this machine's I/O speed against the reference machine's
    full_size = (a.images, a.boxes) == (118_287, 860_001)  # the reference figures are for that file only
    scaled_one, scaled_four = TARGET_ONE_S * scale, TARGET_FOUR_S * scale
    checks = {
        f"kernel (numpy, default) >= {TARGET_KERNEL_SPEEDUP:g}x the per-box loop": speedup >= TARGET_KERNEL_SPEEDUP,
        f"kernel (oamil-legacy) >= {TARGET_KERNEL_SPEEDUP:g}x the per-box loop": speedup_legacy >= TARGET_KERNEL_SPEEDUP,
        "per-box loop == legacy kernel (bit-equal)": k["loop_equals_legacy_kernel"],
        f"one level <= {TARGET_ONE_S:g} s": one["total_s"] <= TARGET_ONE_S,
        f"four levels <= {TARGET_FOUR_S:g} s": four["total_s"] <= TARGET_FOUR_S,
        **({f"one level <= {scaled_one:.1f} s (8 s scaled by the I/O floor; whole process)":
            one["wall_s"] <= scaled_one,
            f"four levels <= {scaled_four:.1f} s (20 s scaled; whole process)": four["wall_s"] <= scaled_four}
           if full_size else {}),
        f"peak RSS <= {TARGET_RSS_GB:g} GB": peak <= TARGET_RSS_GB,
    }
    load = os.getloadavg()[0]
    print(f"\nnoise_speed: {a.images} images, {a.boxes} boxes ({k['boxes']} perturbed), file {mb:.0f} MB; "
          f"load average {load:.1f} on {os.cpu_count()} CPUs (CPU s are less sensitive to a shared machine)")
    print(f"{'run':<14}{'wall s':>9}{'CPU s':>8}{'RSS GB':>8}  detail")
    print(f"{'per-box loop':<14}{k['loop_s']:>9.2f}{k['loop_cpu_s']:>8.2f}{'':>8}  the published script's loop "
          "(float32 rows, 4 scalar legacy draws per box)")
    print(f"{'exact loop':<14}{k['exact_loop_s']:>9.2f}{k['exact_loop_cpu_s']:>8.2f}{'':>8}  the same in Python "
          "floats with NumPy-1.x promotion: bit-equal to the legacy kernel?")
    print(f"{'kernel numpy':<14}{k['kernel_numpy_s']:>9.3f}{k['kernel_numpy_cpu_s']:>8.3f}{'':>8}  {speedup:.0f}x "
          f"faster (CPU {k['loop_cpu_s'] / k['kernel_numpy_cpu_s']:.0f}x); best of 3")
    print(f"{'kernel legacy':<14}{k['kernel_legacy_s']:>9.3f}{k['kernel_legacy_cpu_s']:>8.3f}{k['peak_rss_gb']:>8.2f}"
          f"  {speedup_legacy:.0f}x faster (CPU {k['loop_cpu_s'] / k['kernel_legacy_cpu_s']:.0f}x); best of 3")
    for name, r in (("one level", one), ("four levels", four)):
        print(f"{name:<14}{r['total_s']:>9.2f}{r['cpu_s']:>8.2f}{r['peak_rss_gb']:>8.2f}  load {r['load_s']:.2f}"
              f" + make and write {r['make_and_write_s']:.2f}; whole process {r['wall_s']:.2f} s; "
              f"runs {r['runs_total_s']}; mean IoU {r['mean_iou']}")
    print(f"{'I/O floor':<14}{floor['total_s']:>9.2f}{'':>8}{floor['peak_rss_gb']:>8.2f}  orjson loads "
          f"{floor['load_s']:.2f} + dumps and write; whole process {floor['wall_s']:.2f} s (reference machine "
          f"{REFERENCE_FLOOR_S:g} s); runs {floor['runs_wall_s']}")
    if full_size:
        print(f"this machine against the reference machine of issue 4: I/O floor "
              f"{REFERENCE_FLOOR_S / floor['wall_s']:.2f}x as fast, per-box loop {REFERENCE_LOOP_S / k['loop_s']:.2f}x")
    if "bench CLI" in rows:
        r = rows["bench CLI"]
        print(f"{'bench CLI':<14}{r['wall_s']:>9.1f}{'':>8}{r['peak_rss_gb']:>8.2f}  bench noise make -l 0.4, "
              "interpreter start-up and the clean test split included")
    print("one level, step by step:")
    for name, r in rows["phases"].items():
        if isinstance(r, dict):
            print(f"  {name:<30}{r['wall_s']:>7.2f} s wall{r['cpu_s']:>7.2f} s CPU")
    for what, ok in checks.items():
        print(f"  [{'ok' if ok else 'MISSED'}] {what}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"config": vars(a) | {"train": None, "out": None}, "file_mb": mb, "rows": rows,
                               "speedup_numpy": speedup, "speedup_legacy": speedup_legacy, "peak_rss_gb": peak,
                               "io_floor_scale": scale,
                               "checks": checks}, indent=2, default=str))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
