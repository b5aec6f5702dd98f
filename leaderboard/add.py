"""Turn finished sweeps (a results store) into reproduced leaderboard rows.

Cells are grouped by (method, dataset, noise model, level, rng, profile); each group becomes the `reproduced`
block of one row (mean ± std over seeds, in AP points, with the cell hashes). An existing row with the same key —
typically the paper-reported one — gets its `reproduced` block filled if its noise was drawn the same way
(`noise.rng`; else the group is written apart, its method tagged `[noise rng …]`); otherwise a new row is written.
Without `--test-split`, a row takes the one local evaluation split the dataset's rows use (`val2017` for
`coco2017`), so a `bench reproduce` store lands beside the paper's numbers with no options.

A half-finished store must not quietly undo a complete one: an existing `reproduced` block is kept (with one warning
line per row) when the new one would hold fewer seeds, or fewer seeds for one of its metrics, or drop a metric it
had; `replace=True` (`bench leaderboard add --replace`) accepts the downgrade. A block with at least as many seeds —
more seeds, or a rerun with the same number — replaces the old one as before. With one seed, std is null: a spread
over one value is not a measured zero.
"""

from __future__ import annotations

import platform
from pathlib import Path

import pandas as pd

from benchmark import __version__
from benchmark.errors import BenchError
from benchmark.evaluation import metrics as registry
from benchmark.results import base_method
from leaderboard.rows import ENTRIES, load_rows, write_row
from leaderboard.schema import SCHEMA_VERSION, row_key

LOCAL_SPLITS = ("test", "val", "val2017")  # evaluation splits with public labels (row_filename's default ones)

PROFILE_BACKBONE = {"paper": "R50-FPN", "fair": "R50-FPN", "cpu": "tiny-FPN"}
CORE_DETECTOR = {"two_stage": "Faster R-CNN", "one_stage": "RetinaNet"}  # `benchmark.results`' detector column
# the suite's oracles have no paper row to take a name from
ORACLE_NAMES = {"clean": "Oracle (Faster R-CNN, clean boxes)", "retinanet_clean": "Oracle (RetinaNet, clean boxes)"}
EXTERNAL = "unknown (external run)"  # cells from `bench run --external`: the suite did not train the detector
# stored precision (AP points): rendering at one decimal from two stored ones rounds twice (12.147 -> 12.15 -> 12.2)
DECIMALS = 4


def _reproduced(group: pd.DataFrame, hardware: str) -> dict:
    """Mean ± std over the group's seeds, in AP points; std is None for a single seed (no spread was measured)."""
    metrics = {}
    for m in registry.metric_names(leaderboard=True):
        if m in group and group[m].notna().any():
            vals = group[m].dropna().astype(float) * registry.scale(m)
            metrics[m] = {"mean": round(float(vals.mean()), DECIMALS),
                          "std": round(float(vals.std(ddof=1)), DECIMALS) if len(vals) > 1 else None,
                          "n": int(len(vals))}
    return {"metrics": metrics, "cells": sorted(str(c) for c in group["cell"]), "suite_version": __version__,
            "hardware": hardware, "seeds": sorted(int(s) for s in group["seed"])}


