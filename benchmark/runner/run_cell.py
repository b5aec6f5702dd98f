"""Run one cell of the store: claim it, make its noisy training set, train (resuming), predict, evaluate, mark done.

Every executor ends up here: the local workers call `run_cell`, Slurm jobs call it through submitit, and a multi-GPU
cell is `torchrun --nproc_per_node N -m benchmark.runner CELL_DIR`. Under torchrun every rank builds the
same noisy set in memory (it is a pure function of the config) and trains; rank 0 alone claims, writes and evaluates.

A cell that fails writes `FAILED` (one line) and the traceback to `cell.log`; it never stops the sweep.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

from benchmark.errors import BenchError
from benchmark.io import read_json, write_json
from benchmark.runner import store as st
from benchmark.runner.cells import DatasetCache
from benchmark.store_layout import label

_log = logging.getLogger("benchmark.runner")
_DATASETS = DatasetCache()  # one load per dataset per worker process
OVERWRITE = ("never", "missing", "always")


def result(cell_dir: Path, status: str, error: str | None = None, seconds: float = 0.0, name: str = "") -> dict:
    return {"cell": cell_dir.name, "label": name, "status": status, "error": error, "log": str(cell_dir / st.LOG),
            "seconds": round(seconds, 3)}


def overwrite_decision(cell_dir: Path, overwrite: str, name: str = "") -> tuple[str, dict | None]:
    """A claimed cell's status and, if `--overwrite` says to leave it alone, the 'skipped' result to report."""
    status = st.cell_status(cell_dir, ignore_claim=True)
    if status == st.DONE_S and overwrite != "always":
        return status, result(cell_dir, "skipped", name=name)
    if overwrite == "never" and status != st.MISSING:
        return status, result(cell_dir, "skipped", f"{status}; kept (--overwrite never)", name=name)
    return status, None


@contextmanager
def cell_logging(path: Path):
    """Send the suite's log records (and warnings) to the cell's log file while the cell runs."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(min(old_level or logging.INFO, logging.INFO))
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if isinstance(exc, BenchError) else f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def run_cell(cell_dir: str | Path, *, overwrite: str = "missing", owner: str | None = None, progress: bool = True,
             heartbeat_s: float = st.HEARTBEAT_S, stale_after_s: float = st.STALE_AFTER_S) -> dict:
    """Run the cell in `cell_dir` (which holds its config.json) unless done or claimed elsewhere.

    Returns {cell, label, status: done|skipped|busy|failed, error, log, seconds}."""
    if overwrite not in OVERWRITE:
        raise BenchError(f"--overwrite must be one of {', '.join(OVERWRITE)}, got {overwrite!r}")
    t0 = time.perf_counter()
    cell_dir = Path(cell_dir).resolve()
    config = read_json(cell_dir / st.CONFIG)
    name = label(config)
    if _rank() != 0:  # torchrun: the other ranks only help training
        _execute(cell_dir, config, None, progress=False)
        return result(cell_dir, "done", seconds=time.perf_counter() - t0, name=name)

    claim = st.Claim.acquire(cell_dir, owner=owner, stale_after_s=stale_after_s)
    if claim is None:
        return result(cell_dir, "busy", "claimed by another runner", name=name)
    try:
        status, skipped = overwrite_decision(cell_dir, overwrite, name)
        if skipped is not None:
            return skipped
        claim.start_heartbeat(heartbeat_s)
        st.reset(cell_dir, keep_progress=status in (st.PARTIAL, st.FAILED_S) and overwrite != "always")
        with cell_logging(cell_dir / st.LOG):
            _log.info("start %s (%s) on %s pid %d, status before: %s, overwrite=%s", cell_dir.name, name,
                      st.HOST, os.getpid(), status, overwrite)
            try:
                _execute(cell_dir, config, claim, progress=progress)
            except Exception as exc:
                _log.error("failed: %s\n%s", one_line(exc), traceback.format_exc())
                raise
            except BaseException as exc:  # Ctrl-C, a preempted Slurm job exiting: resumable, not a failure
                _log.warning("interrupted (%s); the cell resumes from its last checkpoint", type(exc).__name__)
                raise
            _log.info("done in %.1f s", time.perf_counter() - t0)
        return result(cell_dir, "done", seconds=time.perf_counter() - t0, name=name)
    except Exception as exc:
        message = str(st.store_error(exc, cell_dir)) if isinstance(exc, OSError) else one_line(exc)
        try:
            write_json(cell_dir / st.FAILED, {"error": message, "time": time.time(), "host": st.HOST})
            (cell_dir / st.QUEUED).unlink(missing_ok=True)  # failed, not requeued: no job will run it any more
        except (BenchError, OSError):
            pass  # e.g. the disk is full: the message still reaches the runner
        return result(cell_dir, "failed", message, time.perf_counter() - t0, name=name)
    finally:
        claim.release()


def _with_weights_file(config: dict) -> dict:
    """The method config to train with: `bench run --weights` files come from the locator, checked to be the
    content the cell's identity holds (`cells.weights_identity`)."""
    cfg = config["method_config"]
    path = (config.get("locator") or {}).get("weights")
    if not path:
        return cfg
    from benchmark.weights import file_sha256, is_torchvision_file

    model = cfg.get("model") or {}
    want = model.get("weights")
    if not Path(path).is_file():
        raise BenchError("--weights: the file is gone; rerun `bench run` to plan the sweep again", path)
    sha = file_sha256(path)
    ok = want == f"sha256:{sha}" if want else is_torchvision_file(sha, str(model.get("backbone")))
    if not ok:
        raise BenchError("--weights: the file changed since the sweep was planned; rerun `bench run`", path)
    return {**cfg, "model": {**model, "weights": path}}


