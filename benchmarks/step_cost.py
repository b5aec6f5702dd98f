"""Training-step cost of every registered method relative to faster_rcnn (issue 31 item 4; issue 7 for SSD-Det).

Each method is built as its adapter builds it for a real cell: the config `benchmark.config.resolve_config` gives for
the adapter, the `cpu` profile (or --profile), the dataset's kind and the noise level; the adapter's `build_model`; the
engine's optimizer (`make_optimizer`), images (`DetectionImages` with `clip_gt`), seeded `TrainOrder` and hooks
(`set_diagnostics` with the clean boxes, as `MethodAdapter.train` passes them; `set_epoch` with the run's LAST epoch,
so every mechanism that starts at some epoch, e.g. OA-MIL's correction from `oais_epoch`, DISCO's calibration,
co-teaching's full forget rate, is active). One step is `benchmark/engine.py`'s `_train_step` on one process without
AMP: forward with targets -> loss dict -> sum -> backward -> `grad_clip` -> optimizer step.

Steps of all variants are interleaved round-robin, so a machine shared with other jobs slows every variant alike; the
median step time is reported. Not timed: `mmdet` (an optional mmengine backend with its own loop) and `ssd_det+retrain`
(per step `ssd_det`, then `faster_rcnn`). The per-image data loading is outside the timed part.

Variants are method names or the SSD-Det refiner variants of issue 7:
- `ssd_det sr1`: the adapter's `cpu` defaults with sampling_ratio 1 in the refiner;
- `ssd_det paper`: the paper's refiner on the same detector (125-proposal bags, 500 negatives/img, sampling 2,
  7x7 pooling);
- `ssd_det paper tv`: the same with torchvision's RoIAlign backward instead of the refiner's sparse one.

    python benchmarks/step_cost.py --dataset shapes --steps 6           # every method, the recipe's own RoIs
    python benchmarks/step_cost.py --dataset bccd --steps 4
    python benchmarks/step_cost.py --variants faster_rcnn,oa_mil --set train.batch_size=4
    python benchmarks/step_cost.py --rois 512 --variants "faster_rcnn,ssd_det,ssd_det sr1,ssd_det paper,ssd_det paper tv"

Prints a table (with each adapter's `relative_cost` scheduling hint beside the measured ratio) and writes
benchmarks/out/step_cost.json.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

NOT_TIMED = {"mmdet": "optional mmengine backend with its own training loop",
             "ssd_det+retrain": "per step ssd_det, then faster_rcnn"}
PAPER_REFINER = {"method.base_ratios": [1.0, 1.2, 1.3, 0.8, 0.7], "method.shake": 0.2, "method.num_negatives": 500,
                 "method.roi_sampling_ratio": 2, "method.refiner_pool_size": None}  # the box head's 7x7, as the paper
SSD_VARIANTS = {  # name -> (method, config overrides, use torchvision's RoIAlign in the refiner)
    "ssd_det sr1": ("ssd_det", {"method.roi_sampling_ratio": 1}, False),
    "ssd_det paper": ("ssd_det", PAPER_REFINER, False),
    "ssd_det paper tv": ("ssd_det", PAPER_REFINER, True),
}


def default_variants() -> list[str]:
    """Every registered method that trains through the engine's step, faster_rcnn first (the reference)."""
    from methods import METHODS

    names = sorted(n for n in METHODS.names() if n not in NOT_TIMED)
    return ["faster_rcnn"] + [n for n in names if n != "faster_rcnn"]


def resolve_variant(name: str) -> tuple[str, dict, bool]:
    from benchmark.errors import BenchError
    from methods import METHODS

    if name in SSD_VARIANTS:
        return SSD_VARIANTS[name]
    if name in NOT_TIMED:
        raise BenchError(f"step_cost: {name} is not timed ({NOT_TIMED[name]})")
    if name not in METHODS.names():
        raise BenchError(f"step_cost: unknown variant {name!r}; methods: {', '.join(sorted(METHODS.names()))}; "
                         f"ssd_det variants: {', '.join(SSD_VARIANTS)}")
    return name, {}, False


