"""What a cell ran on (env.json): resolved package versions (the suite's runtime requirements, optional packages,
plug-ins with their distributions), CUDA / cuDNN, git commit, device, threads — so a number can be traced."""

from __future__ import annotations

import functools
import os
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

SUITE = "noisybox-bench"
# pyproject's `dependencies`, for a checkout run without being pip-installed (no metadata to read them from)
RUNTIME = ("torch", "torchvision", "numpy", "pandas", "faster-coco-eval", "pillow", "orjson", "click", "matplotlib",
           "pyyaml", "tqdm")
# besides the suite's own runtime requirements (read from its installed metadata): what a cell may also run with
OPTIONAL = ("pycocotools", "scipy", "pyarrow", "submitit", "mmengine", "mmdet", "mmcv")
PLUGIN_GROUPS = {"methods": "noisybox_bench.methods", "noise": "noisybox_bench.noise",
                 "formats": "noisybox_bench.formats"}


def _requirement_name(req: str) -> str | None:
    """`pillow>=9.0` -> `pillow`; None for a requirement that belongs to an extra (`...; extra == "test"`)."""
    if "extra ==" in req.replace("extra==", "extra =="):
        return None
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    return match.group(1) if match else None


def runtime_requirements() -> list[str]:
    """The suite's runtime dependencies as its installed metadata declares them (pyproject `dependencies`)."""
    try:
        reqs = metadata.requires(SUITE) or []
    except metadata.PackageNotFoundError:  # running from a checkout that was never pip-installed
        reqs = []
    names = [n for n in map(_requirement_name, reqs) if n]
    return list(dict.fromkeys(names))


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    """Resolved versions of the suite, every runtime dependency and the optional packages installed."""
    out = {}
    for name in dict.fromkeys((SUITE, *runtime_requirements(), *RUNTIME, *OPTIONAL)):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def plugin_versions() -> dict[str, dict[str, dict]]:
    """Every plug-in registered under the suite's entry points: {group: {name: {dist, version, value}}}, whether
    or not the cell used it (a plug-in can register noise models and methods that shadow nothing yet)."""
    out: dict[str, dict[str, dict]] = {}
    for key, group in PLUGIN_GROUPS.items():
        found = {}
        for ep in metadata.entry_points(group=group):
            dist = getattr(ep, "dist", None)
            found[ep.name] = {"dist": dist.name if dist else None, "version": dist.version if dist else None,
                              "value": ep.value}
        out[key] = dict(sorted(found.items()))
    return out


def accelerator_libraries() -> dict:
    """CUDA (torch's build) and cuDNN versions, when the cell imported torch (None where torch has none)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return {}
    cudnn = None
    try:
        if torch.backends.cudnn.is_available():
            cudnn = torch.backends.cudnn.version()
    except Exception:  # noqa: BLE001 -- a broken CUDA install must not fail a finished cell
        cudnn = None
    return {"cuda": torch.version.cuda, "cudnn": cudnn}


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
        "plugins": plugin_versions(),
        "libraries": accelerator_libraries(),
        "git": git_state(),
        "device": device_info(),
        "slurm_job": os.environ.get("SLURM_JOB_ID"),
    }
