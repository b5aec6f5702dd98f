"""What this machine offers to a sweep, found without importing torch (the runner's parent stays light)."""

from __future__ import annotations

import os
from pathlib import Path


def cpu_count() -> int:
    """CPU cores this process may use (respects taskset / cgroup affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def visible_gpus() -> list[str]:
    """CUDA device ids visible to this process: `CUDA_VISIBLE_DEVICES` if set, else the NVIDIA driver's list."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        ids = [d.strip() for d in env.split(",") if d.strip()]
        return [] if not ids or ids[0] == "-1" else ids
    driver = Path("/proc/driver/nvidia/gpus")
    try:
        n = sum(1 for _ in driver.iterdir())
    except OSError:
        return []
    return [str(i) for i in range(n)]