def build_run(name: str, train, kind: str, noise: float, profile: str, overrides: dict) -> dict:
    """One variant as a real cell trains it: resolved config, adapter model with the engine's hooks, optimizer,
    images of the adapter's training view and the seeded image order."""
    import torch
    from torchvision.ops import MultiScaleRoIAlign

    from benchmark.config import option, resolve_config
    from benchmark.engine import make_optimizer
    from methods import Diagnostics, get_method
    from methods._core.data import DetectionImages, TrainOrder

    method, sets, torchvision_pooler = resolve_variant(name)
    ad = get_method(method)
    cfg = resolve_config(ad, profile, kind, noise, {**overrides, **sets})
    tcfg = cfg["train"]
    view = ad.training_view(train)
    torch.manual_seed(tcfg["seed"])
    model = ad.build_model(cfg, len(train.categories)).train()
    diagnostics = Diagnostics.from_dataset(train)
    if diagnostics is not None and callable(getattr(model, "set_diagnostics", None)):
        model.set_diagnostics(diagnostics)
    epoch = tcfg["epochs"] - 1  # the last epoch: every epoch-gated mechanism is on
    if callable(getattr(model, "set_epoch", None)):
        model.set_epoch(epoch, tcfg["epochs"])
    if torchvision_pooler:
        p = model.refiner.pooler
        model.refiner.pooler = MultiScaleRoIAlign(p.featmap_names, p.output_size, p.sampling_ratio)
    images = DetectionImages(view, view.contiguous_labels(), cache_images=True,
                             clip_gt=bool(option(tcfg, "train", "clip_gt")))
    order = TrainOrder(len(view.images), tcfg["batch_size"], tcfg["data_seed"], tcfg["hflip"], tcfg["vflip"])
    pooler = getattr(getattr(model, "refiner", None), "pooler", None)
    return {"name": name, "method": method, "detector": ad.detector, "relative_cost": ad.relative_cost,
            "torchvision_roi_align": torchvision_pooler, "model": model,
            "optimizer": make_optimizer(model, tcfg), "params": [p for p in model.parameters() if p.requires_grad],
            "grad_clip": tcfg["grad_clip"], "images": images, "order": order, "cfg": cfg, "epoch": epoch,
            "sampling_ratio": getattr(pooler, "sampling_ratio", None), "times": [], "objects": []}


def train_step(run: dict, it: int) -> float:
    """The engine's step (one process, no AMP) on batch `it` of the run's order; returns its seconds."""
    import torch

    from methods._core.data import collate

    ims, targets = collate([run["images"][i] for i in run["order"].batch(it)])
    t0 = time.perf_counter()
    loss_dict = run["model"](ims, targets)
    loss = sum(loss_dict.values())
    if not torch.isfinite(loss):
        from benchmark.errors import BenchError

        raise BenchError(f"step_cost: {run['name']} loss is not finite at step {it}")
    run["optimizer"].zero_grad(set_to_none=True)
    loss.backward()
    if run["grad_clip"]:
        torch.nn.utils.clip_grad_norm_(run["params"], run["grad_clip"])
    run["optimizer"].step()
    dt = time.perf_counter() - t0
    run["objects"].append(sum(len(t["boxes"]) for t in targets) / len(targets))
    return dt


