"""User-facing errors.

Every problem a user can cause (bad file, bad option, bad config) is raised as a `BenchError` whose message is one
line naming the file or option and the problem. The CLI prints it as `error: ...` and exits 2, never a traceback.
"""

from __future__ import annotations

from pathlib import Path

# control characters as Python writes them in a string literal ("\n" -> "\\n"): a file name or a value quoted from the
# user's file may hold a line break, and the message must stay one line
_ESCAPED = {c: repr(chr(c))[1:-1] for c in (*range(0, 9), *range(10, 32), 127)}


class BenchError(Exception):
    """A problem with the user's input, reported as one line (control characters in it escaped)."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else str(path)
        text = f"{self.path}: {message}" if self.path else str(message)
        super().__init__(text.translate(_ESCAPED))


class ReportedInterrupt(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) after the command has said what it means for the user's work: the CLI exits 130
    without adding its own `aborted` line."""
