"""Executors: where the cells of a sweep run. None of them keeps state: the store's claims and DONE markers do.

- `LocalExecutor`: N long-lived worker processes ("slots") on this machine, each running one cell at a time with its
  own thread count (on CPU one 1-thread worker per core gives the best throughput) or its own GPU(s). Workers import
  torch once, die with the runner (so `kill -9` leaves no orphan writing into the store), and a worker that dies
  (out of memory, segfault) fails only its own cell; a fresh worker takes its slot.
- `run_torchrun`: a multi-GPU cell, `torchrun --nproc_per_node N -m benchmark.runner CELL_DIR`, launched by
  the slot (or Slurm job) that claimed the cell.
- `SubmititExecutor`: one Slurm job array through submitit; `CellJob` is checkpointable, so a preempted or timed-out
  job is requeued and its cell resumes from the last training checkpoint. `cluster="local"` runs the same path on
  this machine (tests).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait as wait_any
from pathlib import Path

from benchmark.errors import BenchError
from benchmark.io import read_json, write_json
from benchmark.runner import store as st
from benchmark.runner.process import die_with_parent, pdeathsig

OnResult = Callable[[dict], None]


def set_threads(threads: int) -> None:
    """Thread count for the math libraries, set before torch is imported (and on torch if it already is)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


def _died_result(cell_dir: Path, exitcode: int | None) -> dict:
    from benchmark.store_layout import label

    how = f"signal {-exitcode}" if exitcode is not None and exitcode < 0 else f"exit code {exitcode}"
    hint = "; out of memory?" if exitcode == -signal.SIGKILL else ""
    message = f"worker process died ({how}{hint})"
    try:
        name = label(read_json(cell_dir / st.CONFIG))
    except BenchError:
        name = cell_dir.name
    if not (cell_dir / st.DONE).exists():
        try:
            write_json(cell_dir / st.FAILED, {"error": message, "time": time.time(), "host": st.HOST})
        except BenchError:
            pass
    return {"cell": cell_dir.name, "label": name, "status": "failed", "error": message,
            "log": str(cell_dir / st.LOG), "seconds": 0.0}


# ---- torchrun -------------------------------------------------------------------------------------------------
def run_torchrun(cell_dir: str | Path, nproc: int, *, overwrite: str = "missing", imports: Sequence[str] = (),
                 progress: bool = True) -> dict:
    """Claim the cell here, then run it as `nproc` torchrun processes (rank 0 re-enters this claim)."""
    from benchmark.runner.run_cell import overwrite_decision, result
    from benchmark.store_layout import label

    cell_dir = Path(cell_dir).resolve()
    name = label(read_json(cell_dir / st.CONFIG))
    claim = st.Claim.acquire(cell_dir)
    if claim is None:
        return result(cell_dir, "busy", "claimed by another runner", name=name)
    t0 = time.perf_counter()
    try:
        _, skipped = overwrite_decision(cell_dir, overwrite, name)
        if skipped is not None:
            return skipped
        claim.start_heartbeat()
        (cell_dir / st.FAILED).unlink(missing_ok=True)  # so a stale message is never reported for this attempt
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
               "-m", "benchmark.runner", str(cell_dir), "--overwrite", overwrite, "--owner", claim.owner]
        for mod in imports:
            cmd += ["--import", mod]
        if not progress:
            cmd.append("--no-progress")
        rc = subprocess.call(cmd, preexec_fn=pdeathsig)
        status = st.cell_status(cell_dir, ignore_claim=True)
        seconds = time.perf_counter() - t0
        if status == st.DONE_S:
            return result(cell_dir, "done", seconds=seconds, name=name)
        try:
            error = read_json(cell_dir / st.FAILED)["error"]
        except (BenchError, KeyError, TypeError):
            error = f"torchrun exited with code {rc}"
        return result(cell_dir, "failed", error, seconds, name=name)
    finally:
        claim.release()


