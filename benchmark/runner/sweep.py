"""A sweep: resolve the grid, decide which cells to run from the store's state, run them, summarise.

Which cells run (`overwrite`, after MTEB's strategies):
- `missing` (default): every cell that is not done: new ones, half-trained ones (resumed from their checkpoint),
  failed ones and corrupted ones (redone from scratch);
- `never`: only cells that were never started; existing cell directories are left exactly as they are;
- `always`: every cell, from scratch.
Cells another live runner holds, or that a submitted scheduler job will run (`queued`), are left to it and counted as
`busy`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.errors import BenchError
from benchmark.runner import store as st
from benchmark.runner.cells import Cell, DatasetCache, resolve_all
from benchmark.runner.grid import CellSpec

OVERWRITE = ("never", "missing", "always")


@dataclass
class Planned:
    cell: Cell
    status: str  # store status before the sweep
    action: str  # "run", "resume", "redo", "skip", "busy", "keep"


@dataclass
class Summary:
    store: Path
    cells: list[Cell]
    done: list[dict] = field(default_factory=list)
    skipped: list[Cell] = field(default_factory=list)  # already done (or kept with --overwrite never)
    kept: list[Cell] = field(default_factory=list)  # the skipped cells that are not done (--overwrite never)
    failed: list[dict] = field(default_factory=list)
    busy: list[dict] = field(default_factory=list)
    aborted: str | None = None  # why the sweep stopped early (e.g. disk full)
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        return {"cells": len(self.cells), "done": len(self.done), "skipped": len(self.skipped),
                "failed": len(self.failed), "busy": len(self.busy)}


def action_for(status: str, overwrite: str) -> str:
    if overwrite not in OVERWRITE:
        raise BenchError(f"--overwrite must be one of {', '.join(OVERWRITE)}, got {overwrite!r}")
    if status in (st.RUNNING, st.QUEUED_S):
        return "busy"
    if overwrite == "always":
        return "redo" if status != st.MISSING else "run"
    if status == st.DONE_S:
        return "skip"
    if status == st.MISSING:
        return "run"
    if overwrite == "never":
        return "keep"
    return {st.PARTIAL: "resume", st.FAILED_S: "resume", st.CORRUPT: "redo"}[status]


def plan(specs: list[CellSpec], store: st.Store, overwrite: str = "missing",
         datasets: DatasetCache | None = None, gpu: bool | None = None, weights: str | Path | None = None) -> list[Planned]:
    cells = resolve_all(specs, datasets, gpu, weights)
    out = []
    for cell in cells:
        status = store.status(cell.id)
        out.append(Planned(cell, status, action_for(status, overwrite)))
    return out


def format_plan(planned: list[Planned]) -> str:
    rows = [("cell", "method", "dataset", "noise", "level", "seed", "profile", "status", "action")]
    for p in planned:
        c = p.cell.config
        rows.append((p.cell.id, c["method"], c["dataset"]["name"], c["noise"]["model"], f"{c['noise']['level']:g}",
                     str(c["seed"]), c["profile"], p.status, p.action))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    counts: dict[str, int] = {}
    for p in planned:
        counts[p.action] = counts.get(p.action, 0) + 1
    lines.append(f"{len(planned)} cells: " + ", ".join(f"{n} {a}" for a, n in sorted(counts.items())))
    return "\n".join(lines)


def longest_first(todo: list[Planned]) -> list[Planned]:
    """Cells in order of their method's `relative_cost`, costliest first (stable: grid order otherwise), so the
    workers finish together instead of one long cell running alone at the end."""
    from methods import METHODS

    def cost(p: Planned) -> float:
        adapter = METHODS.get(p.cell.method) if p.cell.method in METHODS else None  # external cells: no adapter
        return float(getattr(adapter, "relative_cost", 1.0) or 1.0)

    return sorted(todo, key=lambda p: -cost(p))


def execute(planned: list[Planned], store: st.Store, executor, *, progress: bool = True,
            echo: Callable[[str], None] = print) -> Summary:
    """Run the planned cells with `executor` (LocalExecutor / SubmititExecutor); one failure never stops the rest,
    a full disk stops the sweep (every later cell would fail the same way)."""
    t0 = time.perf_counter()
    summary = Summary(store.root, [p.cell for p in planned])
    todo = [p for p in planned if p.action in ("run", "resume", "redo")]
    summary.skipped = [p.cell for p in planned if p.action in ("skip", "keep")]
    summary.kept = [p.cell for p in planned if p.action == "keep"]
    summary.busy = [{"cell": p.cell.id, "label": p.cell.label()} for p in planned if p.action == "busy"]
    if todo:
        store.ensure_writable()
        for p in todo:
            store.write_config(p.cell.config)
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="cells", unit="cell", file=sys.stderr, position=0, dynamic_ncols=True)

    class _DiskFull(Exception):
        pass

    def on_result(out: dict) -> None:
        status = out["status"]
        if status == "done":
            summary.done.append(out)
        elif status == "skipped":
            summary.skipped.append(next(p.cell for p in todo if p.cell.id == out["cell"]))
            if out.get("error"):  # not done, kept as it is (`run_cell.overwrite_decision`)
                summary.kept.append(summary.skipped[-1])
        elif status == "busy":
            summary.busy.append(out)
        else:
            summary.failed.append(out)
            msg = f"failed: {out['label']}: {out['error']} (log: {out['log']})"
            (bar.write(msg, file=sys.stderr) if bar else echo(msg))
            if st.is_disk_full(out.get("error") or ""):
                raise _DiskFull(out["error"])
        if bar:
            bar.update(1)
            bar.set_postfix(done=len(summary.done), failed=len(summary.failed), refresh=False)

    try:
        executor.run([store.cell_dir(p.cell.id) for p in longest_first(todo)], on_result)
    except _DiskFull as exc:
        summary.aborted = f"stopped: no space left on device under {store.root} ({exc}); free space and rerun"
    finally:
        if bar:
            bar.close()
    summary.seconds = time.perf_counter() - t0
    return summary


def format_summary(summary: Summary) -> str:
    c = summary.counts()
    kept = len(summary.kept)
    line = (f"{c['cells']} cells: {c['done']} done, {c['skipped'] - kept} skipped (already done), "
            + (f"{kept} kept unfinished (--overwrite never), " if kept else "") + f"{c['failed']} failed"
            + (f", {c['busy']} running or queued elsewhere" if c["busy"] else "") + f" in {summary.seconds:.0f} s")
    lines = [line]
    for out in summary.failed:
        lines.append(f"  failed: {out['label']}: {out['error']}\n          log: {out['log']}")
    if summary.aborted:
        lines.append(summary.aborted)
    return "\n".join(lines)


def ap_table(df, cell_ids: list[str], metric: str = "AP") -> str:
    """Method x noise level, mean ± std over seeds as shown (AP points: x100, one decimal, the registry's scale);
    empty if nothing is done."""
    from benchmark.evaluation import metrics as registry

    sub = df[df["cell"].isin(cell_ids)]
    if sub.empty or metric not in sub:
        return ""
    sub = sub.assign(points=sub[metric].astype(float) * registry.scale(metric))
    lines = []
    for dataset, part in sub.groupby("dataset", sort=True):
        grouped = part.groupby(["method", "noise_level"])["points"].agg(["mean", "std", "count"])
        levels = sorted(part["noise_level"].unique())
        methods = list(dict.fromkeys(part.sort_values(["noise_level"])["method"]))
        header = [f"{registry.label(metric)} ({dataset})"] + [("clean" if lv == 0 else f"{lv:g}") for lv in levels]
        rows = [header]
        for m in methods:
            row = [m]
            for lv in levels:
                if (m, lv) not in grouped.index:
                    row.append("-")
                    continue
                mean, std, n = grouped.loc[(m, lv)]
                if not n:  # every cell's metric undefined (NaN): not zero
                    row.append("–")
                    continue
                row.append(f"{mean:.1f}" + (f" ± {std:.1f}" if n > 1 else ""))
            rows.append(row)
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines += ["  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths)))
                  for r in rows]
        lines.append("")
    return "\n".join(lines).rstrip()


MIN_ORACLE_AP = 1.0  # AP points; the report's threshold too (reports.tables.MIN_ORACLE_AP): below it nothing learned


def oracle_warnings(df, cell_ids: list[str]) -> list[str]:
    """One line per dataset of this run whose clean oracle (mean over seeds) is below `MIN_ORACLE_AP` AP points:
    then every number of the table is noise, and the user should hear it at the end of the run, with what to try."""
    from benchmark.runner.grid import ORACLE_METHOD

    sub = df[df["cell"].isin(cell_ids)]
    if sub.empty or "AP" not in sub:
        return []
    oracle = sub[sub["method"].astype(str).str.split(" [", regex=False).str[0] == ORACLE_METHOD]
    lines = []
    for dataset, part in oracle.groupby("dataset", sort=True):
        ap = float(part["AP"].astype(float).mean()) * 100
        if not ap < MIN_ORACLE_AP:  # NaN (no AP) is not "learned nothing"
            continue
        iters = part["train_iterations"].dropna() if "train_iterations" in part else []
        budget = f" ({int(iters.iloc[0])} iterations)" if len(iters) else ""
        lines.append(
            f"warning: the clean oracle learned nothing on {dataset}: AP {ap:.1f} < {MIN_ORACLE_AP:g} point, so the "
            f"numbers above are noise. Try a trained start: ImageNet weights (--set model.backbone=mobilenet_v3_large "
            f"--set model.pretrained=true from torchvision's cache, or --set model.weights=PATH to a torchvision "
            f"state dict), or the suite's tiny weights if you turned them off (model.pretrained=true); and more "
            f"iterations{budget} (--set train.iters_per_epoch=N).")
    return lines
