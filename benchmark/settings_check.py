"""Checks for settings read from JSON (the report's, TIDE's, the failure modes'): each value must have its
default's type and a sensible range.

A wrong value is one `ValueError` naming the key, the value and what is expected (the config loader turns it into a
`BenchError`), never a traceback deep inside numpy or a string silently read character by character.
"""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, fields

INF = math.inf
UNIT = (0.0, 1.0)  # IoU / IoG / IoD thresholds and scores
NON_NEGATIVE = (0.0, INF)  # area ratios, counts, seeds
POSITIVE_COUNT = (1, INF)


def show(value) -> str:
    """The value as it would appear in the JSON file (shortened), so the user can find it."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bounds(bounds) -> str:
    lo, hi = bounds
    return f">= {lo:g}" if hi == INF else f"in [{lo:g}, {hi:g}]"


def _number(value, whole: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) if whole else math.isfinite(value)


def check(key: str, value, default, bounds=None, choices=None):
    """`value` checked against the type of `default` (a tuple default takes a JSON list of strings), `bounds`
    (inclusive) and `choices`; returns it in the default's type."""
    if isinstance(default, bool):
        ok, want = isinstance(value, bool), "true or false"
    elif isinstance(default, (int, float)):
        whole = isinstance(default, int)
        ok = _number(value, whole) and (bounds is None or bounds[0] <= value <= bounds[1])
        want = ("a whole number" if whole else "a number") + (f" {_bounds(bounds)}" if bounds else "")
        if ok and not whole:
            value = float(value)  # JSON `1` for a threshold of 1.0
    elif isinstance(default, str):
        ok = isinstance(value, str) and (choices is None or value in choices)
        want = f"one of {', '.join(choices)}" if choices else "a string"
    elif isinstance(default, tuple):
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value) \
            and (choices is None or set(value) <= set(choices))
        want = "a list of strings" + (f" from: {', '.join(choices)}" if choices else "")
        value = tuple(value) if ok else value
    else:
        raise TypeError(f"no check for settings like {key} (default {default!r})")
    if not ok:
        raise ValueError(f"{key} is {show(value)}, expected {want}")
    return value


def checked(cls, d, what: str, prefix: str = "", ranges=None, choices=None) -> dict:
    """The settings in `d` for dataclass `cls`, each checked against its field's default; unknown keys, or a `d`
    that is not a JSON object, are a `ValueError` too."""
    if not isinstance(d, dict):
        raise ValueError(f"{prefix.rstrip('.') or 'the config'} is {show(d)}, expected a JSON object of {what} "
                         "settings")
    defaults = {f.name: f.default for f in fields(cls)}
    unknown = sorted(set(d) - set(defaults))
    if unknown:
        raise ValueError(f"unknown {what} setting(s) {unknown} (known: {sorted(defaults)})")
    ranges, choices = ranges or {}, choices or {}
    out = {}
    for k, v in d.items():
        if defaults[k] is MISSING:
            raise TypeError(f"{cls.__name__}.{k} has no plain default to check against; check it by hand")
        out[k] = check(f"{prefix}{k}", v, defaults[k], ranges.get(k), choices.get(k))
    return out
