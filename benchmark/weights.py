"""ImageNet backbone weights: `bench weights fetch NAME` primes the torch hub cache, `bench run` checks before a
sweep that the cells will find what their profile needs.

The files are torchvision's (`<name>-<sha256 prefix>.pth` from its weight enums, `IMAGENET1K_V1` as
`methods._core.model` loads them), fetched with `benchmark.download` (resumable, the sha256 prefix checked) into
`torch.hub.get_dir()/checkpoints`, where torchvision looks first. Why a pre-flight check: cluster nodes often have
no internet, and a sweep whose nodes cannot download the weights would otherwise fail once per cell.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

import click

from benchmark.errors import BenchError

NAMES = ("resnet18", "resnet50", "resnet101", "mobilenet_v3_large")
VARIANT = "IMAGENET1K_V1"
# the torchvision weight enum member each backbone is built with (`methods._core.model`); one place to change
VARIANTS = {name: VARIANT for name in NAMES}
OFFLINE_ENV = ("NOISYBOX_OFFLINE", "HF_HUB_OFFLINE")
_HASH = re.compile(r"-([a-f0-9]+)\.")  # torch.hub's HASH_REGEX: the file name carries a sha256 prefix


def weight_url(name: str, variant: str | None = None) -> str:
    """torchvision's download URL of `name`'s ImageNet weights (`VARIANTS[name]` unless `variant` is given)."""
    import torchvision

    variant = variant or VARIANTS.get(name, VARIANT)
    try:
        return torchvision.models.get_model_weights(name)[variant].url
    except (ValueError, KeyError):
        raise BenchError(f"no torchvision {variant} weights for {name!r} (known here: {', '.join(NAMES)})") from None


def file_name(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def sha256_prefix(url: str) -> str:
    m = _HASH.search(file_name(url))
    if not m:
        raise BenchError(f"cannot read a sha256 prefix from {file_name(url)!r}")
    return m.group(1)


def cache_dir() -> Path:
    """Where torchvision looks for downloaded weights (`$TORCH_HOME/hub/checkpoints`)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def cached(name: str) -> Path | None:
    path = cache_dir() / file_name(weight_url(name))
    return path if path.is_file() else None


def fetch(name: str, mirror: str | None = None, progress: bool = True, retries: int = 3, backoff: float = 2.0) -> Path:
    """Download `name`'s ImageNet weights into the torch cache (from `mirror`/<file name> if given), checked
    against the sha256 prefix in torchvision's file name. A file already there is checked, not fetched again."""
    from benchmark.download import check_file, download

    url = weight_url(name)
    dest = cache_dir() / file_name(url)
    prefix = sha256_prefix(url)
    if dest.is_file():
        try:
            check_file(dest, sha256=prefix)
        except BenchError as exc:  # not ours to delete: torchvision may have written it
            raise BenchError(f"{exc}; delete it and fetch again") from None
        return dest
    src = f"{mirror.rstrip('/')}/{file_name(url)}" if mirror else url
    return download(src, dest, sha256=prefix, progress=progress, retries=retries, backoff=backoff,
                    hint=f"pass --mirror URL, or copy {file_name(url)} into {dest.parent} by hand")


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime: float) -> str:
    from benchmark.io import sha256_file

    return sha256_file(path)


def file_sha256(path: str | Path) -> str:
    """sha256 of a weights file, once per sweep (a ResNet-101 file is 170 MB)."""
    p = Path(path)
    st = p.stat()
    return _sha256(str(p), st.st_size, st.st_mtime)


def is_torchvision_file(sha256: str, backbone: str) -> bool:
    """Whether a file is torchvision's own ImageNet weights for `backbone` (then `--weights FILE` is the same
    experiment as letting torchvision download them)."""
    try:
        return sha256.startswith(sha256_prefix(weight_url(backbone)))
    except BenchError:
        return False


def needed(model_cfg: dict) -> str | None:
    """The backbone whose ImageNet weights building this model downloads (pretrained, no local file), else None."""
    backbone = model_cfg.get("backbone")
    if not model_cfg.get("pretrained") or model_cfg.get("weights") or backbone in (None, "tiny"):
        return None
    return backbone


def offline_requested(flag: bool = False) -> bool:
    return flag or any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on") for k in OFFLINE_ENV)


def preflight(model_cfgs: list[dict], offline: bool = False) -> list[str]:
    """Check, before any cell starts, that the weights these model configs need are in the torch cache. Missing
    ones: a BenchError naming them when offline (`--offline`, or NOISYBOX_OFFLINE / HF_HUB_OFFLINE set), else a
    note for the caller to print (the cells will download them, which nodes without internet cannot)."""
    names = sorted({n for n in map(needed, model_cfgs) if n})
    missing = [n for n in names if cached(n) is None]
    if not missing:
        return []
    files = ", ".join(f"{n} ({file_name(weight_url(n))})" for n in missing)
    fix = (f"run `bench weights fetch {' '.join(missing)}` on a machine with internet (and copy the files into "
           f"{cache_dir()} here), or pass --weights PATH")
    if offline_requested(offline):
        raise BenchError(f"ImageNet weights missing from the torch cache {cache_dir()} and downloads are off: "
                         f"{files}; {fix}")
    return [f"note: the cells will download ImageNet weights for {files} into {cache_dir()}; nodes without internet "
            f"cannot: {fix}"]


# ---- `bench weights` --------------------------------------------------------------------------------------------
@click.group("weights")
def weights_cli():
    """Fetch and list ImageNet backbone weights in the torch cache."""


@weights_cli.command("fetch")
@click.argument("names", nargs=-1, required=True, type=click.Choice(NAMES))
@click.option("--mirror", default=None, metavar="URL", help="Fetch URL/<file name> instead of download.pytorch.org.")
@click.option("--retries", type=int, default=3, show_default=True)
@click.option("--progress/--no-progress", default=None, help="Progress bar [default: when stderr is a terminal].")
def fetch_cmd(names, mirror, retries, progress):
    """Download NAMES' ImageNet weights into the torch cache (checked against torchvision's sha256 prefix)."""
    import sys

    for name in names:
        path = fetch(name, mirror=mirror, retries=retries,
                     progress=sys.stderr.isatty() if progress is None else progress)
        click.echo(f"{name}: {path}")


@weights_cli.command("ls")
def ls_cmd():
    """The known backbones and whether their weights are in the torch cache."""
    for name in NAMES:
        path = cached(name)
        click.echo(f"{name:<20} {'cached: ' + str(path) if path else 'missing: bench weights fetch ' + name}")
