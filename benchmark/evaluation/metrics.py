"""The metrics registry: every metric the suite reports is registered here once, and everything that shows one
reads it from here (`evaluate` and `bench eval`, the results table, the reports, `bench run`'s summary, the
leaderboard schema), so adding a metric is one registration plus its compute function.

- An *evaluator* computes one section of a cell's metrics.json from the ground truth and the detections:
  `compute(gt: DetectionDataset, arrays: DetectionArrays) -> {key: fraction or None, "per_class": {name: ...}}`
  (`per_class` optional). Its name is the section's key (`coco`, `voc`).
- A *metric* is one number of one evaluator's section shown as one results-table column: `VOC_AP50` is the key
  `AP50` of the `voc` section. Values are stored as computed (fractions 0-1 for AP, NaN/None where undefined) and
  shown x `scale` (AP points, one decimal, as papers print them). Registration order is the default order of
  columns and table entries.

Readers call the functions below at use time (never copy the dicts at import), so a metric registered later, by
a plug-in module or a test, shows up everywhere. A plug-in names a module under the entry-point group
`noisybox_bench.metrics`; importing it (on the first read of the registry) registers its evaluators and metrics.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "noisybox_bench.metrics"


@dataclass(frozen=True)
class Evaluator:
    name: str  # the metrics.json section it fills
    compute: Callable  # (gt, DetectionArrays) -> {key: value, "per_class": {class name: value}}
    title: str  # `bench eval`'s heading for its numbers
    per_class: str = ""  # `bench eval`'s heading for its per-class column ("" = it has none)


@dataclass(frozen=True)
class Metric:
    name: str  # results-table column and leaderboard key
    evaluator: str  # the evaluator (metrics.json section) that computes it
    key: str  # its key inside that section
    label: str  # header shown in tables
    table: str | None = None  # the report table it is shown in (None: results table and `bench eval` only)
    higher_is_better: bool = True
    scale: float = 100.0  # shown = stored x scale (fractions stored, AP points shown)
    leaderboard: bool = False  # leaderboard rows may hold it and `bench leaderboard add` fills it
    sweep: bool = False  # `bench run` prints its method x noise-level table after a sweep

    def stored(self, metrics: dict):
        """This metric's value in a parsed metrics.json (None where its evaluator or key is absent)."""
        section = metrics.get(self.evaluator)
        return section.get(self.key) if isinstance(section, dict) else None


EVALUATORS: dict[str, Evaluator] = {}
METRICS: dict[str, Metric] = {}
TABLES: dict[str, str] = {}  # report table -> its title
_plugins_loaded = False


def _load_plugins() -> None:
    """Import the modules of the `noisybox_bench.metrics` entry points once; a broken one warns, never breaks."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:  # a broken plug-in must not break the suite
            warnings.warn(f"metrics plugin {ep.name!r} ({ep.value}) failed to load: {exc}", stacklevel=3)


def register_evaluator(name: str, compute: Callable, title: str, per_class: str = "") -> Evaluator:
    if name in EVALUATORS:
        raise ValueError(f"evaluator {name!r} registered twice")
    EVALUATORS[name] = Evaluator(name, compute, title, per_class)
    return EVALUATORS[name]


def register_metric(name: str, evaluator: str, key: str | None = None, label: str | None = None,
                    **options) -> Metric:
    """Register a metric of `evaluator`'s section (`key` defaults to `name`, `label` to `key`); see `Metric`."""
    if name in METRICS:
        raise ValueError(f"metric {name!r} registered twice")
    if evaluator not in EVALUATORS:
        raise ValueError(f"metric {name!r}: no evaluator {evaluator!r} (register it first)")
    key = name if key is None else key
    METRICS[name] = Metric(name, evaluator, key, key if label is None else label, **options)
    return METRICS[name]


def register_table(name: str, title: str) -> None:
    """A report table's title (a metric naming a table without one gets a title made of its labels)."""
    TABLES[name] = title


def evaluator_names() -> list[str]:
    _load_plugins()
    return list(EVALUATORS)


def get_evaluator(name: str) -> Evaluator:
    _load_plugins()
    return EVALUATORS[name]


def metrics(evaluator: str | None = None, table: str | None = None, leaderboard: bool | None = None,
            sweep: bool | None = None) -> list[Metric]:
    """Registered metrics in their order, optionally only those of one evaluator / report table / flag."""
    _load_plugins()
    return [m for m in METRICS.values()
            if (evaluator is None or m.evaluator == evaluator) and (table is None or m.table == table)
            and (leaderboard is None or m.leaderboard == leaderboard) and (sweep is None or m.sweep == sweep)]


def metric_names(**where) -> list[str]:
    """Names (results-table columns) of `metrics(**where)`."""
    return [m.name for m in metrics(**where)]


def get_metric(name: str) -> Metric | None:
    _load_plugins()
    return METRICS.get(name)


def label(name: str) -> str:
    """How a column is headed in tables: the metric's label, else the column name itself."""
    m = get_metric(name)
    return m.label if m is not None else str(name)


def scale(name: str) -> float:
    """Factor from stored value to shown value (x100 for anything not registered: AP fractions to points)."""
    m = get_metric(name)
    return m.scale if m is not None else 100.0


def higher_is_better(name: str) -> bool:
    m = get_metric(name)
    return m.higher_is_better if m is not None else True


def report_tables() -> list[tuple[str, str, list[str]]]:
    """(table name, title, metric names) for every report table some metric names, in registration order."""
    out: dict[str, list[str]] = {}
    for m in metrics():
        if m.table is not None:
            out.setdefault(m.table, []).append(m.name)
    return [(t, TABLES.get(t) or f"{', '.join(label(n) for n in names)}, points", names) for t, names in out.items()]


def _builtins() -> None:
    from benchmark.evaluation.coco import STAT_NAMES, evaluate_coco
    from benchmark.evaluation.voc import evaluate_voc

    register_evaluator("coco", evaluate_coco, "COCO (faster-coco-eval), AP points", per_class="COCO AP")
    register_evaluator("voc", evaluate_voc, "VOC AP50 (mmdet eval_map, area, difficult ignored)",
                       per_class="VOC AP50")
    register_table("main", "AP, AP50, AP75 (COCO) and AP50 (VOC area), points")
    register_table("size", "AP by object size (COCO APs / APm / APl), points")
    tables = {"AP": "main", "AP50": "main", "AP75": "main", "APs": "size", "APm": "size", "APl": "size"}
    on_leaderboard = {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR100"}
    for name in STAT_NAMES:  # COCOeval's `stats` order
        register_metric(name, "coco", table=tables.get(name), leaderboard=name in on_leaderboard,
                        sweep=name in ("AP", "AP50"))
    register_metric("VOC_AP50", "voc", key="AP50", label="AP50 (VOC)", table="main", leaderboard=True)


_builtins()
