"""User-facing errors.

Every problem a user can cause (bad file, bad option, bad config) is raised as a `BenchError` whose message is one
line naming the file or option and the problem. The CLI prints it as `error: ...` and exits 2, never a traceback.
"""

from __future__ import annotations

from pathlib import Path


class BenchError(Exception):
    """A problem with the user's input, reported as one line."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


class ReportedInterrupt(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) after the command has said what it means for the user's work: the CLI exits 130
    without adding its own `aborted` line."""
