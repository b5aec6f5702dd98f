"""Leaderboard row schema (version 1) and its validation.

One JSON file per (method, dataset, noise model, noise level, backbone/profile). Metrics are AP points (percent,
as the papers print them). `reported` holds the paper's claim with its source table; `reproduced` holds what this
suite measured (mean ± std over n seeds, the results-store cells it came from). Either may be null, not both.
A reproduced std is null for a single seed (older rows with std 0 and n 1 stay valid and render the same way).
Fractions where points belong are refused: a block whose values all lie in [0, 1] (one above 0), or AP below AP50 / 10
(impossible in one unit). Strings hold no control characters (a NUL breaks file names and every renderer).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from benchmark.errors import BenchError
from benchmark.evaluation.metrics import metric_names

SCHEMA_VERSION = 1
RNG_MODES = ("numpy", "oamil-legacy", "none", "unknown")
REQUIRED: dict[str, type] = {
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
OPTIONAL: dict[str, Any] = {"code": str, "profile": str, "reported": (dict, type(None)), "reproduced": (dict, type(None)),
            "notes": str, "runnable": bool, "run_method": str}


class RowError(BenchError, ValueError):
    """A leaderboard row that does not follow the schema; the message names the file and the field.

    A `BenchError`, so the CLI prints it as one line instead of a traceback."""


def _looks_like_fractions(values: dict[str, Any]) -> bool:
    """Every value in [0, 1] and one above 0: fractions (results-store style, 0.748) where AP points (74.8) belong.
    A real detector under 1 AP point on every metric it reports has no place on a leaderboard, so the rule refuses
    no honest row; all zeros stay valid (a detector that found nothing)."""
    nums = [v for v in values.values() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return bool(nums) and all(0 <= v <= 1 for v in nums) and any(v > 0 for v in nums)


def _mixed_units(means: dict) -> str | None:
    """A fraction among points: COCO AP is the mean of AP at 10 IoU thresholds, 0.5 and 0.75 among them, so it is
    never below AP50 / 10 or AP75 / 10 (0.1 of slack for one-decimal rounding)."""
    ap: Any = means.get("AP")
    if not _plain_number(ap):
        return None
    for other in ("AP50", "AP75"):
        v: Any = means.get(other)
        if _plain_number(v) and ap + 0.1 < v / 10:
            return (f"AP {ap!r} is below {other} / 10 ({other} {v!r}), which cannot be: AP averages {other} with 9 "
                    "other IoU thresholds; a fraction among AP points?")
    return None


def _plain_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _metric_block(block: Any, where: str, errors: list[str], stats: bool) -> None:
    if not isinstance(block, dict) or not block:
        errors.append(f"{where}: must be a non-empty object of metrics")
        return
    means = {k: (v.get("mean") if isinstance(v, dict) else v) for k, v in block.items()} if stats else dict(block)
    if _looks_like_fractions(means):
        shown = ", ".join(f"{k} {v!r}" for k, v in means.items())
        errors.append(f"{where}: every value lies in [0, 1] ({shown}): these look like fractions; the leaderboard "
                      "stores AP points (x100, e.g. 74.8 for 0.748)")
    elif (mixed := _mixed_units(means)) is not None:
        errors.append(f"{where}: {mixed}")
    known = metric_names(leaderboard=True)  # the registry's leaderboard metrics (`benchmark.evaluation.metrics`)
    for name, value in block.items():
        if name not in known:
            errors.append(f"{where}.{name}: unknown metric (known: {', '.join(known)})")
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


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # tab and newline stay allowed in free text
_NAME_FIELDS = ("method", "dataset", "test_split", "backbone", "profile")  # they become file and table names


def _text_errors(value: Any, where: str, errors: list[str]) -> None:
    """Control characters in any string of the row (a NUL breaks the file name and every renderer); in the
    fields that name the row's file, tabs and newlines too."""
    if isinstance(value, dict):
        for k, v in value.items():
            _text_errors(k, f"{where}{'.' if where else ''}{k}", errors)
            _text_errors(v, f"{where}{'.' if where else ''}{k}", errors)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _text_errors(v, f"{where}[{i}]", errors)
    elif isinstance(value, str):
        strict = where in _NAME_FIELDS or where == "noise.model"
        bad = re.search(r"[\x00-\x1f\x7f]", value) if strict else _CONTROL.search(value)
        if bad:
            errors.append(f"{where}: contains the control character {bad.group()!r}")


def row_errors(row: Any) -> list[str]:
    """Every schema problem of one row, as 'field: problem' strings (empty list = valid)."""
    if not isinstance(row, dict):
        return ["row: must be a JSON object"]
    errors: list[str] = []
    _text_errors(row, "", errors)
    if errors:
        return errors
    for key, typ in REQUIRED.items():
        if key not in row:
            errors.append(f"{key}: missing")
        elif not isinstance(row[key], typ) or isinstance(row[key], bool):
            errors.append(f"{key}: must be {typ.__name__}")
    for key in set(row) - set(REQUIRED) - set(OPTIONAL):
        errors.append(f"{key}: unknown field")
    for key, optional_type in OPTIONAL.items():
        if key in row and not isinstance(row[key], optional_type):
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
