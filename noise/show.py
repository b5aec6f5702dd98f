"""A picture of a noisy file: a few images with the clean boxes (green) and the noisy boxes (red).

Bogus boxes (no clean box) are dashed red; boxes the noise removed (listed in the manifest) dashed green. Where an
image file cannot be found the boxes are drawn on a grey canvas of the image's size, so the picture always comes out.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from benchmark.errors import BenchError
from benchmark.io import atomic_write_bytes

CLEAN, NOISY = "#1a9e3f", "#e0201b"


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


def draw_noisy(noisy, out_png: str | Path, manifest: dict | None = None, image_root: str | Path | None = None,
               n: int = 6, seed: int = 0) -> dict:
    """Draw up to `n` images (a seeded random choice among those with boxes) into `out_png`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    if n < 1:
        raise BenchError(f"--n must be at least 1, got {n}")
    fmt = _image_format(Path(out_png))
    removed: dict = {}
    for r in (manifest or {}).get("removed", []):
        removed.setdefault(r["annotation"]["image_id"], []).append(r["annotation"])
    by_image = noisy.annotations_by_image()
    candidates = [im for im in noisy.images if by_image.get(im["id"]) or removed.get(im["id"])]
    if not candidates:
        raise BenchError("no image has any box to draw", noisy.source or None)
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(len(candidates), size=min(n, len(candidates)), replace=False).tolist())
    cols = min(3, len(pick))
    rows = math.ceil(len(pick) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4.2 * rows), squeeze=False)
    root = Path(image_root) if image_root is not None else noisy.image_root
    missing = 0
    for ax, k in zip(axes.flat, pick):
        im = candidates[k]
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
        for a in removed.get(im["id"], []):
            x, y, w, h = a["bbox"]
            ax.add_patch(Rectangle((x, y), w, h, fill=False, color=CLEAN, lw=1.4, ls="--"))
        ax.set_title(str(im.get("file_name", im["id"]))[-40:], fontsize=8)
        ax.axis("off")
    for ax in list(axes.flat)[len(pick):]:
        ax.axis("off")
    title = "green: clean box, red: noisy box (dashed red: added, dashed green: removed)"
    if manifest:
        title = f"{manifest.get('model')} level {manifest.get('level')} seed {manifest.get('seed')} - " + title
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=100)
    plt.close(fig)
    atomic_write_bytes(out_png, buf.getvalue())
    return {"images": len(pick), "missing_image_files": missing}
