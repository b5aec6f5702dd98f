"""Per-cell analyses behind the report, each a function from cell files to a tidy frame.

They read only the results store (and, for test ground truth and image files, the dataset through
`benchmark.datasets.load`). A cell that lacks an input (no refined boxes, no predictions, dataset unavailable)
is skipped with its reason recorded in `Skips`, which the report prints.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.boxes import AXES, paired_iou, relative_error, xywh_to_xyxy
from benchmark.datasets.core import is_ignored
from benchmark.errors import BenchError
from benchmark.evaluation.failure_modes import (
    FailureModeConfig,
    classify_detections,
    classify_training,
    sensitivity,
    training_boxes,
)
from benchmark.evaluation.tide import TideConfig, decomposition_rows
from reports.store import Cell, CellCache, dataset_spec

NOISY_INPUT = "noisy input"  # pseudo-method: the noisy training boxes themselves, classified like refined boxes


@dataclass
class Skips:
    """Counted, reported skips: reason -> cell ids."""

    reasons: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, reason: str, cell: str) -> None:
        self.reasons[reason].append(cell)

    def lines(self) -> list[str]:
        return [f"{len(cells)} cell(s): {reason}" for reason, cells in sorted(self.reasons.items())]


class Datasets:
    """Loads each dataset spec once per report (test GT for TIDE / detections, image roots for galleries)."""

    def __init__(self):
        self._splits: dict[str, dict | BenchError] = {}
        self._test: dict[str, tuple[str, dict]] = {}

    def splits(self, cell: Cell) -> dict:
        spec = dataset_spec(cell.config)
        if spec is None:
            raise BenchError("config.json names no dataset spec", cell.path / "config.json")
        if spec not in self._splits:
            try:
                from benchmark.datasets import load

                self._splits[spec] = load(spec)
            except BenchError as exc:
                self._splits[spec] = exc
            except Exception as exc:  # noqa: BLE001 -- any loader failure is one reported skip, not a crash
                self._splits[spec] = BenchError(f"cannot load dataset ({type(exc).__name__}: {exc})", spec)
        got = self._splits[spec]
        if isinstance(got, BenchError):
            raise got
        return got

    def test_gt(self, cell: Cell) -> dict:
        """The clean test split as a COCO dict, checked against the fingerprint the cell was run with."""
        spec = dataset_spec(cell.config)
        if spec not in self._test:
            test = self.splits(cell)["test"]
            self._test[spec] = (test.fingerprint(), test.to_coco())
        fingerprint, coco = self._test[spec]
        want = (cell.config.get("dataset") or {}).get("test_sha256")
        if want and fingerprint != want:
            raise BenchError("the test split changed since this cell ran (sha256 differs)", spec)
        return coco

    def image_path(self, cell: Cell, split: str, image: dict) -> Path | None:
        try:
            return self.splits(cell)[split].image_path(image)
        except (BenchError, KeyError):
            return None


def _counted(a: dict) -> bool:
    """The boxes realised-noise figures are over, as in `bench noise stats` and the manifest: crowd / difficult
    boxes are never perturbed and would only pull the mean IoU towards 1 (the failure modes leave them out too)."""
    return not is_ignored(a)


def realised_ious(noisy_train: dict) -> np.ndarray:
    """IoU(noisy box, clean box) of every counted annotation that has both (boxes the noise added have no clean
    box)."""
    anns = [a for a in noisy_train.get("annotations", []) if _counted(a)]
    pairs = [(a["bbox"], a["true_bbox"]) for a in anns if a.get("true_bbox") is not None]
    if not pairs:
        return np.ones(len(anns))  # untouched set: noisy == clean
    noisy, clean = zip(*pairs)
    return paired_iou(xywh_to_xyxy(noisy), xywh_to_xyxy(clean))


def refined_ious(noisy_train: dict, refined: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(IoU(noisy, clean), IoU(refined, clean)) over the counted annotations that have a clean and a refined box."""
    by_id = {int(r["id"]): r["bbox"] for r in refined}
    rows = [(a["bbox"], a["true_bbox"], by_id[int(a["id"])]) for a in noisy_train.get("annotations", [])
            if _counted(a) and a.get("true_bbox") is not None and int(a["id"]) in by_id]
    if not rows:
        return np.zeros(0), np.zeros(0)
    noisy, clean, ref = (xywh_to_xyxy(list(x)) for x in zip(*rows))
    return paired_iou(noisy, clean), paired_iou(ref, clean)