def measure(names: list[str], dataset: str, noise: float, steps: int, warmup: int, profile: str = "cpu",
            overrides: dict | None = None, progress: bool = True) -> dict:
    """Time `steps` steps (after `warmup`) of every variant, round-robin; the result the script writes."""
    from benchmark.config import dataset_kind
    from benchmark.datasets import load
    from benchmark.errors import BenchError
    from noise import make_noisy

    if "faster_rcnn" not in names:
        raise BenchError("step_cost: the variants must include faster_rcnn (the reference of the ratio)")
    train = load(dataset)["train"]
    noisy = make_noisy(train, "uniform", noise, seed=0).dataset
    kind = dataset_kind(train)
    runs = [build_run(n, noisy, kind, noise, profile, overrides or {}) for n in names]
    for it in range(warmup + steps):
        for run in runs:  # round-robin: background load hits every variant alike
            dt = train_step(run, it)
            if it >= warmup:
                run["times"].append(dt)
        if progress:
            print(f"step {it + 1}/{warmup + steps} done", file=sys.stderr)
    base = statistics.median(runs[names.index("faster_rcnn")]["times"])
    rows = []
    for r in runs:
        med, m = statistics.median(r["times"]), r["cfg"]["method"]
        two_stage = r["detector"] == "two_stage"
        rows.append({"variant": r["name"], "method": r["method"], "detector": r["detector"], "median_s": round(med, 4),
                     "mean_s": round(statistics.fmean(r["times"]), 4), "min_s": round(min(r["times"]), 4),
                     "ratio_vs_faster_rcnn": 1.0 if r["name"] == "faster_rcnn" else round(med / base, 2),
                     "relative_cost_hint": r["relative_cost"], "batch_size": r["cfg"]["train"]["batch_size"],
                     "rois_per_img": r["cfg"]["model"].get("box_batch_size_per_image") if two_stage else None,
                     "epoch": r["epoch"], "epochs": r["cfg"]["train"]["epochs"],
                     "torchvision_roi_align": r["torchvision_roi_align"],
                     "refiner_sampling_ratio": r["sampling_ratio"], "negatives_per_img": m.get("num_negatives")})
    return {"dataset": dataset, "profile": profile, "noise": noise, "overrides": overrides or {},
            "threads": None, "steps": steps, "warmup": warmup,
            "epoch_note": "hooks set to the run's last epoch (set_epoch(epochs - 1, epochs)): every epoch-gated "
                          "mechanism active",
            "objects_per_img": round(statistics.fmean(o for r in runs for o in r["objects"]), 2),
            "load_avg_1min": os.getloadavg()[0], "not_timed": NOT_TIMED, "rows": rows}


def table(result: dict) -> str:
    head = f"{'variant':<17} {'batch':>5} {'RoIs':>5} {'epoch':>7} {'median s':>9} {'min s':>7} {'x FR':>6} {'hint':>5}"
    lines = [f"{result['dataset']} ({result['profile']}) noise {result['noise']}, {result['threads']} thread(s), "
             f"{result['steps']} timed steps, {result['objects_per_img']} objects/img, load avg "
             f"{result['load_avg_1min']:.1f}; {result['epoch_note']}", head, "-" * len(head)]
    for r in result["rows"]:
        lines.append(f"{r['variant']:<17} {r['batch_size']:>5} {r['rois_per_img'] or '':>5} "
                     f"{str(r['epoch'] + 1) + '/' + str(r['epochs']):>7} {r['median_s']:9.3f} {r['min_s']:7.3f} "
                     f"{r['ratio_vs_faster_rcnn']:6.2f} {r['relative_cost_hint']:5.1f}")
    return "\n".join(lines)


@click.command()
@click.option("--dataset", default="shapes", show_default=True)
@click.option("--profile", default="cpu", show_default=True)
@click.option("--noise", default=0.4, show_default=True)
@click.option("--rois", type=int, default=None, help="model.box_batch_size_per_image for every variant "
              "(default: each resolved config's own)")
@click.option("--steps", default=6, show_default=True, help="timed steps per variant")
@click.option("--warmup", default=2, show_default=True)
@click.option("--threads", default=1, show_default=True)
@click.option("--variants", default=None, help="comma-separated method names and/or "
              f"{', '.join(repr(v) for v in SSD_VARIANTS)} (default: every registered method but "
              f"{', '.join(NOT_TIMED)})")
@click.option("--set", "sets", multiple=True, help="config override for every variant, e.g. train.batch_size=2")
@click.option("--out", default=str(REPO / "benchmarks" / "out" / "step_cost.json"), show_default=True)
def main(dataset, profile, noise, rois, steps, warmup, threads, variants, sets, out):
    import torch

    from benchmark.config import parse_overrides
    from benchmark.errors import BenchError
    from benchmark.io import write_json

    torch.set_num_threads(threads)
    names = [v.strip() for v in variants.split(",") if v.strip()] if variants else default_variants()
    try:
        for n in names:
            resolve_variant(n)
        overrides = parse_overrides(sets)
        if rois is not None:
            overrides["model.box_batch_size_per_image"] = rois
        result = measure(names, dataset, noise, steps, warmup, profile, overrides)
    except BenchError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    result["threads"] = threads
    print(table(result))
    write_json(out, result, indent=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