# ---- local worker pool ----------------------------------------------------------------------------------------
def _slot_main(conn, slot: int, threads: int, gpus: list[str] | None, nproc: int, imports: tuple, progress: bool,
               overwrite: str, parent_pid: int) -> None:
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the runner, which stops the workers
    signal.signal(signal.SIGTERM, _interrupt)
    set_threads(threads)
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    os.environ["TQDM_POSITION"] = str(slot + 1)  # the per-cell bar sits under the runner's overall bar
    from benchmark.runner.run_cell import import_modules, one_line, result, run_cell

    startup_error = None
    try:
        import_modules(imports)
    except Exception as exc:  # reported with every cell instead of killing the worker
        startup_error = one_line(exc)
    while True:
        try:
            cell_dir = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if cell_dir is None:
            return
        try:
            if startup_error:
                out = result(Path(cell_dir), "failed", startup_error)
            elif nproc > 1:
                out = run_torchrun(cell_dir, nproc, overwrite=overwrite, imports=imports, progress=progress)
            else:
                out = run_cell(cell_dir, overwrite=overwrite, progress=progress)
        except KeyboardInterrupt:
            return
        except Exception as exc:  # a problem outside the cell's own error handling (e.g. unreadable config)
            out = result(Path(cell_dir), "failed", one_line(exc))
        conn.send(out)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


class _Slot:
    def __init__(self, ctx, index: int, args: tuple):
        self.ctx, self.index, self.args = ctx, index, args
        self.cell: Path | None = None
        self.start()

    def start(self) -> None:
        self.conn, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_slot_main, args=(child, self.index, *self.args, os.getpid()),
                                     name=f"bench-worker-{self.index}")
        self.proc.start()
        child.close()

    def stop(self, interrupt: bool) -> None:
        """Idle worker: ask it to exit. Busy worker (interrupt): SIGTERM, which it turns into KeyboardInterrupt so
        the cell logs the interruption and releases its claim; SIGKILL if it does not exit within 10 s."""
        if interrupt:
            self.proc.terminate()
        else:
            try:
                self.conn.send(None)
            except (OSError, ValueError):
                pass
        self.proc.join(10.0)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


class LocalExecutor:
    """Run cells on this machine with `jobs` workers of `threads` threads each (and `gpu_groups[i]` GPUs)."""

    def __init__(self, jobs: int, threads: int = 1, gpu_groups: list[list[str]] | None = None,
                 gpus_per_cell: int = 0, imports: Sequence[str] = (), progress: bool = True,
                 overwrite: str = "missing"):
        if jobs < 1:
            raise BenchError(f"--jobs must be at least 1, got {jobs}")
        self.jobs, self.threads, self.gpu_groups = jobs, max(1, threads), gpu_groups
        self.nproc = max(1, gpus_per_cell)
        self.imports, self.progress, self.overwrite = tuple(imports), progress, overwrite

    def run(self, cell_dirs: Sequence[Path], on_result: OnResult) -> None:
        queue = deque(Path(d) for d in cell_dirs)
        if not queue:
            return
        ctx = mp.get_context("spawn")  # torch and fork do not mix; workers import what they need once
        slots: list[_Slot] = []
        interrupted = False
        try:
            for i in range(min(self.jobs, len(queue))):
                gpus = self.gpu_groups[i] if self.gpu_groups else None
                slots.append(_Slot(ctx, i, (self.threads, gpus, self.nproc, self.imports, self.progress,
                                            self.overwrite)))
            while queue or any(s.cell for s in slots):
                for s in slots:
                    if s.cell is None and queue:
                        s.cell = queue.popleft()
                        s.conn.send(str(s.cell))
                watch = {}
                for s in slots:
                    if s.cell is not None:
                        watch[s.conn] = s
                        watch[s.proc.sentinel] = s
                for ready in wait_any(list(watch)):
                    s = watch[ready]
                    if s.cell is None:
                        continue
                    out = None
                    try:
                        if s.conn.poll():
                            out = s.conn.recv()
                    except (EOFError, OSError):
                        out = None
                    if out is None:
                        if s.proc.is_alive():
                            continue
                        s.proc.join()
                        out = _died_result(s.cell, s.proc.exitcode)
                        s.start()
                    s.cell = None
                    on_result(out)
        except BaseException:
            interrupted = True  # Ctrl-C, or the sweep stops early: workers release their claims and exit
            raise
        finally:
            for s in slots:
                s.stop(interrupt=interrupted and s.cell is not None)


class InlineExecutor:
    """Run cells one after another in this process: for cells that train nothing (external detections)."""

    def __init__(self, overwrite: str = "missing", progress: bool = False):
        self.overwrite, self.progress = overwrite, progress

    def run(self, cell_dirs: Sequence[Path], on_result: OnResult) -> None:
        from benchmark.runner.run_cell import run_cell

        for cell_dir in cell_dirs:
            on_result(run_cell(cell_dir, overwrite=self.overwrite, progress=self.progress))


