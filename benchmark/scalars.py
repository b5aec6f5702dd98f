"""Training scalars (losses, lr, time, method diagnostics) written as the run goes, for curves.

`scalars.csv` is always written: one row per logged iteration, a column per scalar. It is the file reports read, so
a sweep's curves need no tracker. TensorBoard and Weights & Biases are optional sinks of the same rows
(`train.loggers`, extras `[tensorboard]` / `[wandb]`); both are imported only when asked for.

Resuming keeps the rows up to the checkpoint's iteration and drops the ones written after it (the run repeats
those iterations), so a resumed run's file equals an uninterrupted run's.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

from benchmark.errors import BenchError
from benchmark.io import atomic_write_text

LOGGERS = ("csv", "tensorboard", "wandb")
CSV_NAME = "scalars.csv"
FIRST_COLUMNS = ("iteration", "epoch", "lr", "seconds")


def check_loggers(value) -> list[str]:
    """`train.loggers`: a list drawn from LOGGERS that includes csv (reports read it)."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BenchError(f"train.loggers must be a list of names from {', '.join(LOGGERS)}, got {value!r}")
    unknown = [v for v in value if v not in LOGGERS]
    if unknown:
        raise BenchError(f"train.loggers: unknown logger {unknown[0]!r} (known: {', '.join(LOGGERS)})")
    if "csv" not in value:
        raise BenchError("train.loggers must include csv (reports draw the curves from scalars.csv)")
    return value


def read_scalars(path: Path) -> list[dict[str, float]]:
    """Rows of a `scalars.csv` as floats (empty cells are NaN); a row cut short by a kill is left out."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchError(f"cannot read training scalars: {exc}", path) from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header or header[0] != "iteration":
        return []
    rows = []
    for fields in reader:
        if len(fields) != len(header):
            continue
        try:
            rows.append({k: float(v) if v != "" else math.nan for k, v in zip(header, fields)})
        except ValueError:
            continue
    return rows


def _format(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.6g}" if isinstance(v, float) else str(v)


class ScalarLog:
    """Writes rows to `workdir/scalars.csv` and the configured trackers; only the main process makes one."""

    def __init__(self, workdir: Path, loggers: list[str], resume_iteration: int | None, run_name: str,
                 config: dict):
        self.path = Path(workdir) / CSV_NAME
        self.rows: list[dict] = []
        self.columns: list[str] = list(FIRST_COLUMNS)
        if resume_iteration is not None:
            self.rows = [r for r in read_scalars(self.path) if r["iteration"] <= resume_iteration]
            for row in self.rows:
                self.columns += [k for k in row if k not in self.columns]
        self._rewrite()
        self.tb = self.wandb = None
        if "tensorboard" in loggers:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise BenchError("train.loggers has tensorboard but it is not installed "
                                 "(pip install 'noisybox-bench[tensorboard]')") from None
            self.tb = SummaryWriter(log_dir=str(Path(workdir) / "tensorboard"),
                                    purge_step=None if resume_iteration is None else resume_iteration + 1)
        if "wandb" in loggers:
            try:
                import wandb
            except ImportError:
                raise BenchError("train.loggers has wandb but it is not installed "
                                 "(pip install 'noisybox-bench[wandb]')") from None
            # one run per cell (id = the cell's name, so a resumed cell continues its run), grouped by the store
            # the cell belongs to (or WANDB_RUN_GROUP); WANDB_PROJECT and WANDB_MODE=offline are wandb's own
            workdir = Path(workdir).resolve()
            store = workdir.parents[2].name if len(workdir.parents) > 2 and workdir.parents[1].name == "cells" else None
            self.wandb = wandb.init(project=os.environ.get("WANDB_PROJECT", "noisybox-bench"), name=run_name,
                                    id=run_name, group=os.environ.get("WANDB_RUN_GROUP", store), resume="allow",
                                    config=config, dir=str(workdir))

    def _rewrite(self) -> None:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.columns)
        for row in self.rows:
            writer.writerow([_format(row.get(k)) for k in self.columns])
        atomic_write_text(self.path, out.getvalue())

    def log(self, row: dict[str, float]) -> None:
        self.rows.append(row)
        new = [k for k in row if k not in self.columns]
        if new:  # a scalar that appeared later (a method's diagnostics start in its second phase): new header
            self.columns += new
            self._rewrite()
        else:
            with open(self.path, "a", encoding="utf-8", newline="") as fh:
                csv.writer(fh, lineterminator="\n").writerow([_format(row.get(k)) for k in self.columns])
        step = int(row["iteration"])
        values = {k: v for k, v in row.items() if k != "iteration" and isinstance(v, (int, float))}
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(f"train/{k}", v, step)
        if self.wandb is not None:
            self.wandb.log({f"train/{k}": v for k, v in values.items()}, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()
