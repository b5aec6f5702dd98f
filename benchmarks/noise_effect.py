"""Noise effect benchmark: how much box noise costs a detector, with the clean oracle as the upper bound.

For each dataset (default `shapes` and `bccd`), the `cpu` profile, OA-MIL's uniform box noise at each level
(default 0, 0.2, 0.4; noise seed fixed per level, as the papers' released files are) and each training seed
(default 0, 1, 2; `train.seed` = `train.data_seed` = seed):
  - every method in --methods (default faster_rcnn) trains on the noisy boxes at every level;
  - `clean` (the oracle) trains once per seed on the clean boxes (it reads `true_bbox` of the highest level).
    Level 0 changes no box, so faster_rcnn at noise 0 is the same training as the oracle (same boxes, seeds and
    config): it is not run twice; its row reuses the oracle's runs (`same_run_as` in the JSON).
Every model is evaluated on the clean test split (COCO AP / AP50 / AP75, faster-coco-eval).

Cells run as one single-threaded process per --jobs (one per core is the best throughput on CPU) and are
cached under --out/cells/: rerunning the script continues where it stopped. Prints a table (mean ± std over
seeds, train wall time per run) and writes benchmarks/out/noise_effect.json.

    python benchmarks/noise_effect.py                         # full grid: 24 cells, ~4 min each on one core
    python benchmarks/noise_effect.py --datasets shapes --seeds 0 --jobs 2
    python benchmarks/noise_effect.py --methods faster_rcnn,oa_mil,ssd_det --levels 0.2,0.4
    python benchmarks/noise_effect.py --extra oa_mil,ssd_det:0.4   # + the robust methods at 0.4 only (issue #7)
    python benchmarks/noise_effect.py --extra retinanet,free_anchor,co_teaching,sd_locnet,disco:0.4 \
        --extra retinanet_clean:0.4                                # issue #31's rows (one-stage oracle once)

For methods that export refined training boxes (OA-MIL's corrected boxes, SSD-Det's pseudo boxes) each row also
records `refined_iou`: the mean IoU of those boxes with the clean boxes, next to `noisy_iou`, the same for the noisy
boxes they started from. With several methods at the highest level, the script prints the AP ordering. `step/FR`
is a method's training-step time relative to faster_rcnn's on the same dataset (engine seconds per iteration).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ORACLE = "clean"
BASELINE = "faster_rcnn"  # the oracle is this detector on the clean boxes
ORACLES = (ORACLE, "retinanet_clean")  # trained on the clean boxes: one row per dataset whatever the level
NOISE_SEED = 0
_SPLITS: dict = {}


def _csv(text: str, cast=str) -> list:
    return [cast(t.strip()) for t in text.split(",") if t.strip()]


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _splits(dataset: str) -> dict:
    if dataset not in _SPLITS:
        from benchmark.datasets import load

        _SPLITS[dataset] = load(dataset)
    return _SPLITS[dataset]


def run_cell(cell: dict, out: Path) -> dict:
    """Train + predict + evaluate one (dataset, method, level, seed) cell; cached in out/cells/<key>/result.json
    (the key hashes the resolved config and the dataset, so a changed profile or override never reuses a result)."""
    from benchmark.config import dataset_kind, parse_overrides, resolve_config
    from benchmark.evaluation import evaluate_coco
    from benchmark.io import dumps_json, read_json, sha256_bytes, write_json
    from methods import get_method
    from noise import make_noisy

    splits = _splits(cell["dataset"])
    train, test = splits["train"], splits["test"]
    method = get_method(cell["method"])
    overrides = {**parse_overrides(cell["sets"]), "train.seed": cell["seed"], "train.data_seed": cell["seed"]}
    cfg = resolve_config(method, cell["profile"], dataset_kind(train), cell["level"], overrides)
    variant = sha256_bytes(dumps_json([cfg, train.fingerprint(), NOISE_SEED]))[:8]
    key = f"{cell['dataset']}_{cell['method']}_g{cell['level']}_s{cell['seed']}_{variant}"
    cell_dir = out / "cells" / key
    done = cell_dir / "result.json"
    if done.is_file():
        return read_json(done)
    noisy = make_noisy(train, "uniform", cell["level"], seed=NOISE_SEED).dataset
    t0 = time.perf_counter()
    result = method.train(noisy, cfg, cell_dir / "train", progress=False)
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    dets = method.predict(result.checkpoint, test, cfg, progress=False)
    predict_s = time.perf_counter() - t1
    coco = evaluate_coco(test, dets)
    ious = refined_box_iou(noisy, result.refined_boxes)
    row = {**{k: cell[k] for k in ("dataset", "method", "level", "seed", "profile")},
           "AP": coco["AP"], "AP50": coco["AP50"], "AP75": coco["AP75"], "APs": coco["APs"], "APm": coco["APm"],
           "iterations": result.metrics.get("iterations"), "train_s": round(train_s, 1),
           "engine_train_s": result.metrics.get("train_seconds"), "predict_s": round(predict_s, 1), **ious,
           "pretrained": cfg["model"]["pretrained"], "weights_sha256": cfg["model"].get("weights_sha256"),
           **{k: round(float(v), 4) for k, v in result.metrics.items() if k.startswith("oamil_")}}
    write_json(done, row, indent=True)
    return row


def refined_box_iou(noisy, refined_path) -> dict:
    """Mean IoU with the clean boxes of a method's exported refined boxes and of the noisy boxes they came from,
    over the training annotations that have both (empty when the method exports none)."""
    from benchmark.boxes import paired_iou, xywh_to_xyxy
    from benchmark.io import read_json

    if refined_path is None or not Path(refined_path).is_file():
        return {}
    refined = {int(r["id"]): r["bbox"] for r in read_json(refined_path)}
    rows = [(a["true_bbox"], a["bbox"], refined[int(a["id"])]) for a in noisy.annotations
            if a.get("true_bbox") is not None and int(a["id"]) in refined]
    if not rows:
        return {}
    clean, given, fixed = (xywh_to_xyxy(col) for col in zip(*rows))
    return {"noisy_iou": round(float(paired_iou(given, clean).mean()), 4),
            "refined_iou": round(float(paired_iou(fixed, clean).mean()), 4), "refined_n": len(rows)}


def _mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        level = None if r["method"] in ORACLES else r["level"]
        groups.setdefault((r["dataset"], r["method"], level), []).append(r)
    out = []
    for (dataset, method, level), rs in groups.items():
        s = {"dataset": dataset, "method": method, "level": level, "seeds": sorted(r["seed"] for r in rs)}
        for k in ("AP", "AP50", "AP75", "train_s", "noisy_iou", "refined_iou", "oamil_mean_best_score"):
            s[k], s[f"{k}_std"] = _mean_std([r.get(k) for r in rs])
        s["step_s"], _ = _mean_std([r["engine_train_s"] / r["iterations"] for r in rs
                                    if r.get("engine_train_s") and r.get("iterations")])
        out.append(s)
    for s in out:  # training-step cost relative to faster_rcnn on the same dataset (its rows, or the oracle's)
        base = [b["step_s"] for b in out if b["dataset"] == s["dataset"] and b["method"] in (BASELINE, ORACLE)
                and b["step_s"] == b["step_s"]]
        s["step_vs_faster_rcnn"] = s["step_s"] / statistics.fmean(base) if base else float("nan")
    order = {m: i for i, m in enumerate(["faster_rcnn", "oa_mil", "ssd_det"])}
    out.sort(key=lambda s: (s["dataset"], s["method"] in ORACLES, order.get(s["method"], 9), s["method"],
                            -1 if s["level"] is None else s["level"]))
    return out


def format_table(summary: list[dict]) -> str:
    dw = max([len("dataset")] + [len(s["dataset"]) for s in summary])
    mw = max([len("method")] + [len(s["method"]) for s in summary])
    head = (f"{'dataset':<{dw}} {'method':<{mw}} {'noise':>5} {'seeds':>5}  {'AP':>13} {'AP50':>13} {'AP75':>13} "
            f"{'train s':>9} {'step/FR':>7} {'box IoU noisy -> refined':>24}")
    lines = [head, "-" * len(head)]
    for s in summary:
        noise = "clean" if s["level"] is None else f"{s['level']:g}"
        cols = "  ".join(f"{100 * s[k]:5.1f} ± {100 * s[k + '_std']:4.1f}" for k in ("AP", "AP50", "AP75"))
        ious = "" if s["refined_iou"] != s["refined_iou"] else f"{s['noisy_iou']:.3f} -> {s['refined_iou']:.3f}"
        if s["oamil_mean_best_score"] == s["oamil_mean_best_score"]:
            ious += f"  best-instance score {s['oamil_mean_best_score']:.2f}"
        lines.append(f"{s['dataset']:<{dw}} {s['method']:<{mw}} {noise:>5} {len(s['seeds']):>5}  {cols} "
                     f"{s['train_s']:9.0f} {s['step_vs_faster_rcnn']:6.2f}x {ious:>24}")
    return "\n".join(lines)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.0%}" if b > 0 else "n/a (oracle AP is 0)"


def effect_lines(summary: list[dict]) -> list[str]:
    """The headline: AP75 of the noisy baseline at the highest level relative to the oracle."""
    lines = []
    for dataset in sorted({s["dataset"] for s in summary}):
        oracle = next((s for s in summary if s["dataset"] == dataset and s["method"] == ORACLE), None)
        base = [s for s in summary if s["dataset"] == dataset and s["method"] == "faster_rcnn" and s["level"]]
        if oracle and base:
            worst = max(base, key=lambda s: s["level"])
            lines.append(f"{dataset}: faster_rcnn at noise {worst['level']:g} keeps "
                         f"{_ratio(worst['AP'], oracle['AP'])} of the oracle's AP and "
                         f"{_ratio(worst['AP75'], oracle['AP75'])} of its AP75")
        top = max((s["level"] for s in summary if s["dataset"] == dataset and s["level"]), default=None)
        ranked = sorted((s for s in summary if s["dataset"] == dataset and s["level"] == top
                         and s["method"] not in ORACLES), key=lambda s: -s["AP"])
        if len(ranked) > 1:
            lines.append(f"{dataset}: AP ordering at noise {top:g}: " + " > ".join(
                f"{s['method']} {100 * s['AP']:.1f}" for s in ranked))
    return lines


@click.command()
@click.option("--datasets", default="shapes,bccd", show_default=True)
@click.option("--methods", default="faster_rcnn", show_default=True, help="noisy-box methods (the oracle is added)")
@click.option("--levels", default="0,0.2,0.4", show_default=True)
@click.option("--extra", multiple=True, metavar="METHODS:LEVELS",
              help="more methods at their own levels, e.g. oa_mil,ssd_det:0.4 (repeatable)")
@click.option("--seeds", default="0,1,2", show_default=True)
@click.option("--profile", default="cpu", show_default=True)
@click.option("--jobs", default=os.cpu_count() or 1, show_default=True, help="parallel 1-thread workers")
@click.option("--no-oracle", is_flag=True, help="skip the clean oracle")
@click.option("--set", "sets", multiple=True, help="config override for every cell (key=value)")
@click.option("--out", default=str(REPO / "benchmarks" / "out" / "noise_effect"), show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
def main(datasets, methods, levels, seeds, profile, jobs, no_oracle, extra, sets, out):
    from benchmark.io import write_json

    levels_, seeds_ = _csv(levels, float), _csv(seeds, int)
    grid = [(m, levels_) for m in _csv(methods)]
    for spec in extra:
        names, sep, lv = spec.partition(":")
        if not sep or not _csv(names) or not _csv(lv):
            raise click.BadParameter(f"{spec!r}: expected METHODS:LEVELS, e.g. oa_mil,ssd_det:0.4", param_hint="--extra")
        grid += [(m, _csv(lv, float)) for m in _csv(names)]
    cells = []
    for seed in seeds_:  # seed-major within each group: a stopped run still has every dataset at the first seeds
        for dataset in _csv(datasets):
            for method, method_levels in grid:
                cells += [dict(dataset=dataset, method=method, level=lv, seed=seed) for lv in method_levels
                          if no_oracle or not (method == BASELINE and lv == 0)]
            if not no_oracle:
                cells.append(dict(dataset=dataset, method=ORACLE, level=max(levels_), seed=seed))
    # the baseline and the oracle first (the noise-effect table), then the other methods seed by seed, so a
    # stopped run has complete tables for what it finished
    cells.sort(key=lambda c: c["method"] not in (BASELINE, ORACLE))
    for c in cells:
        c.update(profile=profile, sets=list(sets))
    for dataset in _csv(datasets):  # build / check datasets once, before forking workers
        _splits(dataset)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{len(cells)} cells on {jobs} worker(s); results cached in {out / 'cells'}", file=sys.stderr)
    t0 = time.perf_counter()
    rows, failures = [], []
    from tqdm import tqdm

    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"), initializer=_init_worker) as pool:
        futures = {pool.submit(run_cell, c, out): c for c in cells}
        for fut in tqdm(as_completed(futures), total=len(futures), desc="noise_effect", unit="cell", file=sys.stderr):
            cell = futures[fut]
            try:
                rows.append(fut.result())
            except Exception as exc:  # report and keep the other cells going
                failures.append({**cell, "error": f"{type(exc).__name__}: {exc}"})
                print(f"cell failed: {cell['dataset']} {cell['method']} g={cell['level']} s={cell['seed']}: {exc}",
                      file=sys.stderr)
    wall = time.perf_counter() - t0
    if not no_oracle and any(m == BASELINE and 0.0 in lv for m, lv in grid):
        rows += [{**r, "method": BASELINE, "level": 0.0, "same_run_as": ORACLE} for r in list(rows)
                 if r["method"] == ORACLE]
    summary = summarise(rows)
    table = format_table(summary)
    print(table)
    for line in effect_lines(summary):
        print(line)
    print(f"wall time {wall:.0f}s for {len(rows)} cells on {jobs} worker(s) "
          f"(train s = per-run training time, 1 thread each)")
    write_json(REPO / "benchmarks" / "out" / "noise_effect.json",
               {"profile": profile, "noise": {"model": "uniform", "seed": NOISE_SEED}, "jobs": jobs,
                "wall_s": round(wall, 1), "rows": rows, "summary": summary, "failures": failures,
                "effect": effect_lines(summary)}, indent=True)
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
