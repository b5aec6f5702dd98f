"""Leaderboard row schema (version 1) and its validation.

One JSON file per (method, dataset, noise model, noise level, backbone/profile). Metrics are AP points (percent,
as the papers print them). `reported` holds the paper's claim with its source table; `reproduced` holds what this
suite measured (mean ± std over n seeds, the results-store cells it came from). Either may be null, not both.
A reproduced std is null for a single seed (older rows with std 0 and n 1 stay valid and render the same way).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from benchmark.errors import BenchError

SCHEMA_VERSION = 1
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100", "VOC_AP50")
RNG_MODES = ("numpy", "oamil-legacy", "none", "unknown")
REQUIRED = {
    "schema_version": int,
    "method": str,
    "method_name": str,
    "paper": dict,
    "dataset": str,
    "test_split": str,
    "noise": dict,
    "detector": str,
    "backbone": str,
    "schedule": str,
    "extra_supervision": str,
}
# `runnable`: the suite can reproduce the row with `bench run --method <run_method>` (the row's `method` unless
# `run_method` names the suite's adapter, e.g. `freeanchor` -> `free_anchor`, clean RetinaNet -> `retinanet_clean`)
OPTIONAL = {"code": str, "profile": str, "reported": (dict, type(None)), "reproduced": (dict, type(None)),
            "notes": str, "runnable": bool, "run_method": str}


class RowError(BenchError, ValueError):
    """A leaderboard row that does not follow the schema; the message names the file and the field.

    A `BenchError`, so the CLI prints it as one line instead of a traceback."""


def _metric_block(block: Any, where: str, errors: list[str], stats: bool) -> None:
    if not isinstance(block, dict) or not block:
        errors.append(f"{where}: must be a non-empty object of metrics")
        return
    for name, value in block.items():
        if name not in METRICS:
            errors.append(f"{where}.{name}: unknown metric (known: {', '.join(METRICS)})")
            continue
        if stats:
            if not isinstance(value, dict) or not {"mean", "std", "n"} <= set(value):
                errors.append(f"{where}.{name}: must be {{mean, std, n}}")
                continue
            n, std = value["n"], value["std"]
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                errors.append(f"{where}.{name}.n: must be an integer >= 1")
            if std is None:
                if n != 1:
                    errors.append(f"{where}.{name}.std: null only for a single seed (n = 1), got n = {n!r}")
            elif isinstance(std, bool) or not isinstance(std, (int, float)) or not math.isfinite(std) or std < 0:
                errors.append(f"{where}.{name}.std: must be a number >= 0 (or null when n = 1), got {std!r}")
            value = value["mean"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
            errors.append(f"{where}.{name}: must be a number of AP points in [0, 100], got {value!r}")


def row_errors(row: Any) -> list[str]:
    """Every schema problem of one row, as 'field: problem' strings (empty list = valid)."""
    if not isinstance(row, dict):
        return ["row: must be a JSON object"]
    errors: list[str] = []
    for key, typ in REQUIRED.items():
        if key not in row:
            errors.append(f"{key}: missing")
        elif not isinstance(row[key], typ) or isinstance(row[key], bool):
            errors.append(f"{key}: must be {typ.__name__}")
    for key in set(row) - set(REQUIRED) - set(OPTIONAL):
        errors.append(f"{key}: unknown field")
    for key, typ in OPTIONAL.items():
        if key in row and not isinstance(row[key], typ):
            errors.append(f"{key}: wrong type")
    if errors:
        return errors
    if row["schema_version"] != SCHEMA_VERSION:
        errors.append(f"schema_version: {row['schema_version']} is not supported (expected {SCHEMA_VERSION})")
    if not row["paper"].get("title"):
        errors.append("paper.title: missing")
    noise = row["noise"]
    if not isinstance(noise.get("model"), str):
        errors.append("noise.model: missing")
    level = noise.get("level")
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 <= level < 1:
        errors.append(f"noise.level: must be a number in [0, 1), got {level!r}")
    if noise.get("rng") not in RNG_MODES:
        errors.append(f"noise.rng: must be one of {', '.join(RNG_MODES)}")
    if "run_method" in row and (not row["run_method"] or row.get("runnable") is not True):
        errors.append("run_method: a non-empty adapter name, only on rows with runnable: true")
    reported, reproduced = row.get("reported"), row.get("reproduced")
    if reported is None and reproduced is None:
        errors.append("reported/reproduced: a row needs at least one of them")
    if reported is not None:
        if not reported.get("source"):
            errors.append("reported.source: missing (name the paper table)")
        _metric_block(reported.get("metrics"), "reported.metrics", errors, stats=False)
    if reproduced is not None:
        _metric_block(reproduced.get("metrics"), "reproduced.metrics", errors, stats=True)
        for key in ("cells", "suite_version", "hardware"):
            if key not in reproduced:
                errors.append(f"reproduced.{key}: missing")
        if not isinstance(reproduced.get("cells", []), list):
            errors.append("reproduced.cells: must be a list of results-store cell hashes")
        _seed_errors(reproduced, errors)
    return errors


def _seed_errors(reproduced: dict, errors: list[str]) -> None:
    """`seeds` (where a row lists them) are distinct integers, and no metric averages more seeds than listed."""
    seeds = reproduced.get("seeds")
    if seeds is None:
        return
    if not isinstance(seeds, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in seeds):
        errors.append("reproduced.seeds: must be a list of integer training seeds")
        return
    if len(set(seeds)) != len(seeds):
        errors.append(f"reproduced.seeds: a seed is listed twice ({seeds}): one training seed counted twice")
    for name, value in (reproduced.get("metrics") or {}).items():
        n = value.get("n") if isinstance(value, dict) else None
        if isinstance(n, int) and n > len(seeds):
            errors.append(f"reproduced.metrics.{name}.n: {n} seeds, but reproduced.seeds lists {len(seeds)}")


def validate_row(row: Any, path: str | Path = "<row>") -> dict:
    errors = row_errors(row)
    if errors:
        raise RowError(f"{path}: {errors[0]}" + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""))
    return row


def row_key(row: dict) -> tuple:
    """Identity of a row: one file per key."""
    return (row["dataset"], row["test_split"], row["noise"]["model"], float(row["noise"]["level"]),
            row["method"], row["backbone"], row.get("profile", "paper"))


def row_filename(row: dict) -> Path:
    """Relative path of a row: entries/<dataset>/<noise model>-<level>/<method>--<backbone>[--<split>][--<profile>].json"""
    lvl = f"{float(row['noise']['level']):.2f}".rstrip("0").rstrip(".") or "0"
    parts = [row["method"], row["backbone"]]
    if row["test_split"] not in ("val2017", "test", "val"):
        parts.append(row["test_split"])
    if row.get("profile", "paper") != "paper":
        parts.append(row["profile"])
    safe = "--".join(_portable(p) for p in parts)
    return Path(_portable(row["dataset"])) / _portable(f"{row['noise']['model']}-{lvl}") / f"{safe}.json"


def _portable(name: str) -> str:
    """One path component that works on every OS a pull request may come from: no separators, no `:` `*` `?`
    `"` `<` `>` `|` (Windows), no spaces (a dataset spec such as `shapes:train=16,size=64` becomes
    `shapes_train=16,size=64`)."""
    return "".join("-" if c in "/\\" else "_" if c in ':*?"<>| ' else c for c in name)
