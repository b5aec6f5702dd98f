"""`shapes`: the built-in synthetic detection dataset, generated on first use into the cache (no download).

Small RGB images (128 px by default) of 2-8 filled shapes of 4 classes (ellipse, rectangle, triangle, cross) on a
noisy textured background with clutter lines. Object size is log-uniform (8-60 px at 128 px, scaled with the image
size), aspect 0.6-1.7; about 30 % of objects are placed touching a neighbour's box and others may partially
overlap earlier ones (a later object covers at most 35 % of any earlier object's box). That is what lets object
drift, group prediction and part domination happen under box noise, and a small detector learns it on CPU.

Boxes are exact and *amodal*: the tight pixel extent of the whole drawn shape (before blur and pixel noise), even
where a later object hides part of it, like COCO boxes. Every image is drawn from its own generator
`numpy.random.default_rng([seed, index])`, so a split is a pure function of (count, size, seed).

Generation writes COCO json + PNG into a temporary folder that is renamed into place: an interrupted run leaves
no half dataset, and two processes generating at once both end up using one complete copy.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from benchmark.errors import BenchError
from benchmark.io import write_json

from .coco import load_coco
from .core import DetectionDataset
from .formats import FORMATS, DatasetFormat, record_kind

VERSION = 1  # bump when the generator's output changes: cached copies are keyed by it
CLASSES = ("ellipse", "rectangle", "triangle", "cross")
TOUCH_PROB = 0.3
MAX_COVER = 0.35
NOISE_SIGMA = 12.0


@dataclass(frozen=True)
class ShapesConfig:
    train: int = 1500
    val: int = 300
    size: int = 128
    train_seed: int = 1
    val_seed: int = 2

    def key(self) -> str:
        return (f"shapes-v{VERSION}-{self.size}px-train{self.train}s{self.train_seed}"
                f"-val{self.val}s{self.val_seed}")

    def validate(self) -> ShapesConfig:
        if self.train < 1 or self.val < 1:
            raise BenchError(f"shapes: train and val counts must be >= 1, got {self.train} / {self.val}")
        if not 32 <= self.size <= 2048:
            raise BenchError(f"shapes: size must be between 32 and 2048 px, got {self.size}")
        return self


def cache_dir() -> Path:
    """`$NOISYBOX_CACHE`, default ~/.cache/noisybox."""
    env = os.environ.get("NOISYBOX_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "noisybox"


# ---- drawing ------------------------------------------------------------------------------------------------
def _background(rng: np.random.Generator, size: int) -> tuple[Image.Image, np.ndarray]:
    base = rng.integers(30, 226, 3).astype(np.float32)
    amp = rng.uniform(10, 40)
    field = np.stack([np.asarray(Image.fromarray(rng.normal(0, 1, (4, 4)).astype(np.float32), "F")
                                 .resize((size, size), Image.BICUBIC)) for _ in range(3)], axis=-1)
    img = Image.fromarray(np.clip(base + amp * field, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(2, 6)):  # clutter lines
        pts = rng.uniform(-0.1 * size, 1.1 * size, 4).tolist()
        draw.line(pts, fill=tuple(int(c) for c in rng.integers(0, 256, 3)), width=int(rng.integers(1, 4)))
    return img, base


def _colour(rng: np.random.Generator, base: np.ndarray) -> tuple[int, int, int]:
    for _ in range(50):
        c = rng.integers(0, 256, 3)
        if np.abs(c - base).sum() > 120:
            return tuple(int(v) for v in c)
    return tuple(int(v) for v in 255 - base)


def _shape_mask(cls: int, box: tuple[int, int, int, int], size: int, rng: np.random.Generator) -> Image.Image:
    x0, y0, x1, y1 = box  # pixel columns x0..x1-1, rows y0..y1-1
    mask = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(mask)
    if cls == 0:
        d.ellipse([x0, y0, x1 - 1, y1 - 1], fill=255)
    elif cls == 1:
        d.rectangle([x0, y0, x1 - 1, y1 - 1], fill=255)
    elif cls == 2:
        apex, base_y = (y0, y1 - 1) if rng.random() < 0.5 else (y1 - 1, y0)
        d.polygon([(x0, base_y), (x1 - 1, base_y), ((x0 + x1 - 1) / 2, apex)], fill=255)
    else:
        tw = max(2, round((x1 - x0) * rng.uniform(0.25, 0.45)))
        th = max(2, round((y1 - y0) * rng.uniform(0.25, 0.45)))
        cx0, cy0 = x0 + (x1 - x0 - tw) // 2, y0 + (y1 - y0 - th) // 2
        d.rectangle([x0, cy0, x1 - 1, cy0 + th - 1], fill=255)
        d.rectangle([cx0, y0, cx0 + tw - 1, y1 - 1], fill=255)
    return mask


def _inter(a, b) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def _touching_candidate(rng, nb, w, h, size):
    """A box of size w x h sharing one edge with box `nb` (zero gap, overlapping span)."""
    side = rng.integers(4)
    if side < 2:  # left / right of nb
        x0 = nb[2] if side == 0 else nb[0] - w
        y0 = int(rng.integers(nb[1] - h + 1, nb[3]))
    else:  # below / above nb
        y0 = nb[3] if side == 2 else nb[1] - h
        x0 = int(rng.integers(nb[0] - w + 1, nb[2]))
    return (x0, y0, x0 + w, y0 + h)


def _place(rng, boxes, covered, w, h, size):
    """A box for a new object on top of `boxes`, or None. `covered[i]` marks pixels of box i already hidden."""
    touch = boxes and rng.random() < TOUCH_PROB
    for _ in range(30):
        if touch:
            cand = _touching_candidate(rng, boxes[int(rng.integers(len(boxes)))], w, h, size)
        else:
            x0, y0 = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
            cand = (x0, y0, x0 + w, y0 + h)
        if cand[0] < 0 or cand[1] < 0 or cand[2] > size or cand[3] > size:
            continue
        ok = True
        for b, cov in zip(boxes, covered):
            if _inter(cand, b) == 0:
                continue
            c = cov.copy()
            c[max(cand[1] - b[1], 0):cand[3] - b[1], max(cand[0] - b[0], 0):cand[2] - b[0]] = True
            if c.mean() > MAX_COVER:
                ok = False
                break
        if ok:
            return cand
    return None


def render(rng: np.random.Generator, size: int = 128) -> tuple[np.ndarray, list[tuple[int, list[int]]]]:
    """One image (H x W x 3 uint8) and its objects as (class index, [x, y, w, h]) in drawing order."""
    img, base = _background(rng, size)
    scale = size / 128
    smin, smax, side_max = 8 * scale, 60 * scale, max(4, size // 2)
    boxes, covered, objects = [], [], []
    for _ in range(int(rng.integers(2, 9))):
        cls = int(rng.integers(len(CLASSES)))
        s = math.exp(rng.uniform(math.log(smin), math.log(smax)))
        a = rng.uniform(0.6, 1.7)
        w = int(min(side_max, max(4, round(s * math.sqrt(a)))))
        h = int(min(side_max, max(4, round(s / math.sqrt(a)))))
        box = _place(rng, boxes, covered, w, h, size)
        if box is None:
            continue
        mask = _shape_mask(cls, box, size, rng)
        x0, y0, x1, y1 = mask.getbbox()  # the exact extent of the drawn pixels
        img.paste(_colour(rng, base), mask=mask)
        for b, cov in zip(boxes, covered):
            if _inter(box, b):
                cov[max(box[1] - b[1], 0):box[3] - b[1], max(box[0] - b[0], 0):box[2] - b[0]] = True
        boxes.append((x0, y0, x1, y1))
        covered.append(np.zeros((y1 - y0, x1 - x0), dtype=bool))
        objects.append((cls, [x0, y0, x1 - x0, y1 - y0]))
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.5, 1.2))))
    arr = np.asarray(img, dtype=np.float32)
    arr += rng.standard_normal((size, size, 3), dtype=np.float32) * NOISE_SIGMA + 0.5
    return np.clip(arr, 0, 255, out=arr).astype(np.uint8), objects


def generate_split(n: int, seed: int, size: int, out_dir: Path, split: str, progress: bool = True) -> dict:
    """Draw `n` images into `out_dir/images/<split>/` and return their COCO dict (file names `<split>/NNNNNN.png`)."""
    from tqdm import tqdm

    img_dir = out_dir / "images" / split
    img_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in tqdm(range(n), desc=f"generating shapes {split}", unit="img", file=sys.stderr,
                  disable=not progress, leave=False):
        arr, objects = render(np.random.default_rng([seed, i]), size)
        file_name = f"{split}/{i + 1:06d}.png"
        Image.fromarray(arr, "RGB").save(out_dir / "images" / file_name, compress_level=1)
        images.append({"id": i + 1, "file_name": file_name, "width": size, "height": size})
        for cls, box in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": cls + 1,
                                "bbox": box, "area": float(box[2] * box[3]), "iscrowd": 0, "ignore": 0})
    return {
        "info": {"description": "noisybox-bench synthetic shapes", "generator_version": VERSION, "split": split,
                 "seed": seed, "image_root": "images"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": n} for k, n in enumerate(CLASSES)],
    }


STALE_TMP_S = 3600  # a generation takes seconds: a temporary folder this old was left by a killed process


def _remove_stale_tmp(root: Path, key: str) -> None:
    """Delete temporary folders of interrupted generations (by age, not pid: the cache may be shared by hosts)."""
    now = time.time()
    for p in root.glob(f".{key}.tmp-*"):
        try:
            if now - p.stat().st_mtime > STALE_TMP_S:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass


def ensure_shapes(cfg: ShapesConfig = ShapesConfig(), root: str | Path | None = None, progress: bool = True) -> Path:
    """The folder holding `train.json`, `val.json` and `images/`, generating it first if it is not cached."""
    cfg.validate()
    root = Path(root) if root is not None else cache_dir()
    final = root / cfg.key()
    if (final / "val.json").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(root, cfg.key())
    tmp = root / f".{cfg.key()}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        for split, n, seed in (("train", cfg.train, cfg.train_seed), ("val", cfg.val, cfg.val_seed)):
            write_json(tmp / f"{split}.json", generate_split(n, seed, cfg.size, tmp, split, progress))
        write_json(tmp / "config.json", {"generator_version": VERSION, **asdict(cfg)}, indent=True)
        try:
            os.rename(tmp, final)  # atomic; fails if another process finished first
        except OSError:
            if not (final / "val.json").is_file():
                raise
    except OSError as exc:
        raise BenchError(f"cannot generate shapes dataset ({exc.strerror or exc})", final) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final

# ---- the `shapes` entry of `formats.FORMATS` (the `shapes:` spec, reading, kind) ------------------------------------
def load_shapes(cfg: ShapesConfig | None = None, name: str = "shapes",
                progress: bool = True) -> dict[str, DetectionDataset]:
    """The synthetic set `cfg` (generated on first use) as `train` and `test` (its `val` file)."""
    root = ensure_shapes(cfg or ShapesConfig(), progress=progress)
    return record_kind({"train": load_coco(root / "train.json", root / "images", name=f"{name}/train"),
                        "test": load_coco(root / "val.json", root / "images", name=f"{name}/test")}, SHAPES.kind)


def parse_shapes_spec(spec: str) -> ShapesConfig:
    """`shapes:train=200,val=50,size=96,seed=3` -> ShapesConfig (`seed=S` sets train_seed=S, val_seed=S+1)."""
    fields, body = {}, spec.split(":", 1)[1]
    for item in filter(None, (s.strip() for s in body.split(","))):
        key, _, val = item.partition("=")
        key = {"test": "val", "test_seed": "val_seed"}.get(key.strip(), key.strip())
        if key not in ("train", "val", "size", "seed", "train_seed", "val_seed") or not val.strip().lstrip("-").isdigit():
            raise BenchError(f"bad shapes option {item!r} in {spec!r} (use train=N,val=N,size=PX,seed=S)")
        fields[key] = int(val)
    if "seed" in fields:
        seed = fields.pop("seed")
        fields.setdefault("train_seed", seed)
        fields.setdefault("val_seed", seed + 1)
    return ShapesConfig(**fields).validate()


def _shapes_read_spec(spec: str, progress: bool = True, keep_columns: bool = False) -> dict[str, DetectionDataset]:
    return load_shapes(parse_shapes_spec(spec), name=spec, progress=progress)


SHAPES = DatasetFormat("shapes", kind="shapes", scheme="shapes", read_spec=_shapes_read_spec,
                       split_map={"train": "train", "test": "val"})
FORMATS.add("shapes", SHAPES)
