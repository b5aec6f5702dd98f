"""One torch thread (CI shares its cores) and a throw-away dataset cache (never the user's ~/.cache)."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("NOISYBOX_CACHE", str(tmp_path_factory.getbasetemp() / "noisybox-cache"))
