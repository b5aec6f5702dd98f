"""COCO evaluation speed: the suite's path (faster-coco-eval) against pycocotools on a val2017-sized problem.

Generates (seeded) 5 000 images, ~36 000 ground-truth boxes (1 % crowd) over the 80 COCO category ids, and exactly
100 detections per image (every object jittered, the rest random boxes of random classes, uniform scores). Then runs,
each in its own subprocess so that its wall time and peak RSS are its own (`os.wait4`):

  pycocotools       COCO() + loadRes + COCOeval evaluate/accumulate/summarize (the reference)
  faster-coco-eval  the same calls with COCOeval_faster (the library alone)
  bench coco        what `bench eval --metric coco` does: load_coco + load_detection_arrays + evaluate_coco
  bench voc         load_coco + load_detection_arrays + evaluate_voc (mmdet eval_map, area AP50)

Targets: `bench coco` >= 8x faster than pycocotools, all 12 stats equal to 1e-4, peak RSS <= 1.5 GB.
Prints a table and writes benchmarks/out/eval_speed.json.

    python3 benchmarks/eval_speed.py [--images 5000] [--boxes 36000] [--seed 0] [--skip-pycocotools]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "out" / "eval_speed.json"
COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]  # the 80 COCO ids
RUNS = ("pycocotools", "faster-coco-eval", "bench coco", "bench voc")
TARGET_SPEEDUP, TARGET_DIFF, TARGET_RSS_GB = 8.0, 1e-4, 1.5


# ---- data -------------------------------------------------------------------------------------------------------
def make_problem(seed: int, n_images: int, n_boxes: int, dets_per_image: int, crowd_rate: float = 0.01):
    """(coco ground truth dict, COCO results list), deterministic in `seed`."""
    rng = np.random.default_rng(seed)
    wh = rng.integers(320, 641, size=(n_images, 2)).astype(np.float64)
    img = np.sort(rng.integers(0, n_images, size=n_boxes))
    side = wh[img]
    size = rng.uniform(0.02, 0.9, size=(n_boxes, 2)) * side
    xy = rng.uniform(0, 1, size=(n_boxes, 2)) * (side - size)
    gt_boxes = np.round(np.concatenate([xy, size], axis=1), 2)
    gt_cat = rng.choice(COCO_IDS, size=n_boxes)
    crowd = rng.random(n_boxes) < crowd_rate
    images = [{"id": i + 1, "file_name": f"{i + 1:012d}.jpg", "width": int(w), "height": int(h)}
              for i, (w, h) in enumerate(wh)]
    anns = [{"id": k + 1, "image_id": int(i) + 1, "category_id": int(c), "bbox": b, "area": b[2] * b[3],
             "iscrowd": int(cr)}
            for k, (i, c, b, cr) in enumerate(zip(img, gt_cat, gt_boxes.tolist(), crowd))]
    coco = {"images": images, "annotations": anns, "categories": [{"id": c, "name": f"class{c}"} for c in COCO_IDS]}

    # detections: every object jittered (centre +-15 %, size x0.8-1.2, same class), the rest random, 100 per image
    per_image = np.bincount(img, minlength=n_images)
    keep = np.ones(n_boxes, dtype=bool)
    rank = np.arange(n_boxes) - np.repeat(np.cumsum(per_image) - per_image, per_image)
    keep &= rank < dets_per_image
    centre = gt_boxes[:, :2] + gt_boxes[:, 2:] / 2 + rng.uniform(-0.15, 0.15, (n_boxes, 2)) * gt_boxes[:, 2:]
    jsize = gt_boxes[:, 2:] * rng.uniform(0.8, 1.2, (n_boxes, 2))
    jit = np.concatenate([centre - jsize / 2, jsize], axis=1)[keep]
    jit_img, jit_cat = img[keep], gt_cat[keep]
    n_random = dets_per_image - np.minimum(per_image, dets_per_image)
    r_img = np.repeat(np.arange(n_images), n_random)
    r_side = wh[r_img]
    r_size = rng.uniform(0.02, 0.9, (len(r_img), 2)) * r_side
    r_xy = rng.uniform(0, 1, (len(r_img), 2)) * (r_side - r_size)
    det_img = np.concatenate([jit_img, r_img])
    det_cat = np.concatenate([jit_cat, rng.choice(COCO_IDS, size=len(r_img))])
    det_box = np.round(np.concatenate([jit, np.concatenate([r_xy, r_size], axis=1)]), 2)
    scores = np.round(rng.random(len(det_img)), 4)
    order = np.argsort(det_img, kind="stable")
    dets = [{"image_id": int(i) + 1, "category_id": int(c), "bbox": b, "score": s}
            for i, c, b, s in zip(det_img[order], det_cat[order], det_box[order].tolist(), scores[order].tolist())]
    return coco, dets


# ---- workers (run in subprocesses) ------------------------------------------------------------------------------
def _stats_list(d: dict) -> list:
    from benchmark.evaluation import STAT_NAMES

    return [-1.0 if d[k] is None else d[k] for k in STAT_NAMES]


def worker(kind: str, gt_path: str, dt_path: str) -> dict:
    t0 = time.perf_counter()
    if kind in ("pycocotools", "faster-coco-eval"):
        if kind == "pycocotools":
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval as Eval
        else:
            from faster_coco_eval import COCO
            from faster_coco_eval import COCOeval_faster as Eval
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(gt_path)
            dt = gt.loadRes(dt_path)
            t1 = time.perf_counter()
            ev = Eval(gt, dt, "bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        stats = [float(v) for v in ev.stats[:12]]
    else:
        from benchmark.datasets.coco import load_coco
        from benchmark.evaluation import evaluate_coco, evaluate_voc, load_detection_arrays

        gt = load_coco(gt_path)
        dets = load_detection_arrays(dt_path, gt)
        t1 = time.perf_counter()
        if kind == "bench coco":
            stats = _stats_list(evaluate_coco(gt, dets))
        else:
            stats = [evaluate_voc(gt, dets)["AP50"]]
    t2 = time.perf_counter()
    return {"load_s": t1 - t0, "eval_s": t2 - t1, "stats": stats}


def run_worker(kind: str, gt_path: Path, dt_path: Path, tmp: Path) -> dict:
    """Run one worker in a fresh interpreter; wall time and peak RSS of that child alone."""
    from benchmark.io import read_json

    out = tmp / f"{kind.replace(' ', '_')}.json"
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--worker", kind, str(gt_path), str(dt_path), str(out)])
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{kind} worker failed with exit code {proc.returncode}")
    res = read_json(out)
    res.update(wall_s=wall, cpu_s=usage.ru_utime + usage.ru_stime,
               peak_rss_gb=usage.ru_maxrss * 1024 / 1e9)  # Linux: ru_maxrss in KiB
    return res


# ---- main -------------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--boxes", type=int, default=36000)
    ap.add_argument("--dets-per-image", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-pycocotools", action="store_true", help="skip the ~90 s reference run")
    ap.add_argument("--worker", nargs=4, metavar=("KIND", "GT", "DT", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    from benchmark.io import write_json

    if args.worker:
        kind, gt_path, dt_path, out = args.worker
        write_json(out, worker(kind, gt_path, dt_path))
        return 0

    t0 = time.perf_counter()
    coco, dets = make_problem(args.seed, args.images, args.boxes, args.dets_per_image)
    n_crowd = sum(a["iscrowd"] for a in coco["annotations"])
    print(f"problem: {len(coco['images'])} images, {len(coco['annotations'])} GT boxes ({n_crowd} crowd), "
          f"{len(dets)} detections, seed {args.seed} (generated in {time.perf_counter() - t0:.1f} s)", flush=True)
    runs = [r for r in RUNS if not (args.skip_pycocotools and r == "pycocotools")]
    results = {}
    with tempfile.TemporaryDirectory(prefix="eval_speed_") as tmp:
        tmp = Path(tmp)
        gt_path, dt_path = tmp / "gt.json", tmp / "dets.json"
        write_json(gt_path, coco)
        write_json(dt_path, dets)
        del coco, dets
        for kind in runs:
            print(f"running {kind} ...", file=sys.stderr, flush=True)
            results[kind] = run_worker(kind, gt_path, dt_path, tmp)

    ref = results.get("pycocotools")
    header = (f"{'run':<18}{'wall s':>8}{'cpu s':>8}{'load s':>8}{'eval s':>8}{'peak RSS GB':>13}{'speed-up':>10}"
              f"{'(cpu)':>7}{'max |diff|':>12}")
    lines = [header, "-" * len(header)]
    for kind, r in results.items():
        speed = speed_cpu = diff = "-"
        if ref and kind != "bench voc":
            r["max_abs_stat_diff"] = float(np.max(np.abs(np.array(r["stats"]) - np.array(ref["stats"]))))
            r["speedup_vs_pycocotools"] = ref["wall_s"] / r["wall_s"]
            r["cpu_speedup_vs_pycocotools"] = ref["cpu_s"] / r["cpu_s"]
            speed, speed_cpu = f"{r['speedup_vs_pycocotools']:.1f}x", f"{r['cpu_speedup_vs_pycocotools']:.1f}x"
            diff = f"{r['max_abs_stat_diff']:.1e}"
        lines.append(f"{kind:<18}{r['wall_s']:>8.1f}{r['cpu_s']:>8.1f}{r['load_s']:>8.1f}{r['eval_s']:>8.1f}"
                     f"{r['peak_rss_gb']:>13.2f}{speed:>10}{speed_cpu:>7}{diff:>12}")
    bench = results["bench coco"]
    checks = {"peak_rss_le_1.5GB": bench["peak_rss_gb"] <= TARGET_RSS_GB}
    if ref:
        checks["speedup_ge_8x"] = bench["speedup_vs_pycocotools"] >= TARGET_SPEEDUP
        checks["stats_equal_1e-4"] = bench["max_abs_stat_diff"] <= TARGET_DIFF
    lines.append("")
    lines.append(f"bench coco AP={bench['stats'][0]:.6f} AP50={bench['stats'][1]:.6f} AR100={bench['stats'][8]:.6f}; "
                 f"bench voc AP50={results['bench voc']['stats'][0]:.6f}")
    lines.append("targets: " + ", ".join(f"{k} {'PASS' if v else 'FAIL'}" for k, v in checks.items())
                 + " (speed-up on wall time; a wall/cpu gap means the machine was busy: rerun when idle)")
    print("\n".join(lines))
    write_json(OUT, {"problem": {"images": args.images, "boxes": args.boxes, "dets_per_image": args.dets_per_image,
                                 "seed": args.seed, "crowd": n_crowd},
                     "runs": results, "targets": checks, "cpu_count": os.cpu_count()}, indent=True)
    print(f"wrote {OUT}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
