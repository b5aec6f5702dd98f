"""The results store's file layout and its one answer to "is this cell done and intact?".

Every reader asks here: the runner (`bench run` redoes a cell this calls corrupt), the results table
(`benchmark.results.load`), the reports and `bench leaderboard add`. So a cell whose files changed after it finished is
`corrupt` for all of them at once, never a result in one place and a rerun in another.

`DONE` (written last) lists the size and sha256 of each result file present. `done_problem` re-reads every listed file,
compares it, and checks that the small ones still have the shape the readers rely on (a config whose `locator` is a
list, a metrics file whose `coco` is a string would otherwise be a traceback deep inside a report). The `LARGE` files
(predictions, refined boxes, noisy training set) are compared by hash (by size above `HASH_LIMIT`); their shape is
checked once before DONE is written (`deep`), and by the reports when they parse them (`read_checked`), where a bad
one costs the analyses that need it, with a counted line, never the report.

This module sits on the lowest floor (`benchmark.io`, `benchmark.errors`, `benchmark.config`), so the reports and
the leaderboard may import it without reaching into the runner.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import orjson

from benchmark.errors import BenchError
from benchmark.io import dumps_json, read_json, sha256_bytes, sha256_file, write_json

CELLS_DIR = "cells"
CONFIG = "config.json"
ENV = "env.json"
NOISE_DIR = "noise"
NOISY_TRAIN = "noise/train.json"
MANIFEST = "noise/manifest.json"
TRAIN_DIR = "train"
PREDICTIONS = "predictions.json"
METRICS = "metrics.json"
REFINED = "refined_boxes.json"
LOG = "cell.log"
FAILED = "FAILED"
DONE = "DONE"
CLAIM = "claim"
QUEUED = "queued"
RESULT_FILES = (CONFIG, ENV, PREDICTIONS, METRICS, REFINED, NOISY_TRAIN, MANIFEST)  # recorded in DONE when present
REQUIRED = (CONFIG, METRICS, PREDICTIONS)  # every finished cell has these
LARGE = (PREDICTIONS, REFINED, NOISY_TRAIN)  # hundreds of MB on COCO: above HASH_LIMIT, checked by size only
HASH_LIMIT = 8 << 20

OUTPUTS = (ENV, NOISE_DIR, TRAIN_DIR, PREDICTIONS, METRICS, REFINED, FAILED, LOG)  # what a run writes

# statuses: `file_status` reads them from the files; the runner adds whether a claim's process or a queued job is
# alive (`benchmark.runner.store.cell_status`): a dead claim is then partial, a finished job's record stale
DONE_S, RUNNING, FAILED_S, PARTIAL, CORRUPT, MISSING = "done", "running", "failed", "partial", "corrupt", "missing"
QUEUED_S = "queued"
STATUSES = (DONE_S, RUNNING, QUEUED_S, FAILED_S, PARTIAL, CORRUPT, MISSING)

ID_LENGTH = 16  # hex digits of the sha256 used as the cell directory name (64 bits)
NON_IDENTITY = ("cell_id", "locator")


# ---- cell identity ----------------------------------------------------------------------------------------------
def label(config: dict) -> str:
    """A cell's name for people: method, noise, seed and dataset."""
    n = config["noise"]
    noise = "clean" if n["level"] == 0 else f"{n['model']}={n['level']:g}"
    return f"{config['method']} {noise} seed={config['seed']} ({config['dataset']['name']})"


def identity(config: dict) -> dict:
    """The part of a cell config that is hashed."""
    from benchmark.config import without_runtime_keys

    ident = {k: v for k, v in config.items() if k not in NON_IDENTITY}
    ident["method_config"] = without_runtime_keys(ident.get("method_config", {}))
    if "external" in ident:  # an external run is its name, data, noise and seed; its file can be replaced
        ident["external"] = True
    return ident


def cell_id(config: dict) -> str:
    return sha256_bytes(dumps_json(identity(config)))[:ID_LENGTH]


# ---- DONE -------------------------------------------------------------------------------------------------------
def mark_done(cell_dir: Path, owner: str = "") -> None:
    """Write DONE (last): the size and sha256 of every result file present."""
    cell_dir = Path(cell_dir)
    files = {}
    for name in RESULT_FILES:
        p = cell_dir / name
        if p.is_file():
            files[name] = {"size": p.stat().st_size, "sha256": sha256_file(p)}
    write_json(cell_dir / DONE, {"cell_id": cell_dir.name, "finished": time.time(), "owner": owner, "files": files},
               indent=True)
    (cell_dir / QUEUED).unlink(missing_ok=True)


