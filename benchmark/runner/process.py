"""Process hygiene shared by the executors and a cell's own process: a child never outlives the runner."""

from __future__ import annotations

import os
import signal
import threading
import time


def pdeathsig() -> None:
    """Linux: have the kernel SIGKILL this process when its parent dies."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def die_with_parent(parent_pid: int | None = None) -> None:
    """Exit when the parent dies (even by SIGKILL): Linux PDEATHSIG plus a watcher thread elsewhere."""
    parent_pid = parent_pid or os.getppid()
    pdeathsig()
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
