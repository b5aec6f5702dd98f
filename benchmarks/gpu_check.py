"""GPU check of the `paper` recipe: training images/s and peak memory per method, AMP off and on, and the step time
of torchvision's stock `fasterrcnn_resnet50_fpn` on the same batches, as a ratio (issue 26 targets: `faster_rcnn`
step <= 1.1x torchvision's; `ssd_det` step <= 3x `faster_rcnn` at the paper's 512 RoIs/img).

Nothing is downloaded. Without `--weights`, the ResNet-50 starts from a random init written to a temporary
state-dict file and loaded as `model.weights`, so the recipe keeps what a run from ImageNet weights trains (frozen
BN, stem and stage 1 frozen) and costs what such a run costs. torchvision's reference is built the way its builder
builds `fasterrcnn_resnet50_fpn` for a pretrained backbone (FrozenBatchNorm2d, 3 trainable stages; weights random),
with the recipe's image sizes, RPN proposal counts and RoIs per image. `--from-scratch` compares the stock call
`fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)` (BatchNorm trained, every stage) with the suite's
from-scratch path (`model.pretrained=false`, no weights), which trains the same parts.

Per dataset (`shapes` is upscaled to the 1333x800 COCO recipe, BCCD is trained at VOC's 1000x600): one noisy training
split (uniform noise, --noise), one seeded batch stream, and for each variant --warmup untimed then --iters timed
steps (forward, backward, grad clip, SGD step: the engine's step; OA-MIL in its last epoch, every stage on).
Each step is timed between CUDA synchronisations; images/s = images / timed seconds. Budget on one GPU: <= 8 min for
the defaults (4 methods + torchvision x AMP off/on x 2 datasets x 100 iterations). On a CPU (device auto -> cpu)
AMP on is skipped (the engine uses AMP on CUDA only) and figures are not comparable with the targets.

    python benchmarks/gpu_check.py                                   # shapes + BCCD, 100 iterations, batch 2
    python benchmarks/gpu_check.py --dataset shapes --iters 20 --amp off
    python benchmarks/gpu_check.py --iters 2 --dataset shapes:train=4,val=2,size=128,seed=0 --batch 1   # CPU smoke

Prints a table and writes benchmarks/out/gpu_check.json (`bench reproduce TABLE --dry-run --speed` reads it).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

METHODS = ("faster_rcnn", "oa_mil", "ssd_det", "clean")
REFERENCE = "torchvision"
TARGETS = {"faster_rcnn": (REFERENCE, 1.1), "ssd_det": ("faster_rcnn", 3.0)}  # variant -> (relative to, at most)
BUDGET_S = 8 * 60


def parse_list(text: str, allowed: tuple[str, ...] | None = None, what: str = "value") -> list[str]:
    items = list(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    if not items:
        raise click.BadParameter(f"empty {what} list")
    bad = [i for i in items if allowed is not None and i not in allowed]
    if bad:
        raise click.BadParameter(f"unknown {what} {', '.join(bad)} (known: {', '.join(allowed)})")
    return items


def parse_amp(text: str) -> list[bool]:
    return [v == "on" for v in parse_list(text, ("off", "on"), "amp")]


def ratios(rows: list[dict]) -> list[dict]:
    """Each row's step time relative to its target's reference row (same dataset and AMP setting): `ratio`,
    `target` (the bound, None without one) and `ok`; rows are changed in place and returned."""
    by = {(r["dataset"], r["amp"], r["method"]): r for r in rows}
    for r in rows:
        ref_name, bound = TARGETS.get(r["method"], (REFERENCE if r["method"] != REFERENCE else None, None))
        ref = by.get((r["dataset"], r["amp"], ref_name)) if ref_name else None
        ok = ref is not None and r.get("median_step_s") and ref.get("median_step_s")
        r["ratio_to"] = ref_name if ref is not None else None
        r["ratio"] = round(r["median_step_s"] / ref["median_step_s"], 3) if ok else None
        r["target"] = bound
        r["ok"] = None if bound is None or r["ratio"] is None else r["ratio"] <= bound
    return rows


def random_resnet50(folder: Path) -> Path:
    """A random-init torchvision ResNet-50 state dict: the recipe's backbone weights without a download."""
    import torch
    import torchvision

    torch.manual_seed(0)
    path = folder / "resnet50_random.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    return path


