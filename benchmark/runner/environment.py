"""What a cell ran on (env.json): package versions, git commit, device, threads — so a number can be traced."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("noisybox-bench", "torch", "torchvision", "numpy", "faster-coco-eval", "pycocotools", "pandas",
            "orjson", "submitit", "mmengine", "mmdet", "mmcv")


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


@functools.lru_cache(maxsize=1)
def git_state() -> dict | None:
    """Commit of the checkout the code runs from, and whether tracked files differ from it; None if not a checkout."""
    repo = Path(__file__).resolve().parents[2]
    if not (repo / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit or None, "dirty": bool(dirty)}


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info() -> dict:
    """The accelerator torch sees (only if the cell imported torch; the runner never imports it just to look)."""
    from benchmark.runner.devices import cpu_count

    info = {"cpu": cpu_model(), "cpu_count": cpu_count(), "type": "cpu"}
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info.update(type="cuda", gpus=[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
                        cuda=torch.version.cuda)
    if os.environ.get("WORLD_SIZE"):
        info["world_size"] = int(os.environ["WORLD_SIZE"])
    return info


def capture() -> dict:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": platform.node(),
        "packages": package_versions(),
        "git": git_state(),
        "device": device_info(),
        "slurm_job": os.environ.get("SLURM_JOB_ID"),
    }
