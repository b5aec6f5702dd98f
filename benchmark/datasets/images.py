"""Image files: sizes from headers, pixels, validation by decoding, and placing images into an exported layout.

EXIF orientation: a photo stored sideways with an orientation tag is shown upright by viewers, OpenCV, mmcv and
Ultralytics, so labels drawn on it (YOLO's normalised ones above all) refer to the upright image. `image_size`
gives that size and `open_rgb` those pixels, except where an annotation file recorded the stored size of a
quarter-turned image: then the stored pixels are what its boxes refer to. Only JPEG / MPO / TIFF / WebP tags are
read: they sit in the header, while PNG's may follow the pixel data."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from benchmark.errors import BenchError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


_TAGGED_FORMATS = ("JPEG", "MPO", "TIFF", "WEBP")
_QUARTER_TURNS = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def _orientation(im: Image.Image) -> int:
    if im.format not in _TAGGED_FORMATS:
        return 1
    try:
        value = int(im.getexif().get(0x0112, 1))
    except (TypeError, ValueError, OSError, SyntaxError):
        return 1
    return value if 1 <= value <= 8 else 1


def _upright_size(im: Image.Image) -> tuple[int, int]:
    w, h = im.size
    return (h, w) if _orientation(im) in _QUARTER_TURNS else (w, h)


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of the upright image (EXIF orientation applied), from the file header: PIL opens lazily, so
    no pixels are decoded.

    Raises `BenchError` naming the file if it is missing or not an image."""
    try:
        with Image.open(path) as im:
            return _upright_size(im)
    except FileNotFoundError:
        raise BenchError("image file not found", path) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise BenchError(f"not a readable image ({exc.__class__.__name__}: {exc})", path) from None


def open_rgb(path: str | Path, annotated_size: tuple | None = None) -> Image.Image:
    """The RGB pixels annotations refer to: upright (EXIF orientation applied), unless `annotated_size` (width,
    height) is the stored size of a quarter-turned image. PIL's errors propagate; callers name the file."""
    with Image.open(path) as im:
        if _orientation(im) != 1:
            stored_size = annotated_size is not None and tuple(map(int, annotated_size)) == im.size
            if not (stored_size and _upright_size(im) != im.size):
                return ImageOps.exif_transpose(im).convert("RGB")
        return im.convert("RGB")


def decode_problem(path: Path, width: int | None = None, height: int | None = None) -> str | None:
    """Decode one image fully; the problem as a short phrase, or None if it is fine.

    JPEGs are decoded at 1/8 scale (`draft`): the whole entropy-coded stream is still read, so truncation and
    corruption are caught, at a fraction of the cost."""
    try:
        with Image.open(path) as im:
            size = im.size
            sizes = {size, _upright_size(im)}  # either is a valid annotated size (see `open_rgb`)
            if im.format == "JPEG":
                im.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
            im.load()
    except FileNotFoundError:
        return "missing"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return f"unreadable ({exc.__class__.__name__}: {exc})"
    if width and height and (int(width), int(height)) not in sizes:
        return f"size mismatch (annotated {int(width)}x{int(height)}, file {size[0]}x{size[1]})"
    return None


def validate_images(ds, progress: bool = True) -> dict:
    """Check that every image of `ds` exists, decodes, and has the annotated size (slow: decodes every file).

    Returns `{"checked": n, "missing": [...], "unreadable": [...], "size_mismatch": [...]}`, each list holding
    `"file_name: problem"` lines (paths relative to the dataset's image root)."""
    from tqdm import tqdm

    out = {"checked": 0, "missing": [], "unreadable": [], "size_mismatch": []}
    for img in tqdm(ds.images, desc=f"checking images of {ds.name or 'dataset'}", unit="img", file=sys.stderr,
                    disable=not progress or len(ds.images) < 200, leave=False):
        problem = decode_problem(ds.image_path(img), img.get("width"), img.get("height"))
        out["checked"] += 1
        if problem is None:
            continue
        key = problem.split(" ", 1)[0]
        key = {"missing": "missing", "unreadable": "unreadable"}.get(key, "size_mismatch")
        out[key].append(f"{img['file_name']}: {problem}")
    return out


def place_image(src: Path, dst: Path, mode: str) -> bool:
    """Put an image into an exported layout: 'symlink' (absolute link), 'copy' or 'none'.

    Returns False (and writes nothing) if the source image does not exist."""
    if mode == "none":
        return True
    if not src.is_file():
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.exists():
        if dst.resolve() == src.resolve():
            return True
        dst.unlink()
    if mode == "symlink":
        try:
            os.symlink(src.resolve(), dst)
            return True
        except OSError:  # file systems without symlinks: fall back to a copy
            pass
    elif mode != "copy":
        raise BenchError(f"unknown image mode {mode!r} (use symlink, copy or none)")
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    return True