def _noisy_train(cell_dir: Path, config: dict, train):
    """The cell's training set: clean at level 0, else the configured noise (written once to noise/)."""
    if config["noise"]["level"] == 0:
        return train
    from noise import write_noisy
    from noise.spec import NoiseSpec

    made = NoiseSpec.from_config(config["noise"], config.get("locator")).make(train)
    out = cell_dir / st.NOISE_DIR
    if _rank() == 0 and not (out / "manifest.json").is_file():
        write_noisy(made, out)
    return made.dataset


def _execute(cell_dir: Path, config: dict, claim: st.Claim | None, progress: bool) -> None:
    from benchmark.evaluation import evaluate
    from methods import get_method

    timing: dict[str, float] = {}
    t = time.perf_counter()
    spec = config["locator"]["dataset_spec"]
    _DATASETS.progress = progress
    splits = _DATASETS.splits(spec)
    facts = _DATASETS.facts(spec)
    for split in ("train", "test"):
        if facts[f"{split}_sha256"] != config["dataset"][f"{split}_sha256"]:
            raise BenchError(f"the {split} annotations changed since this cell was planned (sha256 differs); "
                             f"rerun `bench run` to plan cells for the new data", spec)
    train, test = splits["train"], splits["test"]
    timing["load_s"] = time.perf_counter() - t

    t = time.perf_counter()
    noisy = _noisy_train(cell_dir, config, train)
    timing["noise_s"] = time.perf_counter() - t

    if "external" in config:  # detections made elsewhere: nothing to train
        from benchmark.runner.external import external_predictions

        trained = None
        t = time.perf_counter()
        predictions = external_predictions(config, test)
        timing["read_s"] = time.perf_counter() - t
    else:
        adapter = get_method(config["method"])
        cfg = _with_weights_file(config)
        t = time.perf_counter()
        trained = adapter.train(noisy, cfg, cell_dir / st.TRAIN_DIR, resume=True, diagnostics=noisy,
                                progress=progress)
        timing["train_s"] = time.perf_counter() - t
        if _rank() != 0:
            return
        t = time.perf_counter()
        predictions = adapter.predict(trained.checkpoint, test, cfg, progress=progress)
        timing["predict_s"] = time.perf_counter() - t
    write_json(cell_dir / st.PREDICTIONS, predictions)

    t = time.perf_counter()
    metrics = evaluate(test, predictions, path=cell_dir / st.PREDICTIONS)
    timing["eval_s"] = time.perf_counter() - t

    if trained is not None and trained.refined_boxes is not None and Path(trained.refined_boxes).is_file():
        src = Path(trained.refined_boxes)
        if src.resolve() != (cell_dir / st.REFINED).resolve():
            from benchmark.io import atomic_write_bytes

            atomic_write_bytes(cell_dir / st.REFINED, src.read_bytes())
    from benchmark.runner.environment import capture

    write_json(cell_dir / st.ENV, capture(), indent=True)
    metrics["train"] = dict(trained.metrics or {}) if trained is not None else {}
    metrics["timing"] = {k: round(v, 4) for k, v in timing.items()}
    write_json(cell_dir / st.METRICS, metrics, indent=True)
    if claim is not None and not claim.heartbeat():
        raise BenchError("another runner took over this cell's claim; its results were not marked done", cell_dir)
    st.mark_done(cell_dir, owner=claim.owner if claim else "")
    problem = st.done_problem(cell_dir, deep=True)  # never mark done what a reader would reject
    if problem is not None:
        (cell_dir / st.DONE).unlink(missing_ok=True)
        raise BenchError(f"the cell's results fail the store check ({problem}); not marked done", cell_dir)


