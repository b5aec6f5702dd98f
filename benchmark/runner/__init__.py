"""The sweep runner: grid expansion, cell identity, the results store, executors and `bench run`.

    from benchmark.runner import SweepOptions, run_sweep
    run_sweep(SweepOptions(methods="ssd_det", noise="0.1..0.4", store="results"))

Modules: `grid` (lists -> CellSpec), `cells` (resolved config + hash), `store` (layout, status, claims, DONE),
`run_cell` (one cell; also `python -m benchmark.runner CELL_DIR` under torchrun), `executors` (local
workers, torchrun, submitit), `sweep` (plan / execute / summary), `api` (options -> sweep), `cli` (`bench run`).
"""

from benchmark.runner.api import SweepOptions, dry_run, run_sweep
from benchmark.runner.cells import Cell, cell_id, resolve, resolve_all
from benchmark.runner.grid import CellSpec, expand_grid, parse_levels, parse_seeds
from benchmark.runner.run_cell import run_cell
from benchmark.runner.store import Store

__all__ = ["Cell", "CellSpec", "Store", "SweepOptions", "cell_id", "dry_run", "expand_grid", "parse_levels",
           "parse_seeds", "resolve", "resolve_all", "run_cell", "run_sweep"]