def rows_from_results(df: pd.DataFrame, dataset_name: str | None = None, test_split: str | None = None,
                      existing: list[dict] | None = None, notes: list[str] | None = None) -> list[dict]:
    """Reproduced rows for every group of done cells in `df` (the tidy table of `benchmark.results.load`).

    A group fills the existing row of its key only when both drew their noise the same way (`noise.rng`); see
    `_match_names`. `notes` (if given) collects a line for each group kept apart from a row for that reason."""
    need = {"method", "dataset", "noise_model", "noise_level", "seed", "profile", "cell"}
    missing = need - set(df.columns)
    if missing:
        raise BenchError(f"results table lacks columns {sorted(missing)}")
    existing = existing or []
    by_key = {row_key(r): r for r in existing}
    meta = {r["method"]: r for r in existing}
    # the suite's adapter name -> the row's method name, where a paper row names the method otherwise
    alias = {r["run_method"]: r["method"] for r in existing if r.get("run_method")}
    df = df.copy()
    if "noise_rng" not in df:
        df["noise_rng"] = "numpy"
    hardware_col = "device" if "device" in df else None
    groups = []
    for (method, dataset, nmodel, level, rng, profile), group in df.groupby(
            ["method", "dataset", "noise_model", "noise_level", "noise_rng", "profile"], dropna=False):
        level = 0.0 if pd.isna(level) else float(level)
        method = alias.get(method, method)
        nmodel = "none" if level == 0 or pd.isna(nmodel) else str(nmodel)
        rng = "none" if level == 0 else (rng if rng in ("numpy", "oamil-legacy") else "unknown")
        name = dataset_name or Path(str(dataset)).name
        split = test_split or default_split(name, existing)
        groups.append((method, name, split, nmodel, level, rng, profile, group))
    names = _match_names(groups, by_key, notes)
    out = []
    for (_, name, split, nmodel, level, rng, profile, group), method in zip(groups, names):
        hardware = (", ".join(sorted(set(map(str, group[hardware_col])))) if hardware_col
                    else platform.processor() or platform.machine())
        template = meta.get(method, meta.get(base_method(method), {}))
        row = {
            "schema_version": SCHEMA_VERSION, "method": method,
            "method_name": template.get("method_name", _name(method)) + (
                f" [noise rng {rng}]" if method.endswith(f" [noise rng {rng}]") and method not in meta else ""),
            "paper": template.get("paper", {"title": method}),
            "dataset": name, "test_split": split,
            "noise": {"model": "uniform" if nmodel == "none" else nmodel, "level": level, "rng": rng},
            "detector": template.get("detector", _detector(group) if profile in PROFILE_BACKBONE else EXTERNAL),
            "backbone": PROFILE_BACKBONE.get(profile, EXTERNAL),
            "schedule": ("suite profile " + str(profile)) if profile in PROFILE_BACKBONE else EXTERNAL,
            "profile": str(profile),
            "extra_supervision": "clean boxes (oracle)" if base_method(method) == "clean" else "none",
            "reported": None, "reproduced": _reproduced(group, hardware),
        }
        if "code" in template:
            row["code"] = template["code"]
        match = by_key.get(row_key(row))
        if match is not None:
            merged = dict(match)
            merged["reproduced"] = row["reproduced"]
            row = merged
        out.append(row)
    return out


def _name(method: str) -> str:
    """A row's method name without a paper row to take it from: the oracles say what they are (variant tags kept)."""
    base = base_method(method)
    return ORACLE_NAMES[base] + method[len(base):] if base in ORACLE_NAMES else method


def _detector(group: pd.DataFrame) -> str:
    """The suite's detection core the group's cells trained (the results table's `detector` column: one-stage
    RetinaNet or two-stage Faster R-CNN; two-stage where the column is absent, as in older tables)."""
    cores = set(group["detector"].dropna().astype(str)) - {""} if "detector" in group else set()
    return " / ".join(sorted(CORE_DETECTOR.get(c, c) for c in cores)) or CORE_DETECTOR["two_stage"]


def default_split(dataset: str, existing: list[dict]) -> str:
    """The evaluation split of a reproduced row when none is given: the one local split (`test`, `val`,
    `val2017`: splits with labels, not a server's test-dev) the leaderboard's rows of that dataset use, so a
    `coco2017` sweep lands beside the paper's `val2017` rows; `test` otherwise."""
    local = {r["test_split"] for r in existing if r["dataset"] == dataset} & set(LOCAL_SPLITS)
    return local.pop() if len(local) == 1 else "test"


