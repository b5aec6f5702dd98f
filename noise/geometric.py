"""Geometric noise models: they move and resize boxes; labels, ids and the set of boxes stay as they are.

Every model here perturbs each active box from the same number of draws whatever the level (draws are scaled by the
level), so with one seed a larger level moves every box further: realised IoU falls smoothly with the level, which
is what `calibrate` relies on. Results go through `BoxSet.propose` (clip to [0, W-1] x [0, H-1]; a collapsed box
keeps its previous value).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from benchmark.errors import BenchError
from noise.boxset import BoxSet, from_centre
from noise.legacy import legacy_uniform
from noise.registry import noise_model


def _levels(level: Any, idx: np.ndarray) -> np.ndarray | float:
    """The level: a float, or (from `per_class`) an array aligned with `idx`."""
    if np.ndim(level) == 0:
        return float(level)
    return np.broadcast_to(np.asarray(level, dtype=np.float64), idx.shape)


def _draws(rng, n: int, k: int, normal: bool = False) -> np.ndarray:
    """(n, k) draws, one column per factor (column-major, like the boxes)."""
    return (rng.standard_normal((k, n)) if normal else rng.random((k, n))).T


def _scaled(u: np.ndarray, g: np.ndarray | float) -> np.ndarray:
    """Unit draws in [-1, 1) (from U[0, 1)) scaled by the level, in place."""
    u *= 2.0
    u -= 1.0
    u *= g if np.ndim(g) == 0 else np.asarray(g)[:, None]
    return u


def _moved(bs: BoxSet, idx: np.ndarray, g: np.ndarray | float, xyxy: np.ndarray) -> BoxSet:
    """Propose only rows whose level is > 0: at level 0 a box stays exactly as it is (no clip, no rounding)."""
    if np.ndim(g) == 0:
        return bs.propose(idx, xyxy) if g > 0 else bs
    keep = g > 0
    return bs.propose(idx[keep], xyxy[keep])


@noise_model("uniform", legacy=True)
def uniform(bs: BoxSet, level, rng):
    """OA-MIL / SSD-Det protocol: centre shift w*U(-g,g), h*U(-g,g); size w*(1+U(-g,g)), h*(1+U(-g,g))."""
    if isinstance(rng, np.random.RandomState):
        return legacy_uniform(bs, float(level), rng)
    idx = bs.active_index()
    g = _levels(level, idx)
    u = _scaled(_draws(rng, idx.size, 4), g)
    cx, cy, w, h = bs.sizes(idx)
    u[:, 2:] += 1.0
    return _moved(bs, idx, g, from_centre(cx + w * u[:, 0], cy + h * u[:, 1], w * u[:, 2], h * u[:, 3]))


@noise_model("gaussian")
def gaussian(bs: BoxSet, level, rng):
    """Annotator jitter with occasional large misses: centre shift w*N(0,s), size w*exp(N(0,s)) (log-normal)."""
    idx = bs.active_index()
    g = _levels(level, idx)
    z = _draws(rng, idx.size, 4, normal=True)
    z *= g if np.ndim(g) == 0 else np.asarray(g)[:, None]
    cx, cy, w, h = bs.sizes(idx)
    return _moved(bs, idx, g, from_centre(cx + w * z[:, 0], cy + h * z[:, 1], w * np.exp(z[:, 2]),
                                          h * np.exp(z[:, 3])))


@noise_model("shift")
def shift(bs: BoxSet, level, rng):
    """Position only: the uniform centre shift with the size kept, to separate where-errors from how-big-errors."""
    idx = bs.active_index()
    g = _levels(level, idx)
    u = _scaled(_draws(rng, idx.size, 2), g)
    cx, cy, w, h = bs.sizes(idx)
    return _moved(bs, idx, g, from_centre(cx + w * u[:, 0], cy + h * u[:, 1], w, h))


@noise_model("scale")
def scale(bs: BoxSet, level, rng):
    """Size only: w*(1+U(-g,g)), h*(1+U(-g,g)) about a fixed centre, the other half of the uniform protocol."""
    idx = bs.active_index()
    g = _levels(level, idx)
    u = _scaled(_draws(rng, idx.size, 2), g)
    cx, cy, w, h = bs.sizes(idx)
    return _moved(bs, idx, g, from_centre(cx, cy, w * (1 + u[:, 0]), h * (1 + u[:, 1])))


@noise_model("bias")
def bias(bs: BoxSet, level, rng, direction: str = "grow", dx: float = 0.0, dy: float = 0.0):
    """Systematic error, the same for every box: boxes drawn too large (grow) or too tight (shrink) by `level`.

    Optionally off-centre by dx*level*w, dy*level*h. Draws nothing."""
    if direction not in ("grow", "shrink"):
        raise BenchError(f"bias: direction must be 'grow' or 'shrink', got {direction!r}")
    for name, v in (("dx", dx), ("dy", dy)):
        if not isinstance(v, (int, float)) or not math.isfinite(v) or abs(v) > 1:
            raise BenchError(f"bias: {name} must be a number in [-1, 1], got {v!r}")
    idx = bs.active_index()
    g = _levels(level, idx)
    factor = 1 + g if direction == "grow" else 1 - g
    cx, cy, w, h = bs.sizes(idx)
    return _moved(bs, idx, g, from_centre(cx + dx * g * w, cy + dy * g * h, w * factor, h * factor))


PER_CLASS_BASES = ("uniform", "gaussian", "shift", "scale")


@noise_model("per_class")
def per_class(bs: BoxSet, level, rng, strength: dict | None = None, base: str = "uniform"):
    """Strength per category (level x strength[class], default 1): some classes are harder to box than others.

    `strength` maps category names or ids to multipliers; `base` is the geometric model applied."""
    if base not in PER_CLASS_BASES:
        raise BenchError(f"per_class: base must be one of {', '.join(PER_CLASS_BASES)}, got {base!r}")
    strength = strength or {}
    if not isinstance(strength, dict):
        raise BenchError("per_class: strength must be a mapping {category name or id: multiplier}")
    names = bs.category_names
    by_id: dict[int, float] = {}
    known = {str(int(c)): int(c) for c in bs.category_ids}
    known.update({str(n): int(c) for c, n in names.items()})
    for key, mult in strength.items():
        if str(key) not in known:
            raise BenchError(f"per_class: unknown category {key!r} in strength (known: {', '.join(sorted(known))})")
        if not isinstance(mult, (int, float)) or not math.isfinite(mult) or mult < 0:
            raise BenchError(f"per_class: strength for {key!r} must be a number >= 0, got {mult!r}")
        by_id[known[str(key)]] = float(mult)
    idx = bs.active_index()
    cats = bs.category[idx]
    mult = np.ones(idx.size)
    for cid, m in by_id.items():
        mult[cats == cid] = m
    g = float(level) * mult
    if g.size and g.max() >= 1:
        raise BenchError(f"per_class: level {level} x strength {mult.max():g} = {g.max():g} must stay below 1")
    return globals()[base](bs, g, rng)