def import_modules(names) -> None:
    """Import plug-in modules (e.g. ones that register extra methods) by name or by .py file path."""
    import importlib
    import importlib.util

    for name in names or ():
        if name.endswith(".py"):
            path = Path(name).resolve()
            mod_name = path.stem
            if mod_name in sys.modules:
                continue
            if not path.is_file():
                raise BenchError("--import: file not found", path)
            spec = importlib.util.spec_from_file_location(mod_name, path)
            if spec is None or spec.loader is None:
                raise BenchError("cannot import this file", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as exc:  # the plug-in's own error, said in one line with where it happened
                del sys.modules[mod_name]
                raise BenchError(f"--import: {type(exc).__name__}: {exc}{_where(exc, path)}", path) from None
        else:
            try:
                importlib.import_module(name)
            except ModuleNotFoundError as exc:
                raise BenchError(f"--import {name}: module not found ({exc.name})") from None


def _where(exc: BaseException, path: Path) -> str:
    """` (line N)` of the innermost frame of `exc` inside `path` (none for an error raised elsewhere)."""
    import traceback

    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve() == path]
    return f" (line {lines[-1]})" if lines else ""


def main(argv=None) -> int:
    """`python -m benchmark.runner CELL_DIR` (alone or under torchrun; see `benchmark/runner/__main__.py`). Exit 0
    done/skipped, 1 failed,
    3 busy."""
    parser = argparse.ArgumentParser(prog="python -m benchmark.runner", description=main.__doc__)
    parser.add_argument("cell_dir")
    parser.add_argument("--overwrite", default="missing", choices=OVERWRITE)
    parser.add_argument("--owner", default=os.environ.get("NOISYBOX_CLAIM_OWNER"))
    parser.add_argument("--import", dest="imports", action="append", default=[])
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if "LOCAL_RANK" in os.environ:  # a torchrun worker: never outlive the launcher
        from benchmark.runner.process import die_with_parent

        die_with_parent()
    try:
        import_modules(args.imports)
        out = run_cell(args.cell_dir, overwrite=args.overwrite, owner=args.owner, progress=not args.no_progress)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a helper rank (torchrun RANK > 0) failing; rank 0 records the cell's failure
        print(f"error: rank {_rank()}: {one_line(exc)}", file=sys.stderr)
        return 1
    if out["status"] == "failed":
        print(f"error: {out['label']}: {out['error']} (log: {out['log']})", file=sys.stderr)
        return 1
    return 3 if out["status"] == "busy" else 0


if __name__ == "__main__":
    sys.exit(main())
