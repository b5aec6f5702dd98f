"""The results store: one directory per cell, completion state owned by the files themselves.

Layout (docs/architecture.md): `STORE/cells/<cell_id>/` with config.json, env.json, noise/, train/, predictions.json,
metrics.json, refined_boxes.json, cell.log, and `DONE` written last. The file names, `DONE` and the check of a done
cell against it live in `benchmark.store_layout` (shared with the results table, the reports and the leaderboard),
so a cell whose files were lost or altered afterwards is `corrupt` for every reader, and redone here.

Who runs a cell is decided by an atomic claim: `claim` is created exclusively (hard link of a complete temp file,
so it is never seen half-written; `O_EXCL` where links are unsupported) and holds owner, pid, host and start time.
A claim is stale when its process is gone (same host: pid and process start time checked) or, for another host, when
its heartbeat (the file's mtime, touched every `HEARTBEAT_S`) is older than `STALE_AFTER_S`. Stale claims are broken
by renaming them away and checking that the renamed file is the stale one; the owner's heartbeat re-reads the claim,
so a process that lost its claim in a race never writes `DONE`. Any executor can therefore be killed and restarted.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import threading
import time
import uuid
from pathlib import Path

from benchmark.errors import BenchError
from benchmark.io import atomic_write_bytes, dumps_json, read_json, write_json
from benchmark.store_layout import (  # noqa: F401 -- the layout's one owner; re-exported for the runner
    CELLS_DIR,
    CLAIM,
    CONFIG,
    CORRUPT,
    DONE,
    DONE_S,
    ENV,
    FAILED,
    FAILED_S,
    LOG,
    METRICS,
    MISSING,
    NOISE_DIR,
    OUTPUTS,
    PARTIAL,
    PREDICTIONS,
    QUEUED,
    QUEUED_S,
    REFINED,
    RESULT_FILES,
    RUNNING,
    STATUSES,
    TRAIN_DIR,
    done_problem,
    file_status,
    mark_done,
)

HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0
HOST = socket.gethostname()


class Store:
    """A results-store directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        self.cells_dir = self.root / CELLS_DIR

    def cell_dir(self, cid: str) -> Path:
        return self.cells_dir / cid

    def ensure_writable(self) -> None:
        """Fail early, in one line, when the store cannot be created or written."""
        probe = self.cells_dir / f".probe-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        try:
            self.cells_dir.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise store_error(exc, self.root) from None

    def cell_ids(self) -> list[str]:
        if not self.cells_dir.is_dir():
            return []
        return sorted(p.name for p in self.cells_dir.iterdir() if p.is_dir() and not p.name.startswith("."))

    def status(self, cid: str) -> str:
        return cell_status(self.cell_dir(cid))

    def write_config(self, config: dict) -> Path:
        """Create the cell directory with its config.json (kept if already identical)."""
        d = self.cell_dir(config["cell_id"])
        path = d / CONFIG
        data = dumps_json(config, indent=True)
        try:
            if path.is_file() and path.read_bytes() == data:
                return d
        except OSError:
            pass
        atomic_write_bytes(path, data)
        return d


def store_error(exc: OSError, path: Path) -> BenchError:
    """An OSError as the one-line message the user needs (disk full, permissions, read-only file system)."""
    where = Path(getattr(exc, "filename", None) or path)
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        return BenchError("no space left on device (free space and rerun: done cells are kept)", where)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return BenchError("permission denied (choose a results directory you can write, e.g. --out)", where)
    if exc.errno == errno.EROFS:
        return BenchError("read-only file system (choose another results directory with --out)", where)
    return BenchError(f"cannot write ({exc.strerror or exc})", where)


def is_disk_full(message: str) -> bool:
    return "no space left on device" in message.lower()


# ---- status -----------------------------------------------------------------------------------------------------
def cell_status(cell_dir: Path, ignore_claim: bool = False) -> str:
    """done / running / queued / failed / partial / corrupt / missing: the files' status
    (`store_layout.file_status`) with the claim's process and the queued job checked for life."""
    if not cell_dir.is_dir() or (cell_dir / DONE).exists():
        return file_status(cell_dir)
    return file_status(cell_dir, claimed=not ignore_claim and claim_holder(cell_dir) is not None,
                       queued=not ignore_claim and queued_job(cell_dir) is not None)


