"""`bench run` as a Python call: options -> grid -> plan -> executor -> summary, AP table, results files, report."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.errors import BenchError, ReportedInterrupt
from benchmark.runner import store as st
from benchmark.runner.cells import DatasetCache
from benchmark.runner.devices import cpu_count, visible_gpus
from benchmark.runner.grid import expand_grid, parse_levels, parse_methods, parse_seeds, parse_set_options
from benchmark.runner.sweep import Summary, ap_table, execute, format_plan, format_summary, oracle_warnings, plan


@dataclass
class SweepOptions:
    methods: str | list[str]
    noise: str | list[float] = "0.1..0.4"
    seeds: str | list[int] = "1"
    datasets: list[str] = field(default_factory=lambda: ["shapes"])
    noise_model: str = "uniform"
    noise_params: dict = field(default_factory=dict)
    noise_seed: int | str | None = None
    noise_rng: str = "numpy"
    profile: str | None = None
    sets: list[str] = field(default_factory=list)
    baselines: bool = True
    store: Path = Path("results")
    overwrite: str = "missing"
    executor: str = "local"
    jobs: int | None = None
    threads: int | None = None
    gpus_per_cell: int = 1
    partition: str | None = None
    gpus_per_task: int | None = None
    cpus_per_task: int = 4
    timeout_min: int = 24 * 60
    mem_gb: float | None = None
    array_parallelism: int = 256
    slurm_args: dict = field(default_factory=dict)
    wait: bool = True
    cluster: str | None = None
    imports: list[str] = field(default_factory=list)
    report: bool = True
    progress: bool = True
    external: list[str] = field(default_factory=list)  # detections files: score them as cells, train nothing
    external_options: dict = field(default_factory=dict)  # classes / category_ids / match_images (load_detections)
    weights: Path | None = None  # local initial weights for every cell (cells.weights_identity)
    offline: bool = False  # the cells cannot download: pretrained weights must be in the torch cache (preflight)
    cells: list | None = None  # explicit `CellSpec`s instead of the methods x levels x seeds grid (`bench reproduce`)


def grid(o: SweepOptions):
    if o.cells is not None:  # a sweep that is not a full product (a paper table: each method at its own levels)
        return list(o.cells)
    methods = parse_methods(o.methods) if isinstance(o.methods, str) else list(o.methods)
    levels = parse_levels(o.noise) if isinstance(o.noise, str) else list(o.noise)
    seeds = parse_seeds(o.seeds) if isinstance(o.seeds, str) else list(o.seeds)
    return expand_grid(methods, levels, seeds, o.datasets, noise_model=o.noise_model, noise_params=o.noise_params,
                       noise_seed=o.noise_seed, noise_rng=o.noise_rng, profile=o.profile,
                       overrides=parse_set_options(o.sets), baselines=o.baselines)


def local_layout(o: SweepOptions) -> tuple[int, int, list[list[str]] | None]:
    """(jobs, threads per job, GPU ids per job). GPU machine: one job per group of `gpus_per_cell` GPUs;
    CPU: one 1-thread job per core (measured: two 1-thread trainings give ~1.6x the throughput of one 2-thread), or
    as many `--threads`-thread jobs as fit the cores."""
    if o.gpus_per_cell < 1:
        raise BenchError(f"--gpus-per-cell must be at least 1, got {o.gpus_per_cell}")
    for flag, value in (("--jobs", o.jobs), ("--threads", o.threads)):
        if value is not None and value < 1:
            raise BenchError(f"{flag} must be at least 1, got {value}")
    per = o.gpus_per_cell
    gpus = visible_gpus()
    cores = cpu_count()
    if gpus:
        groups = [gpus[i:i + per] for i in range(0, len(gpus) - per + 1, per)]
        if not groups:
            raise BenchError(f"--gpus-per-cell {per}: only {len(gpus)} GPU(s) visible")
        jobs = o.jobs or len(groups)
        layout = [groups[i % len(groups)] for i in range(jobs)]
    else:
        jobs = o.jobs or max(1, cores // (per * (o.threads or 1)))  # --threads 4 on 16 cores: 4 jobs, not 16
        layout = None
    threads = o.threads or max(1, cores // (jobs * per))
    return jobs, threads, layout


def planned_cells(o: SweepOptions, store: st.Store):
    """The sweep's cells with their status and action: the training grid, or the cells of `--external` files."""
    if o.external:
        from benchmark.runner.external import plan_external

        return plan_external(o.external, o.methods, o.noise, o.seeds, o.datasets, store,
                             noise_model=o.noise_model, noise_params=o.noise_params, noise_seed=o.noise_seed,
                             noise_rng=o.noise_rng, profile=o.profile, read_options=o.external_options,
                             overwrite=o.overwrite, cache=DatasetCache(progress=o.progress))
    return plan(grid(o), store, o.overwrite, DatasetCache(progress=o.progress), gpu=runs_on_gpu(o), weights=o.weights)


def preflight(o: SweepOptions, planned) -> list[str]:
    """Before any cell is submitted: the ImageNet weights the cells to run need (`benchmark.weights.preflight`):
    one error naming them when downloads are off, else notes to print."""
    from benchmark.weights import preflight as weights_preflight

    configs = [p.cell.config.get("method_config", {}).get("model", {}) for p in planned
               if p.action in ("run", "resume", "redo") and "external" not in p.cell.config]
    return weights_preflight(configs, offline=o.offline)


