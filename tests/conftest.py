"""Shared fixtures: the real BCCD dataset from ../shared, a temporary cache dir, single-threaded torch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _find_bccd() -> Path | None:
    env = os.environ.get("NOISYBOX_BCCD")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "datasets" / "bccd" / "BCCD")
    for c in candidates:
        if (c / "Annotations").is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def bccd_root() -> Path:
    root = _find_bccd()
    if root is None:
        pytest.skip("BCCD not found (set NOISYBOX_BCCD or place ../shared beside the repo)")
    return root


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets the same session-wide cache dir, never the user's ~/.cache."""
    cache = tmp_path_factory.getbasetemp() / "noisybox-cache"
    monkeypatch.setenv("NOISYBOX_CACHE", str(cache))
    yield


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    yield


def pytest_collection_modifyitems(config, items):
    """`@pytest.mark.gpu` tests need CUDA: skipped, saying so, on machines without it."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs CUDA (torch.cuda.is_available() is false)")
        for item in gpu_items:
            item.add_marker(skip)