def _match_names(groups: list[tuple], by_key: dict, notes: list[str] | None) -> list[str]:
    """The `method` of each group's row. A results label tagged only with its noise rng (`faster_rcnn [noise rng
    oamil-legacy]`: `benchmark.results` tags it where the store also holds the method's default-rng or clean cells)
    loses the tag, which `noise.rng` states, so it meets the paper's `faster_rcnn` row. A group whose rng differs from
    the row already at its key (the paper's rows say `oamil-legacy`) gets the tag instead: filling that row would
    show the paper's boxes beside a number trained on others."""
    names: list = []
    owner: dict = {}
    for method, name, split, nmodel, level, rng, profile, _ in groups:
        plain = method.replace(f" [noise rng {rng}]", "") if rng not in ("none", "numpy") else method
        key = row_key({"dataset": name, "test_split": split, "method": plain, "profile": str(profile),
                       "noise": {"model": "uniform" if nmodel == "none" else nmodel, "level": level},
                       "backbone": PROFILE_BACKBONE.get(profile, EXTERNAL)})
        existing = by_key.get(key)
        taken = existing["noise"]["rng"] if existing is not None else owner.setdefault(key, rng)
        if taken != rng:
            tagged = f"{plain} [noise rng {rng}]"
            if notes is not None:
                notes.append(f"{plain} at level {level:g} on {name} drew its noise with rng {rng}, the row there "
                             f"with {taken}: written apart as `{tagged}` (bench reproduce draws with oamil-legacy)")
            names.append(tagged)
        else:
            names.append(plain)
    return names


def _n_seeds(block: dict) -> int:
    """Seeds behind a reproduced block: its `seeds` list, or (hand-written rows without one) the largest metric n."""
    return max([len(block.get("seeds") or [])] + [int(v["n"]) for v in block["metrics"].values()])


def downgrade(old: dict | None, new: dict) -> str | None:
    """Why replacing reproduced block `old` by `new` would lose measurements (None if it would not)."""
    if not old:
        return None
    had, has = _n_seeds(old), _n_seeds(new)
    if has < had:
        lost = sorted(set(old.get("cells", [])) - set(new["cells"]))
        return f"had n={had} seeds, would have n={has}" + (f" (cells missing: {', '.join(lost)})" if lost else "")
    for m, stats in old["metrics"].items():
        if m not in new["metrics"]:
            return f"{m} had n={stats['n']} seeds, would be missing"
        if new["metrics"][m]["n"] < stats["n"]:
            return f"{m} had n={stats['n']} seeds, would have n={new['metrics'][m]['n']}"
    return None


def _entries_folder(root: str | Path) -> Path:
    """The entries folder, created (parents included) so that a new leaderboard needs no mkdir first."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise BenchError("leaderboard entries path is not a folder", root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"cannot create the leaderboard entries folder ({exc.strerror or exc})", root) from None
    return root


def _not_in_rows(store: Path, df) -> list[str]:
    """A line on the store's cells the rows leave out (`benchmark.results.left_out`: corrupt cells, by the store's
    one check, and unfinished ones): their seeds are simply absent from the rows' n, so say so."""
    from benchmark.results import corrupt_line, left_out

    corrupt, unfinished = left_out(store, df)
    lines = []
    if corrupt:
        lines.append(f"{store}: {corrupt_line(corrupt)}; `bench report` says what changed in each")
    if unfinished:
        lines.append(f"{store}: {len(unfinished)} cell(s) are not finished (e.g. {unfinished[0]}) and are left out "
                     "of the rows")
    return lines


def add_results(store: str | Path, root: str | Path = ENTRIES, dataset_name: str | None = None,
                test_split: str | None = None, replace: bool = False) -> tuple[list[Path], list[str]]:
    """Write the store's reproduced rows into `root`; returns (paths written, warning lines: rows kept unchanged and
    cells of the store left out)."""
    from benchmark.results import load

    df = load(store)
    if df.empty:
        raise BenchError("no finished cells in the results store", store)
    root = _entries_folder(root)
    existing = {row_key(r): (p, r) for p, r in load_rows(root)}
    written, kept = [], _not_in_rows(Path(store), df)
    for row in rows_from_results(df, dataset_name, test_split, [r for _, r in existing.values()], notes=kept):
        path, old = existing.get(row_key(row), (None, {}))
        why = None if replace else downgrade(old.get("reproduced"), row["reproduced"])
        if why:
            kept.append(f"{path}: kept the existing reproduced block: {why}; pass --replace to accept")
            continue
        written.append(write_row(row, root))
    return written, kept