# ---- Slurm (submitit) -----------------------------------------------------------------------------------------
try:
    from submitit.helpers import Checkpointable as _Checkpointable
except ImportError:  # submitit is optional (extra `slurm`)
    _Checkpointable = object


class CellJob(_Checkpointable):
    """The callable a Slurm array task runs. Checkpointable: on preemption or timeout submitit calls `checkpoint`
    and requeues the same call; the claim (owned by the array task's id) and the engine's checkpoint let the
    requeued task resume where the interrupted one stopped."""

    def __init__(self, overwrite: str = "missing", imports: Sequence[str] = (), gpus_per_cell: int = 1,
                 threads: int = 1):
        self.overwrite, self.imports = overwrite, tuple(imports)
        self.gpus_per_cell, self.threads = gpus_per_cell, threads

    def __call__(self, cell_dir: str) -> dict:
        from benchmark.runner.run_cell import import_modules, run_cell

        set_threads(self.threads)
        import_modules(self.imports)
        if self.gpus_per_cell > 1:
            return run_torchrun(cell_dir, self.gpus_per_cell, overwrite=self.overwrite, imports=self.imports,
                                progress=False)
        return run_cell(cell_dir, overwrite=self.overwrite, progress=False)


def _require_slurm() -> None:
    """submitit's AutoExecutor quietly runs the jobs on this machine when it finds no Slurm; `--executor slurm`
    asked for Slurm, so say it is missing instead of training the whole sweep locally, one cell at a time."""
    from submitit.slurm.slurm import SlurmExecutor

    if SlurmExecutor.affinity() <= 0:
        raise BenchError("--executor slurm: Slurm is not available on this machine (no `srun` on PATH); run on a "
                         "Slurm login node, or use --executor local")


class SubmititExecutor:
    """Submit cells as one submitit job array (Slurm, or `cluster="local"` for tests) and wait for them."""

    def __init__(self, folder: Path, *, cluster: str | None = None, partition: str | None = None,
                 gpus_per_task: int = 0, cpus_per_task: int = 1, timeout_min: int = 24 * 60,
                 mem_gb: float | None = None, array_parallelism: int = 256, gpus_per_cell: int = 1,
                 imports: Sequence[str] = (), overwrite: str = "missing", wait: bool = True, poll_s: float = 5.0,
                 slurm_args: dict | None = None):
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise BenchError("--executor slurm needs submitit: pip install 'noisybox-bench[slurm]'") from None
        if cluster is None:
            _require_slurm()
        self.folder, self.cluster = Path(folder), cluster
        params = {"timeout_min": timeout_min, "cpus_per_task": cpus_per_task, "tasks_per_node": 1, "nodes": 1,
                  "name": "noisybox", "slurm_array_parallelism": array_parallelism}
        if gpus_per_task:
            params["gpus_per_node"] = gpus_per_task
        if mem_gb:
            params["mem_gb"] = mem_gb
        if partition:
            params["slurm_partition"] = partition
        if slurm_args:
            params["slurm_additional_parameters"] = dict(slurm_args)
        self.params = params
        self.job = CellJob(overwrite, imports, gpus_per_cell=max(gpus_per_cell, 1), threads=cpus_per_task)
        self.wait, self.poll_s = wait, poll_s
        self.jobs: list = []

    def run(self, cell_dirs: Sequence[Path], on_result: OnResult) -> None:
        import submitit

        if not cell_dirs:
            return
        executor = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
        executor.update_parameters(**self.params)
        self.jobs = executor.map_array(self.job, [str(d) for d in cell_dirs])
        scheduler = "local" if executor.cluster == "local" else "slurm"
        if executor.cluster != "debug":  # debug jobs ran in this process already
            for job, cell_dir in zip(self.jobs, cell_dirs):
                if not (Path(cell_dir) / st.DONE).exists():
                    st.mark_queued(Path(cell_dir), job.job_id, scheduler)
        if not self.wait:
            return
        pending = dict(zip(self.jobs, cell_dirs))
        while pending:
            for job, cell_dir in list(pending.items()):
                if not job.done():
                    continue
                del pending[job]
                try:
                    out = job.result()
                except Exception as exc:  # the job itself failed (node failure, cancelled, import error...)
                    out = _died_result(Path(cell_dir), None)
                    out["error"] = f"job {job.job_id} failed: {str(exc).strip().splitlines()[-1][:300]}"
                    out["log"] = str(job.paths.stderr)
                on_result(out)
            if pending:
                time.sleep(self.poll_s)
