"""The suite's own pretrained start for the `tiny` backbone: a label-only pretext task, rebuilt bit for bit on CPU.

Detectors trained from a random init on 2 CPU cores are weak, unconfident and seed-noisy; the papers' start from
ImageNet. This module is the offline substitute: multi-label image classification ("which of 8 procedural figures
are in this picture?", no boxes) on images drawn here, then the backbone body (`tiny_backbone(...).body`) is saved
as `methods/_core/weights/tiny_pretext.pth` and loaded by the same code path as any `--weights` file.

The pretext data shares nothing with a benchmark split, by construction:
- its own drawing code (nothing from `benchmark.datasets`), 64 px images (the shapes splits are 128 px), other
  figures (pentagon, hexagon, star, ring, rhombus, chevron, striped disc, checker tile; none of the shapes classes
  ellipse / axis-aligned rectangle / triangle / cross), a gradient + grating background (no clutter lines);
- its own seed namespace: image `i` comes from `SeedSequence(PRETEXT_ENTROPY, spawn_key=(i,))`, a 128-bit entropy
  and a spawn key that `shapes` (`default_rng([seed, index])`, no spawn key) never uses.

Determinism: fixed seeds, one thread, `torch.use_deterministic_algorithms(True)`, a fixed image order and no
worker processes, so the same torch/numpy/Pillow build on the same kind of CPU writes the same file (sha256).

    python -m methods._core.pretrain --out methods/_core/weights/tiny_pretext.pth
"""

from __future__ import annotations

import hashlib
import math
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from methods._core.weights import TINY_PRETEXT, TINY_PRETEXT_WIDTHS

PRETEXT_VERSION = 1
PRETEXT_ENTROPY = int.from_bytes(hashlib.sha256(b"noisybox-bench pretext v1").digest()[:16], "big")
CLASSES = ("pentagon", "hexagon", "star", "ring", "rhombus", "chevron", "striped_disc", "checker_tile")
SIZE = 64
WIDTHS = tuple(TINY_PRETEXT_WIDTHS)  # the cpu profile's `model.widths`
FPN_CHANNELS = 64  # unused by the body; tiny_backbone builds an FPN around it
WEIGHTS_FILE = TINY_PRETEXT
# the schedule that wrote WEIGHTS_FILE
DEFAULTS = {"iters": 1200, "batch": 64, "lr": 2e-3, "weight_decay": 1e-4, "warmup": 50, "seed": 0}


def image_rng(index: int) -> np.random.Generator:
    """The generator of pretext image `index`: the pretext namespace, never a shapes (seed, index) pair."""
    return np.random.default_rng(np.random.SeedSequence(PRETEXT_ENTROPY, spawn_key=(int(index),)))


def _background(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    c0, c1 = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
    ang = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE
    t = np.clip(0.5 + (xx - 0.5) * math.cos(ang) + (yy - 0.5) * math.sin(ang), 0, 1)[..., None]
    img = c0 * (1 - t) + c1 * t
    freq, phase, amp = rng.uniform(2, 9), rng.uniform(0, 2 * math.pi), rng.uniform(0, 25)
    ang2 = rng.uniform(0, math.pi)
    img = img + amp * np.sin(2 * math.pi * freq * (xx * math.cos(ang2) + yy * math.sin(ang2)) + phase)[..., None]
    return img.astype(np.float32), (c0 + c1) / 2


def _polygon(cx, cy, radii, rot) -> list[tuple[float, float]]:
    n = len(radii)
    return [(cx + r * math.cos(rot + 2 * math.pi * k / n), cy + r * math.sin(rot + 2 * math.pi * k / n))
            for k, r in enumerate(radii)]


def _figure_mask(cls: int, cx: float, cy: float, r: float, rng: np.random.Generator) -> np.ndarray:
    """A float mask (0..1) of figure `cls` of radius `r` centred at (cx, cy), randomly rotated."""
    rot = rng.uniform(0, 2 * math.pi)
    mask = Image.new("L", (SIZE, SIZE), 0)
    d = ImageDraw.Draw(mask)
    if cls == 0:
        d.polygon(_polygon(cx, cy, [r] * 5, rot), fill=255)
    elif cls == 1:
        d.polygon(_polygon(cx, cy, [r] * 6, rot), fill=255)
    elif cls == 2:
        d.polygon(_polygon(cx, cy, [r, 0.45 * r] * 5, rot), fill=255)
    elif cls == 3:
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        ri = r * rng.uniform(0.45, 0.7)
        d.ellipse([cx - ri, cy - ri, cx + ri, cy + ri], fill=0)
    elif cls == 4:
        d.polygon(_polygon(cx, cy, [r, 0.55 * r, r, 0.55 * r], rot), fill=255)
    elif cls == 5:
        d.polygon(_polygon(cx, cy, [r, 0.8 * r, 0.2 * r, 0.8 * r], rot), fill=255)
    else:
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255) if cls == 6 else \
            d.polygon(_polygon(cx, cy, [r] * 4, rot), fill=255)
    m = np.asarray(mask, dtype=np.float32) / 255.0
    if cls in (6, 7):  # texture inside the outline: stripes or a checkerboard at the figure's own angle
        yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
        period = max(2.5, r * rng.uniform(0.3, 0.6))
        u = (xx - cx) * math.cos(rot) + (yy - cy) * math.sin(rot)
        if cls == 6:
            m = m * (np.floor(u / period) % 2)
        else:
            v = -(xx - cx) * math.sin(rot) + (yy - cy) * math.cos(rot)
            m = m * ((np.floor(u / period) + np.floor(v / period)) % 2)
    return m


