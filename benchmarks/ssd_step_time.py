"""Training-step time of ssd_det vs faster_rcnn on the same config (issue 7 target: ssd_det <= 3x faster_rcnn with
the paper's 512 sampled RoIs/img).

Both models train on the same batches (the engine's seeded TrainOrder over a noisy `shapes` or BCCD training split,
`cpu` profile, `model.box_batch_size_per_image` = --rois). Steps of all variants are interleaved round-robin, so a
machine shared with other jobs slows every variant alike; the median step time is reported. Variants:
- `faster_rcnn`: the core detector alone;
- `ssd_det`: the adapter's `cpu` defaults for the dataset (45-proposal bags, 200 negatives/img; on shapes 64
  negatives/img and 4x4 refiner pooling), the detector's sampling_ratio 2;
- `ssd_det sr1`: the same with sampling_ratio 1 in the refiner;
- `ssd_det paper`: the paper's refiner on the same detector (125-proposal bags, 500 negatives/img, sampling 2,
  7x7 pooling);
- `ssd_det paper tv`: the same with torchvision's RoIAlign backward instead of the refiner's sparse one.

    python benchmarks/ssd_step_time.py                    # shapes, noise 0.4, 512 RoIs/img, 6 timed steps
    python benchmarks/ssd_step_time.py --dataset bccd --steps 4
    python benchmarks/ssd_step_time.py --rois 64 --variants faster_rcnn,ssd_det   # the shapes cpu recipe

Prints a table and writes benchmarks/out/ssd_step_time.json.
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

PAPER_REFINER = {"method.base_ratios": [1.0, 1.2, 1.3, 0.8, 0.7], "method.shake": 0.2, "method.num_negatives": 500,
                 "method.roi_sampling_ratio": 2, "method.refiner_pool_size": None}  # the box head's 7x7, as the paper
VARIANTS = {  # name -> (method, config overrides, use torchvision's RoIAlign in the refiner)
    "faster_rcnn": ("faster_rcnn", {}, False),
    "ssd_det": ("ssd_det", {}, False),
    "ssd_det sr1": ("ssd_det", {"method.roi_sampling_ratio": 1}, False),
    "ssd_det paper": ("ssd_det", PAPER_REFINER, False),
    "ssd_det paper tv": ("ssd_det", PAPER_REFINER, True),
}


@click.command()
@click.option("--dataset", default="shapes", show_default=True)
@click.option("--noise", default=0.4, show_default=True)
@click.option("--rois", default=512, show_default=True, help="model.box_batch_size_per_image for every variant")
@click.option("--steps", default=6, show_default=True, help="timed steps per variant")
@click.option("--warmup", default=2, show_default=True)
@click.option("--threads", default=1, show_default=True)
@click.option("--variants", default=",".join(VARIANTS), show_default=True)
@click.option("--out", default=str(REPO / "benchmarks" / "out" / "ssd_step_time.json"), show_default=True)
def main(dataset, noise, rois, steps, warmup, threads, variants, out):
    import torch
    from torchvision.ops import MultiScaleRoIAlign

    from benchmark.config import dataset_kind, resolve_config
    from benchmark.datasets import load
    from benchmark.io import write_json
    from methods import get_method
    from methods._core.data import DetectionImages, TrainOrder, collate
    from noise import make_noisy

    torch.set_num_threads(threads)
    names = [v.strip() for v in variants.split(",") if v.strip()]
    train = load(dataset)["train"]
    noisy = make_noisy(train, "uniform", noise, seed=0).dataset.without_clean_boxes()
    kind = dataset_kind(train)
    images = DetectionImages(noisy, noisy.contiguous_labels(), cache_images=True)

    runs = {}
    for name in names:
        method_name, sets, torchvision_pooler = VARIANTS[name]
        ad = get_method(method_name)
        cfg = resolve_config(ad, "cpu", kind, noise, {"model.box_batch_size_per_image": rois, **sets})
        torch.manual_seed(0)
        model = ad.build_model(cfg, noisy.num_classes).train()
        if torchvision_pooler:
            p = model.refiner.pooler
            model.refiner.pooler = MultiScaleRoIAlign(p.featmap_names, p.output_size, p.sampling_ratio)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        order = TrainOrder(len(images), cfg["train"]["batch_size"], 0, cfg["train"]["hflip"], cfg["train"]["vflip"])
        pooler = getattr(getattr(model, "refiner", None), "pooler", None)
        runs[name] = {"model": model, "opt": opt, "order": order, "times": [], "cfg": cfg,
                      "sampling_ratio": getattr(pooler, "sampling_ratio", None)}

    def step(run, it):
        ims, targets = collate([images[i] for i in run["order"].batch(it)])
        t0 = time.perf_counter()
        loss = sum(run["model"](ims, targets).values())
        run["opt"].zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(run["model"].parameters(), 10.0)
        run["opt"].step()
        return time.perf_counter() - t0, sum(len(t["boxes"]) for t in targets) / len(targets)

    objects = []
    for it in range(warmup + steps):
        for name in names:  # round-robin: background load hits every variant alike
            dt, per_img = step(runs[name], it)
            if it >= warmup:
                runs[name]["times"].append(dt)
                objects.append(per_img)
        print(f"step {it + 1}/{warmup + steps} done", file=sys.stderr)

    base = statistics.median(runs["faster_rcnn"]["times"]) if "faster_rcnn" in runs else None
    rows = []
    for name in names:
        r = runs[name]
        med = statistics.median(r["times"])
        m = r["cfg"]["method"]
        bag = len(m["base_ratios"]) ** 2 * 5 if "base_ratios" in m else 0
        rows.append({"variant": name, "torchvision_roi_align": VARIANTS[name][2], "median_s": round(med, 3),
                     "mean_s": round(statistics.fmean(r["times"]), 3), "min_s": round(min(r["times"]), 3),
                     "ratio_vs_faster_rcnn": round(med / base, 2) if base else None,
                     "bag": bag, "refiner_sampling_ratio": r["sampling_ratio"],
                     "negatives_per_img": m.get("num_negatives")})
    result = {"dataset": dataset, "noise": noise, "rois_per_img": rois,
              "batch_size": runs[names[0]]["cfg"]["train"]["batch_size"],
              "threads": threads, "steps": steps, "objects_per_img": round(statistics.fmean(objects), 2),
              "load_avg_1min": os.getloadavg()[0], "rows": rows}
    head = f"{'variant':<17} {'bag':>4} {'sr':>3} {'negs':>5} {'median s':>9} {'min s':>7} {'x FR':>6}"
    print(f"{dataset} noise {noise}, {rois} RoIs/img, batch {result['batch_size']}, {threads} thread(s), "
          f"{result['objects_per_img']} objects/img, load avg {result['load_avg_1min']:.1f}")
    print(head)
    print("-" * len(head))
    for r in rows:
        ratio = "" if r["ratio_vs_faster_rcnn"] is None else f"{r['ratio_vs_faster_rcnn']:.2f}"
        print(f"{r['variant']:<17} {r['bag'] or '':>4} {r['refiner_sampling_ratio'] or '':>3} "
              f"{r['negatives_per_img'] or '':>5} {r['median_s']:9.3f} "
              f"{r['min_s']:7.3f} {ratio:>6}")
    write_json(out, result, indent=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