def make_executor(o: SweepOptions, store: st.Store):
    from benchmark.runner.executors import InlineExecutor, LocalExecutor, SubmititExecutor

    if o.external:  # scoring files is quick and needs no worker processes
        return InlineExecutor(o.overwrite, progress=False)
    if o.executor == "local":
        _refuse_slurm_options(o)
        jobs, threads, gpu_groups = local_layout(o)
        return LocalExecutor(jobs, threads, gpu_groups, gpus_per_cell=o.gpus_per_cell, imports=o.imports,
                             progress=o.progress, overwrite=o.overwrite)
    if o.executor == "slurm":
        gpus_per_task = o.gpus_per_cell if o.gpus_per_task is None else o.gpus_per_task
        return SubmititExecutor(store.root / "slurm", cluster=o.cluster, partition=o.partition,
                                gpus_per_task=gpus_per_task, cpus_per_task=o.cpus_per_task,
                                timeout_min=o.timeout_min, mem_gb=o.mem_gb, array_parallelism=o.array_parallelism,
                                gpus_per_cell=o.gpus_per_cell, imports=o.imports, overwrite=o.overwrite,
                                wait=o.wait, slurm_args=o.slurm_args)
    raise BenchError(f"--executor must be local or slurm, got {o.executor!r}")


_SLURM_FLAGS = {"partition": "--partition", "gpus_per_task": "--gpus-per-task", "cpus_per_task": "--cpus-per-task",
                "timeout_min": "--timeout-min", "mem_gb": "--mem-gb", "array_parallelism": "--array-parallelism",
                "slurm_args": "--slurm-arg", "wait": "--no-wait"}


def _refuse_slurm_options(o: SweepOptions) -> None:
    """Slurm-only options with the local executor would be dropped without a word (`--partition gpu` without
    `--executor slurm` trains here): say so instead."""
    defaults = SweepOptions(o.methods)
    given = [flag for name, flag in _SLURM_FLAGS.items() if getattr(o, name) != getattr(defaults, name)]
    if given:
        verb, them = ("applies", "it") if len(given) == 1 else ("apply", "them")
        raise BenchError(f"{', '.join(given)} {verb} to --executor slurm only (this sweep runs locally); add "
                         f"--executor slurm or leave {them} out")


def runs_on_gpu(o: SweepOptions) -> bool:
    """Whether the cells will have GPUs: Slurm tasks asking for some, or this machine's."""
    if o.executor == "slurm":
        return (o.gpus_per_cell if o.gpus_per_task is None else o.gpus_per_task) > 0
    return bool(visible_gpus())


def dry_run(o: SweepOptions) -> str:
    """The cells of the sweep, their status in the store and what `bench run` would do; nothing is written."""
    from benchmark.runner.run_cell import import_modules

    import_modules(o.imports)
    planned = planned_cells(o, st.Store(o.store))
    try:
        notes = preflight(o, planned)
    except BenchError as exc:  # a dry run reports what a real run would refuse, and still lists the cells
        notes = [f"bench run would stop: {exc}"]
    return "\n".join([format_plan(planned), *notes])


def run_sweep(o: SweepOptions, echo: Callable[[str], None] = print) -> Summary:
    from benchmark import results
    from benchmark.runner.run_cell import import_modules

    import_modules(o.imports)
    store = st.Store(o.store)
    planned = planned_cells(o, store)
    for note in preflight(o, planned):
        echo(note)
    executor = make_executor(o, store)
    todo = sum(p.action in ("run", "resume", "redo") for p in planned)
    how = ""
    if o.executor == "local" and todo and not o.external:
        how = f" with {min(executor.jobs, todo)} worker(s) x {executor.threads} thread(s)"
    echo(f"{len(planned)} cells, {todo} to run{how}; results in {store.root}")
    try:
        with _terminate_as_interrupt():
            summary = execute(planned, store, executor, progress=o.progress, echo=echo)
    except KeyboardInterrupt as exc:
        echo("interrupted: finished cells are kept; rerun the same command to resume the others")
        raise ReportedInterrupt() from exc
    if o.executor == "slurm" and not o.wait and not o.external:
        echo(f"submitted {len(getattr(executor, 'jobs', []))} array task(s); logs in {store.root / 'slurm'}; "
             f"rerun the same command to collect results")
        return summary
    echo(format_summary(summary))
    if not store.cells_dir.is_dir():
        return summary
    df = results.load(store.root)
    corrupt = results.corrupt_line(results.left_out(store.root, df)[0])
    if corrupt:  # done cells this run was told not to redo (--overwrite never, or another run's cells)
        echo(corrupt)
    paths = results.write_tables(store.root, df)
    ids = [c.id for c in summary.cells]
    from benchmark.evaluation.metrics import metric_names

    for metric in metric_names(sweep=True):  # AP, AP50: the registry's `sweep` metrics
        table = ap_table(df, ids, metric)
        if table:
            echo("\n" + table)
    echo("\nresults table: " + ", ".join(str(p) for p in paths.values()))
    if o.report and not df.empty:
        _report(store.root, echo)
    for line in oracle_warnings(df, ids):  # last, where the user looks when the run ends
        echo(line)
    return summary


@contextmanager
def _terminate_as_interrupt():
    """SIGTERM (a scheduler or `kill`) stops the sweep like Ctrl-C: workers log it and release their claims."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _report(store_root: Path, echo) -> None:
    try:
        from reports import build_report
    except ImportError:
        return
    try:
        path = build_report(store_root, store_root / "report", progress=False)
    except Exception as exc:  # a report problem must not hide the sweep's results
        from benchmark.runner.run_cell import one_line

        echo(f"report not written: {one_line(exc)}")
        return
    echo(f"report: {path}")