def render(index: int) -> tuple[np.ndarray, np.ndarray]:
    """Pretext image `index` (64 x 64 x 3 uint8) and its multi-hot label over `CLASSES` (float32)."""
    rng = image_rng(index)
    img, base = _background(rng)
    label = np.zeros(len(CLASSES), np.float32)
    for _ in range(int(rng.integers(1, 5))):
        cls = int(rng.integers(len(CLASSES)))
        r = math.exp(rng.uniform(math.log(4), math.log(22)))
        cx, cy = rng.uniform(r * 0.5, SIZE - r * 0.5, 2)
        colour = rng.uniform(0, 255, 3)
        if np.abs(colour - base).sum() < 120:
            colour = 255 - base
        m = _figure_mask(cls, cx, cy, r, rng)[..., None]
        img = img * (1 - m) + colour * m
        label[cls] = 1.0
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    if rng.random() < 0.3:
        out = out.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.4, 1.0))))
    arr = np.asarray(out, dtype=np.float32) + rng.standard_normal((SIZE, SIZE, 3), dtype=np.float32) * rng.uniform(0, 14)
    return np.clip(arr + 0.5, 0, 255).astype(np.uint8), label


def batch(start: int, n: int):
    """Images start..start+n-1 as a normalised float tensor (ImageNet mean/std, as the detector's transform) and labels."""
    import torch

    from methods._core.model import IMAGENET_MEAN, IMAGENET_STD

    imgs, labels = zip(*(render(i) for i in range(start, start + n)))
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float().div_(255)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std, torch.from_numpy(np.stack(labels))


def pretrain(iters: int = DEFAULTS["iters"], batch_size: int = DEFAULTS["batch"], lr: float = DEFAULTS["lr"],
             weight_decay: float = DEFAULTS["weight_decay"], warmup: int = DEFAULTS["warmup"],
             seed: int = DEFAULTS["seed"], progress: bool = True) -> tuple[dict, dict]:
    """Train the tiny backbone body + a linear multi-label head; returns (body state dict, log)."""
    import torch
    from torch import nn

    from methods._core.model import tiny_backbone

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        body = tiny_backbone(list(WIDTHS), FPN_CHANNELS).body  # stages 2-4 come out as '0', '1', '2'
        head = nn.Linear(sum(WIDTHS[1:]), len(CLASSES))
    params = list(body.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: min(1.0, (it + 1) / warmup) * 0.5 * (
        1 + math.cos(math.pi * it / iters)))
    body.train()
    log, t0, run_loss, run_acc = [], time.perf_counter(), 0.0, 0.0
    for it in range(iters):
        x, y = batch(it * batch_size, batch_size)
        feats = body(x)
        logits = head(torch.cat([f.mean((2, 3)) for f in feats.values()], dim=1))
        loss = nn.functional.binary_cross_entropy_with_logits(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        run_loss += loss.item()
        run_acc += ((logits > 0).float() == y).all(dim=1).float().mean().item()
        if (it + 1) % 100 == 0 or it + 1 == iters:
            k = (it % 100) + 1
            log.append({"iter": it + 1, "loss": run_loss / k, "exact_match": run_acc / k,
                        "seconds": time.perf_counter() - t0})
            if progress:
                print(f"pretrain {it + 1}/{iters}: loss {run_loss / k:.4f}, exact-match accuracy {run_acc / k:.3f}, "
                      f"{time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
            run_loss = run_acc = 0.0
    return {k: v.detach().clone().contiguous() for k, v in body.state_dict().items()}, {"log": log}


def save(state: dict, path: Path) -> str:
    """Write the state dict (atomic) and return the file's sha256."""
    import io

    import torch

    from benchmark.io import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    atomic_write_bytes(Path(path), data)
    return hashlib.sha256(data).hexdigest()


def main(argv: list[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=WEIGHTS_FILE)
    p.add_argument("--iters", type=int, default=DEFAULTS["iters"])
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    state, _ = pretrain(iters=args.iters)
    digest = save(state, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB) in {time.perf_counter() - t0:.0f}s; "
          f"sha256 {digest}")


if __name__ == "__main__":
    main()