def reset(cell_dir: Path, keep_progress: bool) -> None:
    """Prepare a cell to be (re)run: DONE goes first, then the outputs; training progress and the noisy
    annotations stay when `keep_progress` (resume), everything but config.json, the claim, the log (which
    keeps the history of attempts) and the `queued` record goes otherwise. The record stays while the job runs: a
    preempted Slurm job that is requeued waits in the queue again, without a claim, and a rerun of
    `bench run --no-wait` must still see it queued instead of submitting the cell twice (`mark_done` removes it)."""
    (cell_dir / DONE).unlink(missing_ok=True)
    keep = {CONFIG, CLAIM, LOG, QUEUED} | ({TRAIN_DIR, NOISE_DIR} if keep_progress else set())
    for p in cell_dir.iterdir():
        if p.name in keep:
            continue
        if p.name.startswith(f"{CLAIM}."):  # temp files of claim operations: only ones left by a killed process
            try:
                if time.time() - p.stat().st_mtime > 60:
                    p.unlink()
            except OSError:
                pass
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)


# ---- queued scheduler jobs -------------------------------------------------------------------------------------
def mark_queued(cell_dir: Path, job_id: str, scheduler: str) -> None:
    """Record that scheduler job `job_id` ("slurm", or "local" for submitit's local executor) will run the cell, so
    a rerun of `bench run --executor slurm --no-wait` does not submit it again while the job waits in the queue."""
    write_json(Path(cell_dir) / QUEUED, {"job_id": str(job_id), "scheduler": scheduler, "host": HOST,
                                         "time": time.time()})


def queued_job(cell_dir: Path) -> dict | None:
    """The queued-job record of a cell whose job may still run it, or None (no record, or the job is gone).

    Slurm jobs are looked up with `squeue` (one call per array, cached for a few seconds); where `squeue` cannot be
    run the record is trusted, and deleting the cell's `queued` file releases the cell. Local jobs: their process."""
    try:
        info = read_json(Path(cell_dir) / QUEUED)
        job_id, scheduler = str(info["job_id"]), info.get("scheduler")
    except (BenchError, KeyError, TypeError):
        return None
    if scheduler == "local":
        alive = info.get("host") != HOST or (job_id.isdigit() and _pid_alive(int(job_id)))
    else:
        alive = _slurm_job_alive(job_id)
    return info if alive else None


_SQUEUE_CACHE: dict[str, tuple[float, set | None]] = {}
_SQUEUE_TTL_S = 10.0


def _slurm_job_alive(job_id: str) -> bool:
    """Whether Slurm still lists the job (pending, running, requeued ...); True when squeue is not available."""
    import subprocess

    array = job_id.split("_", 1)[0]
    now = time.time()
    cached = _SQUEUE_CACHE.get(array)
    if cached is None or now - cached[0] > _SQUEUE_TTL_S:
        try:
            out = subprocess.run(["squeue", "-h", "-r", "-j", array, "-o", "%i"], capture_output=True, text=True,
                                 timeout=60)
            listed = {line.strip() for line in out.stdout.splitlines() if line.strip()} if out.returncode == 0 \
                else (set() if "invalid job id" in out.stderr.lower() else None)
        except (OSError, subprocess.TimeoutExpired):
            listed = None  # cannot ask: trust the record
        cached = _SQUEUE_CACHE[array] = (now, listed)
    listed = cached[1]
    return listed is None or job_id in listed or array in listed


