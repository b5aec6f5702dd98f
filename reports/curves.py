"""Training curves of a sweep group: every cell's `train/scalars.csv`, pooled over seeds.

Loss terms and learning rate are the engine's; every other column is a method diagnostic (OA-MIL's best-instance
confidence, SSD-Det's bag IoUs, ...), so a method that adds a diagnostic gets its curve without touching reports.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmark.errors import BenchError
from benchmark.scalars import FIRST_COLUMNS, read_scalars
from reports.analysis import Skips
from reports.store import PATH_COLUMN

KEYS = ["method", "noise_level", "scalar", "iteration"]


def is_loss(name: str) -> bool:
    return name == "loss" or name.startswith("loss_")


def training_curves(g: pd.DataFrame, skips: Skips) -> pd.DataFrame:
    """Long frame: method, noise_level, seed, iteration, scalar, value — one row per cell, iteration and scalar."""
    frames = []
    for row in g.itertuples(index=False):
        path = Path(getattr(row, PATH_COLUMN)) / "train" / "scalars.csv"
        try:
            rows = read_scalars(path)
        except BenchError as exc:
            skips.add(f"training curves skipped ({exc})", path.parent.parent.name)
            continue
        if not rows:
            continue
        wide = pd.DataFrame(rows)
        long = wide.melt(id_vars=["iteration"], value_vars=[c for c in wide if c not in FIRST_COLUMNS or c == "lr"],
                         var_name="scalar", value_name="value").dropna(subset=["value"])
        frames.append(long.assign(method=row.method, noise_level=float(row.noise_level), seed=row.seed))
    if not frames:
        return pd.DataFrame(columns=[*KEYS, "seed", "value"])
    return pd.concat(frames, ignore_index=True)


def pooled(curves: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and number of seeds per method, level, scalar and iteration (std NaN for a single seed)."""
    if curves.empty:
        return pd.DataFrame(columns=[*KEYS, "mean", "std", "n"])
    out = curves.groupby(KEYS, sort=False)["value"].agg(["mean", "std", "count"]).reset_index()
    return out.rename(columns={"count": "n"}).sort_values(KEYS, kind="stable", ignore_index=True)
