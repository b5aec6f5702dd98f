"""Failure-mode galleries: one PNG grid of image crops per mode, boxes in fixed, labelled colours.

Each tile crops the image around the clean, noisy and refined/predicted boxes (plus a margin), scales the crop to
a fixed tile size and draws the other objects of the image thinly, so drift and group cases show their neighbours.
A missing image file draws on a grey canvas instead (the boxes still tell the story) and says so in the caption.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from benchmark.datasets.images import open_rgb
from benchmark.io import atomic_write_bytes

COLORS = {"clean": (30, 170, 60), "noisy": (255, 140, 0), "refined": (225, 20, 170), "predicted": (225, 20, 170),
          "other objects": (235, 235, 235)}
_MISSING = (96, 96, 96)
_OUTSIDE = (200, 200, 200)


@dataclass
class Example:
    """One tile: boxes are COCO xywh in original-image pixels; any of them may be None (at least one is set)."""

    image_path: Path | None
    image_size: tuple[int, int]  # (width, height), used when the image cannot be read
    candidate: list[float] | None
    clean: list[float] | None = None
    noisy: list[float] | None = None
    others: list[list[float]] = field(default_factory=list)
    caption: str = ""


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _crop_window(ex: Example, width: int, height: int) -> tuple[float, float, float, float]:
    boxes = np.array([b for b in (ex.clean, ex.noisy, ex.candidate) if b is not None], dtype=float)
    x1, y1 = boxes[:, 0].min(), boxes[:, 1].min()
    x2, y2 = (boxes[:, 0] + boxes[:, 2]).max(), (boxes[:, 1] + boxes[:, 3]).max()
    side = max(x2 - x1, y2 - y1, 8.0) * 1.35 + 8.0
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = cx - side / 2, cy - side / 2
    left = min(max(left, 0.0), max(width - side, 0.0)) if side <= width else left
    top = min(max(top, 0.0), max(height - side, 0.0)) if side <= height else top
    return left, top, left + side, top + side


def _tile(ex: Example, size: int, candidate_label: str, images: dict) -> Image.Image:
    img = None
    if ex.image_path is not None:
        key = str(ex.image_path)
        if key not in images:
            try:
                images[key] = open_rgb(ex.image_path, ex.image_size)
            except (OSError, ValueError):
                images[key] = None
        img = images[key]
    width, height = (img.size if img is not None else ex.image_size)
    left, top, right, bottom = _crop_window(ex, width, height)
    scale = size / (right - left)
    if img is not None:  # paste onto a neutral canvas: parts of the window outside the image stay grey
        left, top = int(np.floor(left)), int(np.floor(top))
        side = int(np.ceil(right)) - left
        canvas = Image.new("RGB", (side, side), _OUTSIDE)
        canvas.paste(img, (-left, -top))
        tile = canvas.resize((size, size), Image.Resampling.BILINEAR)
        scale = size / side
    else:
        tile = Image.new("RGB", (size, size), _MISSING)
    draw = ImageDraw.Draw(tile)

    def rect(b, color, w):
        x, y, bw, bh = (float(v) for v in b)
        draw.rectangle([(x - left) * scale, (y - top) * scale, (x + bw - left) * scale, (y + bh - top) * scale],
                       outline=color, width=w)

    # clean drawn widest and first, so it stays visible as a halo where a thinner box lies on top of it
    for b in ex.others:
        rect(b, COLORS["other objects"], 1)
    if ex.clean is not None:
        rect(ex.clean, COLORS["clean"], 5)
    if ex.noisy is not None:
        rect(ex.noisy, COLORS["noisy"], 3)
    if ex.candidate is not None:
        rect(ex.candidate, COLORS[candidate_label], 2)
    if img is None:
        draw.text((4, 4), "image not found", fill=(255, 255, 255), font=_font(11))
    return tile


def render(examples: list[Example], title: str, candidate_label: str = "refined", tile: int = 200,
           cols: int = 4) -> bytes:
    """PNG bytes of a titled, legended grid of example tiles (an empty list gives a 'no examples' note)."""
    caption_h, pad, head_h = 30, 8, 48
    rows = max(1, -(-len(examples) // cols))
    width = pad + cols * (tile + pad)
    height = head_h + rows * (tile + caption_h + pad) + pad
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, 6), title, fill=(0, 0, 0), font=_font(14))
    legend = ["clean", "noisy", candidate_label, "other objects"]
    present = {"noisy": any(e.noisy is not None for e in examples),
               candidate_label: any(e.candidate is not None for e in examples) or not examples}
    x = pad
    for name in legend:
        if not present.get(name, True):
            continue
        color = COLORS[name]
        draw.rectangle([x, 28, x + 18, 40], outline=color if name != "other objects" else (120, 120, 120),
                       width=3, fill=color if name == "other objects" else None)
        draw.text((x + 24, 27), name, fill=(0, 0, 0), font=_font(12))
        x += 24 + int(draw.textlength(name, font=_font(12))) + 18
    if not examples:
        draw.text((pad, head_h + 10), "no examples of this mode", fill=(80, 80, 80), font=_font(12))
    images: dict = {}
    for k, ex in enumerate(examples):
        r, c = divmod(k, cols)
        x0, y0 = pad + c * (tile + pad), head_h + r * (tile + caption_h + pad)
        canvas.paste(_tile(ex, tile, candidate_label, images), (x0, y0))
        for i, line in enumerate(ex.caption.split("\n")[:2]):
            draw.text((x0, y0 + tile + 2 + 13 * i), line, fill=(0, 0, 0), font=_font(11))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def write(examples: list[Example], path: Path, title: str, candidate_label: str = "refined", **kw) -> Path:
    return atomic_write_bytes(path, render(examples, title, candidate_label, **kw))
