"""Report settings (`ReportConfig`, loadable from JSON) and output formats."""

from __future__ import annotations

from dataclasses import dataclass, field

from benchmark.errors import BenchError
from benchmark.evaluation.failure_modes import RANGES as FM_RANGES
from benchmark.evaluation.failure_modes import FailureModeConfig
from benchmark.evaluation.tide import AREA_RANGES, STYLES, TideConfig
from benchmark.io import read_json
from benchmark.settings_check import NON_NEGATIVE, check, checked, show
from reports.tables import DEFAULT_ORACLES

FORMATS = ("md", "html", "csv", "latex")
RANGES = {"gallery_per_mode": NON_NEGATIVE, "gallery_seed": NON_NEGATIVE}  # galleries: 0 examples draws none


@dataclass(frozen=True)
class ReportConfig:
    """Everything tunable about a report; load overrides from JSON with `from_dict`."""

    failure_modes: FailureModeConfig = field(default_factory=FailureModeConfig)
    tide: TideConfig = field(default_factory=TideConfig)
    oracle_methods: tuple[str, ...] = DEFAULT_ORACLES
    sensitivity: tuple[tuple[str, tuple[float, ...]], ...] = (("bad_iou", (0.3, 0.5)), ("group_cover", (0.6, 0.7, 0.8)))
    gallery_per_mode: int = 8
    gallery_seed: int = 0
    tide_sizes: tuple[str, ...] = ("all", "small", "medium", "large")
    tide_styles: tuple[str, ...] = ("coco", "voc")
    tide_iou_range: bool = False  # also AP@[.5:.95] (10 matchings per cell: slow on COCO-sized test sets)

    @classmethod
    def from_dict(cls, d: dict, path=None) -> ReportConfig:
        """Overrides from a JSON object; every value is checked (type, range), a wrong one is a one-line error."""
        if not isinstance(d, dict):
            raise BenchError(f"report config is {show(d)}, expected a JSON object", path)
        nested = {"failure_modes", "tide", "sensitivity"}
        try:
            kw = checked(cls, {k: v for k, v in d.items() if k not in nested}, "report", "", ranges=RANGES,
                         choices={"tide_sizes": tuple(AREA_RANGES), "tide_styles": STYLES})
            if "failure_modes" in d:
                kw["failure_modes"] = FailureModeConfig.from_dict(d["failure_modes"])
            if "tide" in d:
                kw["tide"] = TideConfig.from_dict(d["tide"])
            if "sensitivity" in d:
                kw["sensitivity"] = sensitivity_grid(d["sensitivity"])
        except ValueError as exc:
            raise BenchError(f"bad report config: {exc}", path) from None
        return cls(**kw)

    @classmethod
    def from_json(cls, path) -> ReportConfig:
        return cls.from_dict(read_json(path), path)


def sensitivity_grid(d) -> tuple[tuple[str, tuple], ...]:
    """`{"bad_iou": [0.3, 0.5], ...}`: non-empty value lists for failure-mode thresholds, each value checked like the
    threshold itself (an unknown name would otherwise fail deep inside the report)."""
    if not isinstance(d, dict):
        raise ValueError(f"sensitivity is {show(d)}, expected a JSON object of failure-mode setting -> list of values")
    defaults = FailureModeConfig()
    grid = []
    for name, values in d.items():
        if name not in FM_RANGES:
            raise ValueError(f"unknown sensitivity setting {name!r} (known: {sorted(FM_RANGES)})")
        if not isinstance(values, (list, tuple)) or not values:
            raise ValueError(f"sensitivity.{name} is {show(values)}, expected a non-empty list of values")
        grid.append((name, tuple(check(f"sensitivity.{name}", v, getattr(defaults, name), FM_RANGES[name])
                                 for v in values)))
    return tuple(grid)


def parse_formats(formats) -> tuple[str, ...]:
    items = [f.strip().lower() for f in (formats.split(",") if isinstance(formats, str) else formats) if f.strip()]
    items = ["latex" if f in ("tex",) else "md" if f in ("markdown",) else f for f in items]
    bad = [f for f in items if f not in FORMATS]
    if bad or not items:
        raise BenchError(f"unknown report format {bad[0] if bad else '(none)'!r} (known: {', '.join(FORMATS)})")
    return tuple(dict.fromkeys(items))
