"""Report settings (`ReportConfig`, loadable from JSON) and output formats."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from benchmark.errors import BenchError
from benchmark.io import read_json
from reports.failure_modes import FailureModeConfig
from reports.tables import DEFAULT_ORACLES
from reports.tide import TideConfig

FORMATS = ("md", "html", "csv", "latex")


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
    def from_dict(cls, d: dict, path=None) -> "ReportConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise BenchError(f"unknown report setting(s) {unknown} (known: {sorted(known)})", path)
        kw = dict(d)
        try:
            if "failure_modes" in kw:
                kw["failure_modes"] = FailureModeConfig.from_dict(kw["failure_modes"])
            if "tide" in kw:
                kw["tide"] = TideConfig.from_dict(kw["tide"])
            if "sensitivity" in kw:
                kw["sensitivity"] = tuple((k, tuple(v)) for k, v in dict(kw["sensitivity"]).items())
            for k in ("oracle_methods", "tide_sizes", "tide_styles"):
                if k in kw:
                    kw[k] = tuple(kw[k])
            return cls(**kw)
        except (KeyError, TypeError, ValueError) as exc:
            raise BenchError(f"bad report config: {exc}", path) from None

    @classmethod
    def from_json(cls, path) -> "ReportConfig":
        d = read_json(path)
        if not isinstance(d, dict):
            raise BenchError("report config must be a JSON object", path)
        return cls.from_dict(d, path)


def parse_formats(formats) -> tuple[str, ...]:
    items = [f.strip().lower() for f in (formats.split(",") if isinstance(formats, str) else formats) if f.strip()]
    items = ["latex" if f in ("tex",) else "md" if f in ("markdown",) else f for f in items]
    bad = [f for f in items if f not in FORMATS]
    if bad or not items:
        raise BenchError(f"unknown report format {bad[0] if bad else '(none)'!r} (known: {', '.join(FORMATS)})")
    return tuple(dict.fromkeys(items))