def torchvision_reference(model_cfg: dict, num_classes: int, from_scratch: bool):
    """torchvision's Faster R-CNN R50-FPN with the recipe's sizes and sampling: the stock call from scratch, else
    what its builder makes for a pretrained backbone (its `weights_backbone` branch), weights random."""
    import torch
    import torchvision
    from torchvision.models.detection import FasterRCNN, fasterrcnn_resnet50_fpn
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops import misc

    kwargs = {k: model_cfg[k] for k in ("min_size", "max_size", "rpn_pre_nms_top_n_train", "rpn_pre_nms_top_n_test",
                                        "rpn_post_nms_top_n_train", "rpn_post_nms_top_n_test",
                                        "box_batch_size_per_image", "box_score_thresh", "box_nms_thresh",
                                        "box_detections_per_img")}
    torch.manual_seed(0)
    if from_scratch:
        return fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=num_classes + 1, **kwargs)
    backbone = torchvision.models.resnet50(weights=None, norm_layer=misc.FrozenBatchNorm2d)
    return FasterRCNN(_resnet_fpn_extractor(backbone, 3), num_classes=num_classes + 1, **kwargs)


def measure(model, batches, train_cfg: dict, device, amp: bool, warmup: int) -> dict:
    """Train `model` on `batches` (the first `warmup` untimed) as the engine does; step times and peak memory."""
    import torch

    from benchmark.engine import make_optimizer

    model.to(device).train()
    optimizer = make_optimizer(model, train_cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i, (ims, targets) in enumerate(batches):
        ims = [im.to(device, non_blocking=True) for im in ims]
        targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
        if cuda:
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        with torch.autocast("cuda", enabled=amp) if cuda else torch.autocast("cpu", enabled=False):
            loss = sum(model(ims, targets).values())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if train_cfg.get("grad_clip"):
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, train_cfg["grad_clip"])
        scaler.step(optimizer)
        scaler.update()
        if cuda:
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
    model.to("cpu")
    del optimizer
    if cuda:
        torch.cuda.empty_cache()
    return {"times": times, "peak_gib": peak}


def run_dataset(spec: str, methods: list[str], amps: list[bool], iters: int, warmup: int, batch: int, noise: float,
                weights: str | None, from_scratch: bool, device, echo) -> list[dict]:
    import torch

    from benchmark.config import dataset_kind, resolve_config
    from benchmark.datasets import load
    from methods import get_method
    from methods._core.data import DetectionImages, TrainOrder, collate
    from noise import make_noisy

    train = load(spec, progress=False)["train"]
    kind = dataset_kind(train)
    noisy = make_noisy(train, "uniform", noise, seed=0).dataset
    sets = {"train.batch_size": batch}
    sets.update({"model.pretrained": False, "model.weights": None} if from_scratch else {"model.weights": weights})
    order = None
    rows = []
    variants = [(m, a) for m in [*methods, REFERENCE] for a in amps]
    for n, (name, amp) in enumerate(variants, 1):
        adapter = get_method("faster_rcnn" if name == REFERENCE else name)
        cfg = resolve_config(adapter, "paper", kind, noise, sets)
        view = adapter.training_view(noisy)
        images = DetectionImages(view, view.contiguous_labels(), cache_images=True)
        order = order or TrainOrder(len(images), batch, 0, cfg["train"]["hflip"], cfg["train"]["vflip"])
        batches = [collate([images[i] for i in order.batch(it)]) for it in range(warmup + iters)]
        torch.manual_seed(0)
        if name == REFERENCE:
            model = torchvision_reference(cfg["model"], view.num_classes, from_scratch)
        else:
            model = adapter.build_model(cfg, view.num_classes)
            if callable(getattr(model, "set_epoch", None)):
                model.set_epoch(cfg["train"]["epochs"] - 1, cfg["train"]["epochs"])  # every stage on
        out = measure(model, batches, cfg["train"], device, amp, warmup)
        del model
        t = out["times"]
        m = cfg["model"]
        rows.append({"dataset": spec, "kind": kind, "method": name, "amp": amp, "batch": batch, "iters": len(t),
                     "min_size": m["min_size"], "max_size": m["max_size"], "rois": m["box_batch_size_per_image"],
                     "median_step_s": round(statistics.median(t), 4), "mean_step_s": round(statistics.fmean(t), 4),
                     "images_per_s": round(batch * len(t) / sum(t), 2),
                     "peak_gib": None if out["peak_gib"] is None else round(out["peak_gib"], 2)})
        echo(f"[{spec}] {n}/{len(variants)} {name} amp {'on' if amp else 'off'}: "
             f"{rows[-1]['median_step_s'] * 1000:.0f} ms/step")
    return rows