def box_errors(noisy_train: dict, refined: list[dict]) -> pd.DataFrame:
    """Per counted annotation with a clean and a refined box: IoU with the clean box and the error along each of
    `benchmark.boxes.AXES`, for the noisy box (`source` "noisy") and the refined one ("refined"). Boxes without a
    log size ratio (degenerate) are left out."""
    frame = training_boxes(noisy_train, refined)
    if frame.empty:
        return pd.DataFrame(columns=["source", "iou", *AXES])
    clean = xywh_to_xyxy(frame["clean"].tolist())
    parts = []
    for source, column in (("noisy", "noisy"), ("refined", "candidate")):
        boxes = xywh_to_xyxy(frame[column].tolist())
        err, valid = relative_error(boxes, clean)
        part = pd.DataFrame(err, columns=list(AXES)).assign(source=source, iou=paired_iou(boxes, clean))
        parts.append(part[valid])
    return pd.concat(parts, ignore_index=True)[["source", "iou", *AXES]]


def box_error_table(errors: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean IoU, then bias (mean) and spread (std) of each axis error in % of the clean box, per `by` + source."""
    rows = []
    for key, g in errors.groupby([*by, "source"], sort=True):
        row = dict(zip([*by, "boxes"], key))
        row.update({"n": len(g), "IoU": g["iou"].mean()})
        for axis in AXES:
            row[f"{axis} bias %"] = 100 * g[axis].mean()
            row[f"{axis} spread %"] = 100 * g[axis].std(ddof=0)
        rows.append(row)
    return pd.DataFrame(rows)


def _identity(row) -> dict:
    return {"method": row.method, "noise_level": row.noise_level, "seed": row.seed, "source_cell": row.cell,
            "path": row.path}


BOX_COLUMNS = ("clean", "noisy", "candidate")  # dropped from the pooled frames; galleries re-read the few they draw


def _compact(frame: pd.DataFrame, ident: dict) -> pd.DataFrame:
    return frame.drop(columns=[c for c in BOX_COLUMNS if c in frame]).assign(**ident)


def training_failure_modes(cells: pd.DataFrame, cache: CellCache, cfg: FailureModeConfig, grid: dict,
                           skips: Skips) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Classified refined training boxes of every cell that has them, plus the noisy input once per noisy set,
    and their sensitivity rates over `grid` (each cell's files are read once for both)."""
    frames, sens, seen = [], [], set()
    for row in cells.itertuples(index=False):
        cell = cache(row.path)
        noisy = cell.noisy_train
        if noisy is None:
            if row.noise_level > 0:  # clean-box cells have no noisy training set, by design
                skips.add("no noise/train.json: training-box analyses skipped", row.cell)
            continue
        runs = []
        if cell.noise_key() not in seen:
            seen.add(cell.noise_key())
            runs.append((NOISY_INPUT, None))
        refined = cell.refined_boxes
        if refined is not None:
            runs.append((row.method, refined))
        for method, ref in runs:
            f = classify_training(noisy, ref, cfg)
            if f.attrs.get("without_refined_box"):
                skips.add("refined_boxes.json lacks some training annotations (left out of the refined-box rates)",
                          row.cell)
            ident = _identity(row) | {"method": method}
            frames.append(_compact(f, ident))
            sens.append(sensitivity(lambda c, r=ref, n=noisy: classify_training(n, r, c), cfg, grid).assign(**ident))
    return _concat(frames), _concat(sens)


def detection_failure_modes(cells: pd.DataFrame, cache: CellCache, datasets: Datasets, cfg: FailureModeConfig,
                            grid: dict, skips: Skips) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Classified test detections of every cell, and their sensitivity rates over `grid`."""
    frames, sens = [], []
    for row in cells.itertuples(index=False):
        cell = cache(row.path)
        preds = cell.predictions
        if preds is None:
            skips.add("no predictions.json: detection analyses skipped", row.cell)
            continue
        try:
            gt = datasets.test_gt(cell)
        except BenchError as exc:
            skips.add(f"test ground truth unavailable ({exc}): detection analyses skipped", row.cell)
            continue
        ident = _identity(row)
        frames.append(_compact(classify_detections(gt, preds, cfg), ident))
        sens.append(sensitivity(lambda c, g=gt, p=preds: classify_detections(g, p, c), cfg, grid).assign(**ident))
    return _concat(frames), _concat(sens)


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def tide_rows(cells: pd.DataFrame, cache: CellCache, datasets: Datasets, cfg: TideConfig, sizes, styles,
              iou_range: bool, progress=None) -> pd.DataFrame:
    frames = []
    for row in cells.itertuples(index=False):
        cell = cache(row.path)
        preds = cell.predictions
        if progress is not None:
            progress.update(1)
        if preds is None:
            continue  # already counted by detection_failure_modes
        try:
            gt = datasets.test_gt(cell)
        except BenchError:
            continue
        f = decomposition_rows(gt, preds, cfg, sizes=sizes, styles=styles, iou_range=iou_range)
        frames.append(f.assign(**_identity(row)))
    return _concat(frames)


def _scalars(d: dict, prefix: str = "", depth: int = 1) -> dict:
    """Flatten a JSON object to its scalar leaves (lists shown by length), `depth` levels of nesting deep."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            if depth > 0:
                out |= _scalars(v, f"{key}.", depth - 1)
        elif isinstance(v, list):
            out[f"{key} (n)"] = len(v)
        else:
            out[key] = v
    return out


def noise_summary(cells: pd.DataFrame, cache: CellCache, skips: Skips) -> tuple[pd.DataFrame, dict[float, np.ndarray]]:
    """One row per distinct noisy training set: realised IoU stats + the manifest's scalar fields."""
    rows, by_level, seen = [], defaultdict(list), set()
    for row in cells.itertuples(index=False):
        cell = cache(row.path)
        noisy = cell.noisy_train
        if noisy is None:
            continue
        key = cell.noise_key()
        if key in seen:
            continue
        seen.add(key)
        ious = realised_ious(noisy)
        by_level[float(row.noise_level)].append(ious)
        noise = cell.config.get("noise") if isinstance(cell.config.get("noise"), dict) else {}
        r = {"noise_level": row.noise_level, "noise_seed": noise.get("seed"), "rng": noise.get("rng"),
             "boxes": len(ious), "mean IoU": float(ious.mean()) if len(ious) else np.nan,
             "IoU<0.5 %": 100.0 * float(np.mean(ious < 0.5)) if len(ious) else np.nan,
             "IoU<0.75 %": 100.0 * float(np.mean(ious < 0.75)) if len(ious) else np.nan}
        manifest = cell.manifest
        if manifest is None:
            skips.add("no noise/manifest.json (noise summary without manifest fields)", row.cell)
        elif isinstance(manifest, dict):
            r |= {f"manifest: {k}": v for k, v in _scalars(manifest, depth=2).items()}
        rows.append(r)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame = frame.sort_values(["noise_level", "noise_seed"], key=lambda s: s.astype(str)).reset_index(drop=True)
    return frame, {lv: np.concatenate(v) for lv, v in by_level.items()}


def environment(cells: pd.DataFrame, cache: CellCache) -> pd.DataFrame:
    """One row per cell: identity plus the scalar fields of env.json (packages, commit, device)."""
    rows = []
    for row in cells.itertuples(index=False):
        env = cache(row.path).env
        r = {"cell": row.cell, "method": row.method, "noise_level": row.noise_level, "seed": row.seed}
        if isinstance(env, dict):
            r |= _scalars(env, depth=1)
        rows.append(r)
    return pd.DataFrame(rows)
