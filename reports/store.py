"""Read access to a results store for the reports: the cell table and each cell's files.

The cell table is the runner's (`benchmark.results.load`). Everything else a report needs from a cell (noisy
training annotations, manifest, refined boxes, predictions, environment) is read here, lazily, so a missing
optional file costs one counted skip, not the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.errors import BenchError
from benchmark.evaluation.metrics import metric_names
from benchmark.io import dumps_json, read_json

PATH_COLUMN = "path"  # the cell directory


def dataset_spec(config: dict) -> str | None:
    """The dataset spec a cell was run with (the runner's `locator`), else the dataset's catalog name."""
    spec = (config.get("locator") or {}).get("dataset_spec") or (config.get("dataset") or {}).get("name")
    return spec if isinstance(spec, str) else None


def load_cells(store: str | Path) -> pd.DataFrame:
    """One row per finished and intact cell (`benchmark.results.load`), with the cell directory as `path`.

    Cells with a DONE marker that the results table leaves out (corrupt: `benchmark.store_layout.done_problem`, the
    check `bench run` redoes them by) are listed in `frame.attrs["unloaded"]` as (cell, label or None, problem,
    whether `bench run` redoes it) and their ids in `frame.attrs["corrupt"]`, and cells that are not done (failed,
    half-run, running)
    in `frame.attrs["unfinished"]` as (cell, label, status, one-line error or None), so the report can say so.
    """
    from benchmark.results import left_out, load

    store = Path(store)
    frame = normalise(load(store))  # raises for a folder that is no results store
    unread, unfinished = left_out(store, frame)
    frame.attrs["corrupt"] = unread
    if frame.empty:
        raise BenchError(f"no finished cells{_why_none(store, unfinished, unread)}", store / "cells")
    frame.attrs["unloaded"] = [unloaded_cell(store / "cells" / cid) for cid in unread]
    frame.attrs["unfinished"] = [unfinished_cell(store / "cells" / cid) for cid in unfinished]
    return frame


def _why_none(store: Path, unfinished_ids: list[str], corrupt_ids: list[str] = ()) -> str:
    """What the store holds instead, in a few words: `(2 failed, 1 running; e.g. cell ab12cd34 (ssd_det noise 0.4):
    CUDA out of memory)`, or the empty-store hint."""
    from collections import Counter

    unfinished = [unfinished_cell(store / "cells" / cid) for cid in unfinished_ids]
    if not unfinished and not corrupt_ids:
        return " (no cells/*/DONE)"
    counts = Counter(status for _, _, status, _ in unfinished)
    counts.update({"corrupt": len(corrupt_ids)} if corrupt_ids else {})
    text = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    failed = next(((cid, name, err) for cid, name, status, err in unfinished if err), None)
    if failed is not None:
        cid, name, err = failed
        first = " ".join(err.split())[:160]
        text += f"; e.g. cell {cid[:8]} ({name}): {first}"
    return f" ({text}; `bench run` with the same options reruns them)"


def unloaded_cell(d: Path) -> tuple[str, str | None, str, bool]:
    """(cell, label or None, problem, redone by `bench run`) of a DONE cell the results table left out."""
    from benchmark import store_layout as layout

    return d.name, _label(d), left_out_problem(d), layout.done_problem(d) is not None


def _label(d: Path) -> str | None:
    from benchmark.store_layout import label

    try:
        return label(read_json(d / "config.json"))
    except (BenchError, KeyError, TypeError, AttributeError, ValueError):  # any config.json a user may have edited
        return None


def left_out_problem(d: Path) -> str:
    """Why `benchmark.results` leaves a DONE cell out of the table (`read_cell`, the table's own checks)."""
    from benchmark.results import read_cell

    return read_cell(d)[1] or "left out by the results table (its files read fine now)"


def unfinished_cell(d: Path) -> tuple[str, str, str, str | None]:
    """(cell, label, status, error) of a cell directory without DONE: what a sweep left failed, half-run or
    running."""
    from benchmark import store_layout as st

    status = st.file_status(d)  # a claim or queued record taken at its word: whether it is alive is the runner's
    error = None
    if status == st.FAILED_S:
        try:
            error = str(read_json(d / st.FAILED).get("error") or "") or None
        except (BenchError, AttributeError):
            error = None
    name = _label(d) or "unreadable config.json"
    return d.name, name, status, error


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """The results table with the cell directory as `path`, numeric metrics (NaN where absent), text labels."""
    frame = frame.copy()
    frame[PATH_COLUMN] = frame["cell_dir"].astype(str)
    for col in metric_names():  # every registered metric (`benchmark.evaluation.metrics`)
        frame[col] = pd.to_numeric(frame[col], errors="coerce") if col in frame else np.nan
    frame["noise_level"] = pd.to_numeric(frame["noise_level"], errors="coerce").fillna(0.0)
    for col in ("method", "dataset", "noise_model", "profile"):
        frame[col] = frame[col].fillna("").astype(str)
    return frame


@dataclass
class Cell:
    """Lazy access to one cell directory's files (missing optional files read as None).

    Small files are parsed once and kept; the large ones (noisy training set, refined boxes, predictions: hundreds
    of MB for COCO) are parsed on every access and never kept, so a report's memory does not grow with the sweep.
    An optional file that cannot be read or has the wrong shape (`benchmark.store_layout.CONTENT_CHECKS`: the store
    check parses files up to its size limit, this one any size) also reads as None, with the reason in `problems`
    for the report's Skipped list: one bad file costs its analyses, never the report.
    """

    path: Path
    _cache: dict = field(default_factory=dict, repr=False)
    problems: dict = field(default_factory=dict, repr=False)  # file -> why it was read as None

    def _json(self, rel: str, required: bool = False, keep: bool = True):
        from benchmark import store_layout as layout

        if rel in self._cache:
            return self._cache[rel]
        p = self.path / rel
        if not p.is_file():
            if required:
                raise BenchError("file not found", p)
            value = None
        elif required or rel not in layout.CONTENT_CHECKS:
            value = read_json(p)
        else:
            try:
                value = layout.read_checked(p, rel)
            except BenchError as exc:
                msg = str(exc)[len(exc.path) + 2:] if exc.path and str(exc).startswith(exc.path) else str(exc)
                self.problems[rel] = msg if msg.startswith(rel) else f"{rel}: {msg}"
                value = None
                keep = True  # known bad: do not parse it again
        if keep:
            self._cache[rel] = value
        return value

    @property
    def config(self) -> dict:
        return self._json("config.json", required=True)

    @property
    def env(self) -> dict | None:
        return self._json("env.json")

    @property
    def metrics(self) -> dict | None:
        return self._json("metrics.json")

    @property
    def noisy_train(self) -> dict | None:
        """COCO dict of the noisy training annotations (`bbox` noisy, `true_bbox` clean)."""
        return self._json("noise/train.json", keep=False)

    @property
    def manifest(self) -> dict | None:
        return self._json("noise/manifest.json")

    @property
    def refined_boxes(self) -> list[dict] | None:
        return self._json("refined_boxes.json", keep=False)

    @property
    def predictions(self) -> list[dict] | None:
        return self._json("predictions.json", keep=False)

    def noise_key(self) -> str:
        """Identity of the noisy training set: cells with the same dataset and noise settings share it."""
        cfg = self.config
        return dumps_json({"dataset": cfg.get("dataset"), "noise": cfg.get("noise")}).decode()


class CellCache:
    """One `Cell` per directory for the duration of a report, so each small JSON file is parsed once."""

    def __init__(self):
        self._cells: dict[str, Cell] = {}

    def __call__(self, path: str | Path) -> Cell:
        key = str(path)
        if key not in self._cells:
            self._cells[key] = Cell(Path(path))
        return self._cells[key]

    def problems(self) -> list[tuple[str, str]]:
        """(cell id, why one of its files was read as None) for every bad file met so far."""
        return [(c.path.name, why) for c in self._cells.values() for why in c.problems.values()]