def is_marked_done(cell_dir: Path) -> bool:
    return (Path(cell_dir) / DONE).is_file()


def file_status(cell_dir: Path, claimed: bool | None = None, queued: bool | None = None) -> str:
    """done / corrupt / running / queued / failed / partial / missing from the cell's files. `claimed` / `queued`:
    whether the claim's process and the queued job are alive (the runner knows); None takes a claim or queued
    record at its word, which is what a reader without the runner can say."""
    if not cell_dir.is_dir():
        return MISSING
    if (cell_dir / DONE).exists():
        return DONE_S if done_problem(cell_dir) is None else CORRUPT
    if (cell_dir / CLAIM).exists() if claimed is None else claimed:
        return RUNNING
    if (cell_dir / QUEUED).exists() if queued is None else queued:
        return QUEUED_S
    if (cell_dir / FAILED).exists():
        return FAILED_S
    if any((cell_dir / name).exists() for name in OUTPUTS):
        return PARTIAL
    return MISSING


def done_problem(cell_dir: Path, deep: bool = False) -> str | None:
    """None if the cell is done and intact, else why not, in a few words ("not done", "predictions.json changed
    since the cell finished", ...). The one check behind every reader of the store.

    The `LARGE` files are compared with DONE (sha256 up to `HASH_LIMIT`, else size) but parsed only when `deep`:
    the runner does that once, before it writes DONE, so a file the check would reject is never marked done;
    afterwards any change to it changes its hash. Parsing them on every look would cost seconds per cell."""
    cell_dir = Path(cell_dir)
    if not is_marked_done(cell_dir):
        return "not done"
    try:
        marker = read_json(cell_dir / DONE)
        files = marker["files"]
        if not isinstance(files, dict):
            raise TypeError("`files` is not an object")
    except (BenchError, KeyError, TypeError) as exc:
        return f"unreadable {DONE} ({_short(exc)})"
    for name in REQUIRED:
        if name not in files:
            return f"{DONE} does not list {name}"
    config = None
    for name, rec in sorted(files.items()):
        if name not in RESULT_FILES or not isinstance(rec, dict):
            return f"{DONE} lists {name!r}, which is no result file"
        p = cell_dir / name
        try:
            size = p.stat().st_size
            if size != rec.get("size"):
                return f"{name} changed size since the cell finished"
            if name in LARGE and size > HASH_LIMIT and (not deep or name == NOISY_TRAIN):
                continue
            data = p.read_bytes()
        except OSError as exc:
            return f"{name} is missing" if not p.exists() else f"{name} cannot be read ({exc.strerror or exc})"
        if sha256_bytes(data) != rec.get("sha256"):
            return f"{name} changed since the cell finished"
        if name in LARGE and (not deep or name == NOISY_TRAIN):  # the noisy set is the suite's own output
            continue
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            return f"{name} is not valid JSON"
        why = CONTENT_CHECKS[name](value)
        if why:
            return f"{name}: {why}"
        if name == CONFIG:
            config = value
    try:
        if config.get("cell_id") != cell_dir.name or cell_id(config) != cell_dir.name:
            return f"{CONFIG} does not hash to the cell id {cell_dir.name}"
    except Exception as exc:  # noqa: BLE001 -- a config that cannot even be hashed
        return f"{CONFIG} is not a cell config ({_short(exc)})"
    return None


def _short(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]


# ---- the shape of each file (what the readers rely on) -----------------------------------------------------------
def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(v) -> bool:
    return _number(v) and math.isfinite(v)


def _box(v) -> bool:
    return isinstance(v, list) and len(v) == 4 and all(_finite(x) for x in v)


def _object(key: str, v) -> str | None:
    return None if v is None or isinstance(v, dict) else f"`{key}` is a {type(v).__name__}, not an object"