def format_table(result: dict) -> str:
    head = (f"{'dataset':<14} {'variant':<12} {'amp':>3} {'size':>9} {'RoIs':>4} {'step ms':>8} {'img/s':>7} "
            f"{'peak GiB':>8} {'ratio':>14} {'target':>7} {'ok':>3}")
    lines = [f"device {result['device']}, batch {result['batch']}, {result['iters']} timed iterations "
             f"({result['warmup']} warm-up), noise {result['noise']}, backbone {result['backbone']}", head,
             "-" * len(head)]
    for r in result["rows"]:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}x {r['ratio_to']}"
        target = "" if r["target"] is None else f"<={r['target']:g}x"
        ok = "" if r["ok"] is None else ("yes" if r["ok"] else "NO")
        peak = "" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}"
        lines.append(f"{r['dataset'][:14]:<14} {r['method']:<12} {'on' if r['amp'] else 'off':>3} "
                     f"{r['min_size']:>4}/{r['max_size']:<4} {r['rois']:>4} {r['median_step_s'] * 1000:8.1f} "
                     f"{r['images_per_s']:7.2f} {peak:>8} {ratio:>14} {target:>7} {ok:>3}")
    lines.append(f"total {result['seconds']:.0f} s (budget on one GPU: {BUDGET_S // 60} min)"
                 + ("" if result["device"].startswith("cuda") else "; CPU figures: not comparable with the targets"))
    return "\n".join(lines)


@click.command()
@click.option("--dataset", "-d", "datasets", multiple=True, default=("shapes", "bccd"), show_default=True,
              help="catalog name or path (shapes:train=N,... specs too); repeatable")
@click.option("--methods", default=",".join(METHODS), show_default=True)
@click.option("--amp", "amp_text", default="off,on", show_default=True, help="off, on or off,on (CUDA only)")
@click.option("--iters", default=100, show_default=True, help="timed iterations per variant")
@click.option("--warmup", default=None, type=int, help="untimed iterations first [default: iters // 10]")
@click.option("--batch", default=2, show_default=True, help="images per step (the papers' per-GPU batch: 2-8)")
@click.option("--noise", default=0.4, show_default=True)
@click.option("--weights", default=None, type=click.Path(dir_okay=False, exists=True),
              help="ResNet-50 state dict [default: a random init, nothing downloaded]")
@click.option("--from-scratch", is_flag=True, help="BN trained and every stage (torchvision's stock weights=None call)")
@click.option("--device", default="auto", show_default=True)
@click.option("--out", default=str(REPO / "benchmarks" / "out" / "gpu_check.json"), show_default=True)
def main(datasets, methods, amp_text, iters, warmup, batch, noise, weights, from_scratch, device, out):
    import torch

    from benchmark.engine import select_device
    from benchmark.io import write_json

    if iters < 1 or batch < 1:
        raise click.BadParameter("--iters and --batch must be at least 1")
    specs = list(dict.fromkeys(datasets))
    names = parse_list(methods, METHODS, "method")
    amps = parse_amp(amp_text)
    warmup = iters // 10 if warmup is None else warmup
    dev = select_device(device, "--device")
    if dev.type != "cuda" and True in amps:
        amps = [a for a in amps if not a] or [False]
        click.echo("amp on skipped: the engine uses AMP on CUDA only", err=True)
    echo = lambda line: click.echo(line, err=True)  # noqa: E731
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = weights or (None if from_scratch else str(random_resnet50(Path(tmp))))
        rows = []
        for spec in specs:
            rows += run_dataset(spec, names, amps, iters, warmup, batch, noise, path, from_scratch, dev, echo)
    result = {"device": str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""),
              "batch": batch, "iters": iters, "warmup": warmup, "noise": noise,
              "backbone": "resnet50 " + ("from scratch" if from_scratch else (weights or "random init, frozen BN")),
              "torch": torch.__version__, "seconds": round(time.perf_counter() - t0, 1), "rows": ratios(rows)}
    if dev.type != "cuda":  # the targets are GPU targets: a CPU ratio neither meets nor misses them
        for r in result["rows"]:
            r["ok"] = None
    click.echo(format_table(result))
    write_json(out, result, indent=True)
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
