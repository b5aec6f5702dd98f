"""A picture of a noisy file: a few images with the clean boxes (green) and the noisy boxes (red).

Bogus boxes (no clean box) are dashed red; boxes the noise removed (listed in the manifest) dashed green; a
method's refined boxes blue, predicted boxes orange. Images are a seeded random choice, given ids, or the ones with
the worst noisy boxes (lowest IoU with their clean box), optionally of one class. Where an image file cannot be
found the boxes are drawn on a grey canvas of the image's size, so the picture always comes out.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from benchmark.boxes import paired_iou, xywh_to_xyxy
from benchmark.errors import BenchError
from benchmark.io import atomic_write_bytes

CLEAN, NOISY, REFINED, PREDICTED = "#1a9e3f", "#e0201b", "#1f5fd1", "#f08c00"


def _pixels(path: Path | None, width: int, height: int):
    if path is not None and path.is_file():
        try:
            from benchmark.datasets.images import open_rgb

            return np.asarray(open_rgb(path, (width, height))), True
        except (OSError, ValueError, SyntaxError):
            pass
    return np.full((max(int(height), 1), max(int(width), 1), 3), 200, np.uint8), False


IMAGE_FORMATS = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".pdf": "pdf", ".svg": "svg"}


def _image_format(path: Path) -> str:
    """The format the file name asks for (a `.jpg` got PNG bytes before); PNG when it names none."""
    if not path.suffix:
        return "png"
    fmt = IMAGE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise BenchError(f"cannot write a {path.suffix} picture (use {', '.join(IMAGE_FORMATS)})", path)
    return fmt


def noisy_ious(anns: list[dict]) -> dict:
    """IoU of each perturbed box with its clean box, by annotation id (added boxes have none)."""
    paired = [a for a in anns if a.get("true_bbox") is not None]
    if not paired:
        return {}
    iou = paired_iou(xywh_to_xyxy([a["bbox"] for a in paired]), xywh_to_xyxy([a["true_bbox"] for a in paired]))
    return {a["id"]: float(v) for a, v in zip(paired, iou)}


def _category_id(noisy, category) -> int:
    """A category given by name or id."""
    for c in noisy.categories:
        if str(c["id"]) == str(category) or c.get("name") == category:
            return c["id"]
    names = ", ".join(str(c.get("name", c["id"])) for c in noisy.categories[:20])
    raise BenchError(f"no category {category!r} in the file (it has: {names})", noisy.source or None)


def choose_images(noisy, by_image: dict, removed: dict, n: int, seed: int, image_ids=None, worst: int | None = None):
    """The images to draw: `image_ids` as given, the `worst` ones (lowest noisy-vs-clean IoU first), or `n` seeded
    at random among those with boxes."""
    if image_ids:
        known = {str(im["id"]): im for im in noisy.images}
        unknown = [str(i) for i in image_ids if str(i) not in known]
        if unknown:
            raise BenchError(f"no image with id {', '.join(unknown[:5])} in the file", noisy.source or None)
        return [known[str(i)] for i in dict.fromkeys(image_ids)]
    candidates = [im for im in noisy.images if by_image.get(im["id"]) or removed.get(im["id"])]
    if not candidates:
        raise BenchError("no image has any box to draw", noisy.source or None)
    if worst is not None:
        if worst < 1:
            raise BenchError(f"--worst must be at least 1, got {worst}")
        ious = noisy_ious([a for anns in by_image.values() for a in anns])
        scored = [(min(ious[a["id"]] for a in by_image[im["id"]] if a["id"] in ious), k)
                  for k, im in enumerate(candidates) if any(a["id"] in ious for a in by_image.get(im["id"], []))]
        return [candidates[k] for _, k in sorted(scored)[:worst]]
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(len(candidates), size=min(n, len(candidates)), replace=False).tolist())
    return [candidates[k] for k in pick]


def draw_noisy(noisy, out_png: str | Path, manifest: dict | None = None, image_root: str | Path | None = None,
               n: int = 6, seed: int = 0, *, image_ids=None, worst: int | None = None, category=None,
               refined: list[dict] | None = None, predictions: list[dict] | None = None,
               min_score: float = 0.3) -> dict:
    """Draw the chosen images (see `choose_images`) into `out_png`; with `category` only that class's boxes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    if n < 1:
        raise BenchError(f"--n must be at least 1, got {n}")
    fmt = _image_format(Path(out_png))
    keep_cat = _category_id(noisy, category) if category is not None else None

    def kept(a: dict) -> bool:
        return keep_cat is None or a.get("category_id") == keep_cat

    removed: dict = {}
    for r in (manifest or {}).get("removed", []):
        if kept(r["annotation"]):
            removed.setdefault(r["annotation"]["image_id"], []).append(r["annotation"])
    by_image = {k: [a for a in v if kept(a)] for k, v in noisy.annotations_by_image().items()}
    layers = []
    for boxes, color, style in ((refined, REFINED, "-"), (predictions, PREDICTED, ":")):
        grouped: dict = {}
        for a in boxes or []:
            if kept(a) and a.get("score", 1.0) >= min_score:
                grouped.setdefault(a["image_id"], []).append(a)
        layers.append((grouped, color, style))
    chosen = choose_images(noisy, by_image, removed, n, seed, image_ids, worst)
    ious = noisy_ious([a for im in chosen for a in by_image.get(im["id"], [])]) if worst is not None else {}
    cols = min(3, len(chosen))
    rows = math.ceil(len(chosen) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4.2 * rows), squeeze=False)
    root = Path(image_root) if image_root is not None else noisy.image_root
    missing = 0
    for ax, im in zip(axes.flat, chosen):
        path = (root / im["file_name"]) if root is not None and im.get("file_name") else None
        pixels, found = _pixels(path, im.get("width", 1), im.get("height", 1))
        missing += not found
        ax.imshow(pixels)
        for a in by_image.get(im["id"], []):
            x, y, w, h = a["bbox"]
            tb = a.get("true_bbox", a["bbox"])
            if tb is not None:
                ax.add_patch(Rectangle(tb[:2], tb[2], tb[3], fill=False, color=CLEAN, lw=1.4))
            ax.add_patch(Rectangle((x, y), w, h, fill=False, color=NOISY, lw=1.4, ls="-" if tb is not None else "--"))
            if a["id"] in ious:
                ax.text(x, y, f"{ious[a['id']]:.2f}", color="white", fontsize=7, va="bottom",
                        bbox={"facecolor": NOISY, "pad": 0.5, "lw": 0})
        for a in removed.get(im["id"], []):
            x, y, w, h = a["bbox"]
            ax.add_patch(Rectangle((x, y), w, h, fill=False, color=CLEAN, lw=1.4, ls="--"))
        for grouped, color, style in layers:
            for a in grouped.get(im["id"], []):
                x, y, w, h = a["bbox"]
                ax.add_patch(Rectangle((x, y), w, h, fill=False, color=color, lw=1.2, ls=style))
        ax.set_title(f"{str(im.get('file_name', ''))[-34:]} (id {im['id']})", fontsize=8)
        ax.axis("off")
    for ax in list(axes.flat)[len(chosen):]:
        ax.axis("off")
    title = "green: clean box, red: noisy box (dashed red: added, dashed green: removed)"
    title += "".join(part for part, on in ((", blue: refined", refined), (", dotted orange: predicted", predictions))
                     if on)
    if worst is not None:
        title += "; worst noisy boxes first, labelled with their IoU"
    if manifest:
        title = f"{manifest.get('model')} level {manifest.get('level')} seed {manifest.get('seed')} - " + title
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=100)
    plt.close(fig)
    atomic_write_bytes(out_png, buf.getvalue())
    return {"images": len(chosen), "missing_image_files": missing, "image_ids": [im["id"] for im in chosen]}
