"""The tidy table of a results store: one row per done cell, as a pandas DataFrame (and CSV / Parquet files).

Columns (metrics are fractions 0-1, as in metrics.json):
- identity: `cell`, `method`, `dataset`, `dataset_kind`, `profile`, `noise_model`, `noise_level`, `noise_seed`,
  `noise_rng`, `seed`, `code_version`, `dataset_id` (the first 8 hex digits of a hash of the train and test
  fingerprints), `variant` (what the cell changed from the method's defaults: its `--set` overrides, noise-model
  parameters and a non-default noise rng, e.g. `method.topk=3; noise direction=shrink`; empty for defaults),
  `recipe` (the first 8 hex digits of a hash of the resolved method config without seeds and runtime keys: the
  same command gives another recipe when a release changes a profile's defaults), `detector` (the detection
  core: `two_stage` Faster R-CNN or `one_stage` RetinaNet, from the cell's resolved config; absent = two-stage).
  Two different datasets with the same name (two folders called `coco`) get `dataset` values
  `coco [<dataset_id>]`, so tables, reports and leaderboard rows never average one with the other. Likewise a
  method run in several variants on one dataset is labelled `ssd_det [method.topk=3]` (the default variant keeps
  its name), and cells that would still count one training seed twice in a table group (e.g. two fixed noise
  seeds) are labelled by what tells them apart: `[recipe <hash>]` where the same variant was trained with
  different defaults (a store holding cells of two releases), `[noise seed 7]`, else `[cell <id>]`;
- one column per registered metric (`benchmark.evaluation.metrics`), in its order: COCO `AP`, `AP50`, `AP75`,
  `APs`, `APm`, `APl`, `AR1`, `AR10`, `AR100`, `ARs`, `ARm`, `ARl`; VOC `VOC_AP50`;
- `train_<name>` for every number in the cell's training metrics, `time_<name>` for its timings (seconds);
- `cell_dir`: the cell's directory (predictions.json, refined_boxes.json, noise/ ... for deeper analysis).
Per-class APs stay in each cell's metrics.json. Rows are sorted by dataset, method, noise model, level, seed.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pandas as pd

from benchmark import store_layout as layout
from benchmark.errors import BenchError
from benchmark.evaluation import metrics as registry
from benchmark.io import atomic_write_bytes, dumps_json, sha256_bytes

COCO_METRICS = tuple(registry.metric_names(evaluator="coco"))  # the built-in COCO columns; readers ask the registry
IDENTITY_COLUMNS = ("cell", "method", "dataset", "dataset_kind", "profile", "noise_model", "noise_level",
                    "noise_seed", "noise_rng", "seed", "code_version", "dataset_id", "variant", "recipe", "detector")
# what a table holds fixed while it averages over training seeds (as reports.tables and leaderboard.add group)
SEED_GROUP = ["dataset", "profile", "method", "noise_model", "noise_level", "noise_rng"]
SORT_COLUMNS = ["dataset", "method", "noise_model", "noise_level", "seed", "cell"]
CORRUPT = "corrupt"  # a done cell whose files changed since (the runner's status word: `bench run` redoes it)
CSV_NAME = "results.csv"
PARQUET_NAME = "results.parquet"


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def cell_row(cell_dir: Path) -> dict | None:
    """The table row of one done cell, or None if it is not done or not intact (`benchmark.store_layout`)."""
    return read_cell(cell_dir)[0]


def read_cell(cell_dir: Path) -> tuple[dict | None, str | None]:
    """(table row, None) of a done and intact cell, or (None, why it has none: "not done", or "corrupt: <what
    changed>"). The store's one check (`store_layout.done_problem`, the same `bench run` uses to redo a cell) has
    already read and checked config.json and metrics.json when this reads them again."""
    cell_dir = Path(cell_dir)
    if not layout.is_marked_done(cell_dir):
        return None, "not done"
    problem = layout.done_problem(cell_dir)
    if problem is not None:
        return None, f"{CORRUPT}: {problem}"
    try:
        config = layout.read_checked(cell_dir / layout.CONFIG, layout.CONFIG)
        metrics = layout.read_checked(cell_dir / layout.METRICS, layout.METRICS)
        row = _identity_row(cell_dir, config, config["noise"])
    except (BenchError, KeyError, TypeError, ValueError, AttributeError) as exc:  # changed between the two reads
        return None, f"{CORRUPT}: {exc}"
    return _metrics_row(row, metrics, cell_dir), None


def _identity_row(cell_dir: Path, config: dict, noise: dict) -> dict:
    return {
        "cell": cell_dir.name, "method": config["method"], "dataset": config["dataset"]["name"],
        "dataset_kind": config["dataset"].get("kind"), "profile": config["profile"],
        "noise_model": noise["model"], "noise_level": float(noise["level"]), "noise_seed": noise["seed"],
        "noise_rng": noise["rng"], "seed": config["seed"], "code_version": config.get("code_version"),
        "dataset_id": _dataset_id(config["dataset"]), "variant": variant(config), "recipe": recipe(config),
        "detector": detector(config),
    }


def _metrics_row(row: dict, metrics: dict, cell_dir: Path) -> dict:
    for metric in registry.metrics():
        row[metric.name] = metric.stored(metrics)
    for prefix, section in (("train_", "train"), ("time_", "timing")):
        for key, value in sorted((metrics.get(section) or {}).items()):
            if _number(value):
                row[prefix + key] = value
    row["cell_dir"] = str(cell_dir)
    return row


def detector(config: dict) -> str:
    """The detection core a cell trained (`two_stage` or `one_stage`): recorded in the resolved config's `profile`
    section by methods on a non-default core; cells without it (every two-stage cell) read as two-stage. An
    external run's detector is unknown: empty."""
    from benchmark.config import DEFAULT_DETECTOR

    if config.get("external"):
        return ""
    profile = (config.get("method_config") or {}).get("profile")
    return str((profile if isinstance(profile, dict) else {}).get("detector") or DEFAULT_DETECTOR)


def base_method(label: str) -> str:
    """The method a table label names: `clean [train.lr=0.002]` -> `clean` (the tags `load` adds, see above)."""
    return str(label).split(" [", 1)[0]


def variant(config: dict) -> str:
    """What a cell changed from its method's defaults, as text: its `--set` overrides (the runner records them in
    the config's `locator`; cells written before it did read as defaults), noise parameters other than the model's
    defaults (recorded in the locator too, `noise_defaults`), a non-default rng."""
    locator = config.get("locator") or {}
    overrides = locator.get("overrides") or {}
    parts = [f"{k}={_text(v)}" for k, v in sorted(overrides.items())]
    noise = config.get("noise") or {}
    if float(noise.get("level") or 0) > 0:
        defaults = locator.get("noise_defaults")
        if not isinstance(defaults, dict):  # a cell planned before the runner recorded them
            defaults = _installed_noise_defaults(noise.get("model"))
        parts += [f"noise {k}={_text(v)}" for k, v in sorted((noise.get("params") or {}).items())
                  if k not in defaults or defaults[k] != v]
        if noise.get("rng") not in (None, "numpy"):
            parts.append(f"noise rng {noise['rng']}")
    return "; ".join(parts)


def recipe(config: dict) -> str:
    """Hash of what a cell trained with beyond its identity row: the resolved method config (model, train, method
    sections) and the adapter's version, without the training seeds and the runtime keys (device, logging, ...)."""
    from benchmark.config import without_runtime_keys

    resolved = without_runtime_keys(config.get("method_config") or {}, also={"train": ("seed", "data_seed")})
    return sha256_bytes(dumps_json({"method_config": resolved,
                                    "method_version": config.get("method_version")}))[:8]


def _installed_noise_defaults(model) -> dict:
    """The default parameters of a noise model (or composition) installed here, for cells planned before the runner
    recorded them in the locator (their params hold the defaults filled in); {} for a model not installed here.
    Only such old cells import the noise package: a store the runner writes now reads without it."""
    from noise import get_model
    from noise.make import model_from_spec

    if not isinstance(model, str):
        return {}
    try:
        return get_model(model_from_spec(model)[0]).defaults()
    except (BenchError, TypeError):
        return {}


def _text(v) -> str:
    if isinstance(v, str):
        return v[:15] if v.startswith("sha256:") else v  # a noise-parameter file by content: 8 hex digits tell it
    return json.dumps(v, sort_keys=True)


def _dataset_id(dataset: dict) -> str:
    fingerprints = f"{dataset.get('train_sha256')}/{dataset.get('test_sha256')}"
    return sha256_bytes(fingerprints.encode())[:8]


def _distinct_names(df: pd.DataFrame) -> pd.DataFrame:
    """`name [dataset_id]` for names shared by different datasets (by content)."""
    shared = df.groupby("dataset")["dataset_id"].transform("nunique") > 1
    if shared.any():
        df.loc[shared, "dataset"] = df.loc[shared, "dataset"] + " [" + df.loc[shared, "dataset_id"] + "]"
    return df


def load(store_dir: str | Path) -> pd.DataFrame:
    """All done and intact cells of `store_dir` as a DataFrame (empty, with the identity and metric columns, if
    none). Corrupt cells are left out: `left_out` names them, `corrupt_line` says so."""
    cells = Path(store_dir) / layout.CELLS_DIR
    if not Path(store_dir).is_dir():
        raise BenchError("results directory not found", store_dir)
    if not cells.is_dir():  # e.g. the cells/ folder itself, or a cell: an empty table would read as "no results"
        raise BenchError("not a results store (no cells/ directory)", store_dir)
    rows = []
    for d in sorted(cells.iterdir()):
        if d.is_dir() and not d.name.startswith("."):
            row = cell_row(d)
            if row is not None:
                rows.append(row)
    metric_columns = registry.metric_names()
    columns = [*IDENTITY_COLUMNS, *metric_columns]
    df = pd.DataFrame(rows) if rows else pd.DataFrame(columns=[*columns, "cell_dir"])
    front = [c for c in columns if c in df.columns]
    rest = sorted(c for c in df.columns if c not in front and c != "cell_dir")
    df = df[front + rest + ["cell_dir"]]
    for col in (*metric_columns, "noise_level"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)  # undefined metric -> NaN, never 0
    if not df.empty:
        df = _distinct_names(df)
        df = _distinct_methods(df)
    return df.sort_values(SORT_COLUMNS, kind="stable").reset_index(drop=True)


def left_out(store_dir: str | Path, table: pd.DataFrame) -> tuple[list[str], list[str]]:
    """What `table` (`load(store_dir)`) leaves out of the store: (DONE cells that are not intact: corrupt, cells with
    a config but not done: failed, half-run or running), as sorted cell ids. Reports and the leaderboard say so."""
    loaded = set(table["cell"].astype(str))
    corrupt, unfinished = [], []
    for d in sorted((Path(store_dir) / layout.CELLS_DIR).iterdir()):
        if not d.is_dir() or d.name.startswith("."):
            continue
        if layout.is_marked_done(d):
            if d.name not in loaded:
                corrupt.append(d.name)
        elif (d / layout.CONFIG).is_file():
            unfinished.append(d.name)
    return corrupt, unfinished


def corrupt_line(ids: list[str]) -> str | None:
    """The one line every reader prints for the DONE cells it left out (None when there are none)."""
    if not ids:
        return None
    return f"left out: {len(ids)} {CORRUPT} cell(s): {', '.join(ids)} (`bench run` with the same options redoes them)"


def _distinct_methods(df: pd.DataFrame) -> pd.DataFrame:
    """Method labels that keep different experiments apart (see the module docstring): no table may average two
    variants of a method, or count one training seed twice."""
    variants = df.groupby(["dataset", "method"])["variant"].transform("nunique") > 1
    labelled = variants & (df["variant"] != "")
    df.loc[labelled, "method"] = df.loc[labelled, "method"] + " [" + df.loc[labelled, "variant"] + "]"
    recipes = df.groupby([*SEED_GROUP, "variant"])["recipe"].transform("nunique") > 1
    df.loc[recipes, "method"] = df.loc[recipes, "method"] + " [recipe " + df.loc[recipes, "recipe"] + "]"
    twice = df.duplicated([*SEED_GROUP, "seed"], keep=False)
    if twice.any():
        noise_seeds = df[twice].groupby([*SEED_GROUP, "seed"])["noise_seed"].transform("nunique")
        by_noise = pd.Series(False, index=df.index)
        by_noise[noise_seeds.index] = noise_seeds > 1
        tag = df["noise_seed"].astype(str).radd("noise seed ").where(by_noise, "cell " + df["cell"].str[:8])
        df.loc[twice, "method"] = df.loc[twice, "method"] + " [" + tag[twice] + "]"
    return df


def write_tables(store_dir: str | Path, df: pd.DataFrame | None = None) -> dict[str, Path]:
    """Write `results.csv` and (with pyarrow installed) `results.parquet` into the store; returns their paths."""
    store_dir = Path(store_dir)
    df = load(store_dir) if df is None else df
    out = {"csv": atomic_write_bytes(store_dir / CSV_NAME, df.to_csv(index=False).encode("utf-8"))}
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return out
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    out["parquet"] = atomic_write_bytes(store_dir / PARQUET_NAME, buf.getvalue())
    return out
