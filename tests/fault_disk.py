"""Simulated full disk for the fault-injection test, where no size-limited folder can be mounted (not root).

Imported into `bench run` and its workers with `--import fault_disk` (tests/ on PYTHONPATH). While
`NOISYBOX_FAULT_SPACE` names a file holding a byte budget, every atomic write of the suite (`benchmark.io`'s
temp file + fsync + rename) spends its size from it and fails with ENOSPC, as a full disk would, once the budget is
spent. Without the variable it changes nothing.
"""

from __future__ import annotations

import errno
import fcntl
import os

_real_fsync = os.fsync


def _fsync(fd: int) -> None:
    budget = os.environ.get("NOISYBOX_FAULT_SPACE")
    if budget:
        size = os.fstat(fd).st_size
        with open(budget, "r+") as fh:  # shared by the runner and its workers
            fcntl.flock(fh, fcntl.LOCK_EX)
            left = int(fh.read() or 0)
            if size > left:
                raise OSError(errno.ENOSPC, "No space left on device")
            fh.seek(0)
            fh.truncate()
            fh.write(str(left - size))
    _real_fsync(fd)


os.fsync = _fsync