def config_problem(config) -> str | None:
    """Why a parsed config.json cannot be read as a cell config (None if it can)."""
    if not isinstance(config, dict):
        return "not a JSON object"
    for key in ("locator", "method_config", "external"):
        if why := _object(key, config.get(key)):
            return why
    for key in ("dataset", "noise"):
        if not isinstance(config.get(key), dict):
            return f"`{key}` is missing or not an object"
    if not isinstance(config.get("method"), str) or not isinstance(config.get("profile"), str):
        return "`method` or `profile` is not text"
    if "seed" not in config or "seed" not in config["noise"] or "rng" not in config["noise"]:
        return "`seed`, `noise.seed` or `noise.rng` is missing"
    if not isinstance(config["dataset"].get("name"), str):
        return "`dataset.name` is not text"
    noise = config["noise"]
    if not isinstance(noise.get("model"), str) or not _finite(noise.get("level")):
        return "`noise.model` is not text or `noise.level` is not a number"
    if (why := _object("noise.params", noise.get("params"))) is not None:
        return why
    locator = config.get("locator") or {}
    for key in ("overrides", "noise_defaults"):
        if (why := _object(f"locator.{key}", locator.get(key))) is not None:
            return why
    if locator.get("dataset_spec") is not None and not isinstance(locator["dataset_spec"], str):
        return "`locator.dataset_spec` is not text"
    return None


def metrics_problem(metrics) -> str | None:
    """Why a parsed metrics.json cannot be read (None if it can): sections are objects, metrics numbers or null."""
    from benchmark.evaluation.metrics import evaluator_names

    if not isinstance(metrics, dict):
        return "not a JSON object"
    evaluated = evaluator_names()  # sections of registered evaluators (`coco`, `voc`, ...) hold metrics
    for section in (*evaluated, "train", "timing"):
        value = metrics.get(section)
        if why := _object(section, value):
            return why
        for key, v in (value or {}).items():
            if key == "per_class":
                if why := _object(f"{section}.per_class", v):
                    return why
                if any(x is not None and not _number(x) for x in (v or {}).values()):
                    return f"`{section}.per_class` holds a value that is not a number"
            elif section in evaluated and v is not None and not _number(v):
                return f"`{section}.{key}` is not a number"
    return None


def predictions_problem(dets) -> str | None:
    """Why a parsed predictions.json is not a COCO results list (None if it is)."""
    if not isinstance(dets, list):
        return "not a JSON list of detections"
    for i, d in enumerate(dets):
        if not (isinstance(d, dict) and _number(d.get("image_id")) and _number(d.get("category_id"))
                and _finite(d.get("score")) and _box(d.get("bbox"))):
            return f"detection {i} is not {{image_id, category_id, bbox: 4 numbers, score}}"
    return None


def refined_problem(boxes) -> str | None:
    """Why a parsed refined_boxes.json is not a list of {id, bbox} (None if it is)."""
    if not isinstance(boxes, list):
        return "not a JSON list of boxes"
    for i, r in enumerate(boxes):
        if not (isinstance(r, dict) and isinstance(r.get("id"), int) and not isinstance(r.get("id"), bool)
                and _box(r.get("bbox"))):
            return f"entry {i} is not {{id: integer, bbox: 4 numbers}}"
    return None


def noisy_train_problem(coco) -> str | None:
    """Why a parsed noise/train.json is not a COCO dict with annotations (None if it is)."""
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list) \
            or not isinstance(coco.get("annotations"), list):
        return "not a COCO object with `images` and `annotations` lists"
    for i, a in enumerate(coco["annotations"]):
        if not (isinstance(a, dict) and isinstance(a.get("id"), int) and _box(a.get("bbox"))
                and (a.get("true_bbox") is None or _box(a.get("true_bbox")))):
            return f"annotation {i} has no integer id or no 4-number bbox"
    return None


def _object_only(value) -> str | None:
    return None if isinstance(value, dict) else "not a JSON object"


CONTENT_CHECKS = {CONFIG: config_problem, ENV: _object_only, METRICS: metrics_problem,
                  PREDICTIONS: predictions_problem, REFINED: refined_problem, NOISY_TRAIN: noisy_train_problem,
                  MANIFEST: _object_only}


def read_checked(path: Path, name: str):
    """A result file parsed and checked (`CONTENT_CHECKS[name]`): BenchError with the reason if it is not usable.
    For readers of files too large for `done_problem` to parse."""
    value = read_json(path)
    why = CONTENT_CHECKS[name](value)
    if why:
        raise BenchError(f"{name}: {why}", path)
    return value