# ---- claims -----------------------------------------------------------------------------------------------------
def _proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (guards against pid reuse); None off Linux."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _ancestors() -> set[int]:
    """Pids of this process's parent, grandparent, ... (Linux /proc; empty elsewhere)."""
    out, pid = set(), os.getppid()
    while pid > 1 and pid not in out:
        out.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def default_owner() -> str:
    """Who is claiming: a Slurm job keeps its identity across requeues, anything else is unique per process."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if job:
        return f"slurm:{job}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    if os.environ.get("SLURM_JOB_ID"):
        return f"slurm:{os.environ['SLURM_JOB_ID']}"
    return f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _read_claim(path: Path) -> tuple[bytes, dict | None, float] | None:
    try:
        raw = path.read_bytes()
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        import orjson

        info = orjson.loads(raw)
        if not isinstance(info, dict) or "owner" not in info:
            info = None
    except ValueError:
        info = None
    return raw, info, mtime


def _live(info: dict | None, mtime: float, stale_after_s: float) -> bool:
    if info is None:  # unreadable claim: trust it only while it is young
        return time.time() - mtime < 60
    if info.get("host") == HOST and isinstance(info.get("pid"), int):
        if not _pid_alive(info["pid"]):
            return False
        start = info.get("pid_start")
        return start is None or _proc_start(info["pid"]) in (None, start)
    return time.time() - mtime < stale_after_s


def claim_holder(cell_dir: Path, stale_after_s: float = STALE_AFTER_S) -> dict | None:
    """The live claim on a cell (its content), or None if nobody holds it."""
    got = _read_claim(cell_dir / CLAIM)
    if got is None:
        return None
    _, info, mtime = got
    return (info or {"owner": "?"}) if _live(info, mtime, stale_after_s) else None


def _create_exclusive(path: Path, data: bytes) -> bool:
    """Create `path` with `data` only if it does not exist; never leaves a partly written file at `path`."""
    tmp = path.with_name(f"{CLAIM}.new.{uuid.uuid4().hex}")
    tmp.write_bytes(data)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        try:  # file systems without hard links
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _break_stale(path: Path, stale_raw: bytes) -> None:
    aside = path.with_name(f"{CLAIM}.stale.{uuid.uuid4().hex}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    try:
        if aside.read_bytes() != stale_raw:  # someone claimed it meanwhile: give it back
            try:
                os.link(aside, path)
            except FileExistsError:
                pass
    finally:
        aside.unlink(missing_ok=True)


class Claim:
    """Exclusive right to run one cell; `release()` (or the context manager) gives it back."""

    def __init__(self, path: Path, owner: str, reentered: bool = False):
        self.path = path
        self.owner = owner
        self.reentered = reentered  # held by an outer process of the same owner, which releases it
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def acquire(cls, cell_dir: Path, owner: str | None = None, stale_after_s: float = STALE_AFTER_S) -> Claim | None:
        """The claim, or None while another live process holds it. A claim held by the same owner is re-entered
        (a requeued Slurm job, or a torchrun child of the worker that claimed the cell)."""
        owner = owner or default_owner()
        path = Path(cell_dir) / CLAIM
        info = {"owner": owner, "pid": os.getpid(), "host": HOST, "time": time.time(),
                "pid_start": _proc_start(os.getpid())}
        data = dumps_json(info)
        try:
            for _ in range(5):
                if _create_exclusive(path, data):
                    return cls(path, owner)
                got = _read_claim(path)
                if got is None:
                    continue
                raw, held, mtime = got
                if held is not None and held.get("owner") == owner:
                    if held.get("host") == HOST and held.get("pid") in _ancestors():
                        os.utime(path)  # e.g. a torchrun child of the worker that claimed the cell
                        return cls(path, owner, reentered=True)
                    atomic_write_bytes(path, data)  # an earlier incarnation of this owner (requeued job)
                    return cls(path, owner)
                if _live(held, mtime, stale_after_s):
                    return None
                _break_stale(path, raw)
        except OSError as exc:
            raise store_error(exc, path) from None
        return None

    def still_mine(self) -> bool:
        got = _read_claim(self.path)
        return got is not None and got[1] is not None and got[1].get("owner") == self.owner

    def heartbeat(self) -> bool:
        """Touch the claim; False (and `lost`) if it is no longer ours."""
        if not self.still_mine():
            self.lost = True
            return False
        try:
            os.utime(self.path)
        except OSError:
            pass
        return True

    def start_heartbeat(self, interval_s: float = HEARTBEAT_S) -> Claim:
        def beat():
            while not self._stop.wait(interval_s):
                if not self.heartbeat():
                    return

        self._thread = threading.Thread(target=beat, name="claim-heartbeat", daemon=True)
        self._thread.start()
        return self

    def release(self) -> None:
        self._stop.set()
        if not self.reentered and self.still_mine():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
