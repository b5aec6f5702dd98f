"""Output folders the suite writes into, with a record of what it wrote there.

A command that fills a folder (`bench report --out`, `bench data convert`) keeps `.noisybox-written.json` in it:
which command wrote it, and every file it wrote (relative path, size and mtime as written). A later run of the same
command removes or replaces only recorded files that are unchanged since: a file the user added or edited is never
deleted or overwritten. A non-empty folder without a record (or with another command's) is refused, since the
suite cannot tell its files from the user's.
"""

from __future__ import annotations

import os
from pathlib import Path

from benchmark.errors import BenchError
from benchmark.io import parse_json, read_bytes, write_json

RECORD = ".noisybox-written.json"


def _stamp(path: Path) -> list[int] | None:
    """(size, mtime in ns) of a file or symlink itself, or None if there is none."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _os_error(exc: OSError, path: Path, doing: str) -> BenchError:
    return BenchError(f"cannot {doing} ({exc.strerror or exc})", exc.filename or path)


def _entries(root: Path) -> list[str]:
    """Every file (or symlink) under `root`, as a POSIX path relative to it, the record left out."""
    out = []

    def fail(exc: OSError):
        raise _os_error(exc, root, "read the folder")

    for top, dirs, files in os.walk(root, onerror=fail):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(top, d))]:
            rel = os.path.relpath(os.path.join(top, name), root).replace(os.sep, "/")
            if rel != RECORD:
                out.append(rel)
    return sorted(out)


class OwnedFolder:
    """The files one command writes into `root`: `open` checks the folder is the command's (or empty), `claim`
    before each write refuses to replace a file the command did not write, `add` after it records the file, and
    `close` removes the earlier run's files this run did not write again and saves the new record."""

    def __init__(self, root: str | Path, command: str):
        self.root, self.command = Path(root), command
        self.before: dict[str, list[int]] = {}  # the earlier run's record
        self.now: dict[str, list[int]] = {}

    def _rel(self, path: Path) -> str:
        return os.path.relpath(Path(path), self.root).replace(os.sep, "/")

    def _read_record(self) -> dict | None:
        path = self.root / RECORD
        if not path.is_file():
            return None
        data = parse_json(read_bytes(path), path)
        if not isinstance(data, dict) or data.get("command") != self.command or not isinstance(data.get("files"), dict):
            return None
        return {k: v for k, v in data["files"].items() if isinstance(v, list) and self._inside(k)}

    def _inside(self, rel: str) -> bool:
        """A record entry that names a file in this folder (not `..`, absolute, or through a linked folder)."""
        parts = Path(rel).parts
        if not parts or Path(rel).is_absolute() or ".." in parts:
            return False
        real, parent = os.path.realpath(self.root), os.path.realpath(self.root / Path(rel).parent)
        return parent == real or parent.startswith(real + os.sep)

    def foreign(self) -> list[str]:
        """Files in the folder the earlier run did not write, or that changed since it wrote them."""
        return [rel for rel in _entries(self.root) if _stamp(self.root / rel) != self.before.get(rel)]

    def open(self, what: str = "folder") -> OwnedFolder:
        """Accept a missing or empty folder, or one this command wrote before; refuse any other (one line)."""
        if self.root.exists() and not self.root.is_dir():
            raise BenchError(f"{what} is a file, not a folder", self.root)
        try:
            if not self.root.is_dir() or not any(self.root.iterdir()):
                return self
        except OSError as exc:
            raise _os_error(exc, self.root, "read the folder") from None
        record = self._read_record()
        if record is None:
            raise BenchError(f"{what} is not empty and was not written by `{self.command}` (no {RECORD} of it): "
                             "the suite never deletes or overwrites files it did not write; choose an empty or new "
                             "folder", self.root)
        self.before = record
        return self

    def claim(self, path: str | Path) -> Path:
        """`path`, once it is sure that writing it replaces nothing but a file this command wrote, unchanged."""
        path = Path(path)
        rel = self._rel(path)
        stamp = _stamp(path)
        if stamp is not None and rel not in self.now and stamp != self.before.get(rel):
            why = "changed since" if rel in self.before else "not written by"
            raise BenchError(f"would overwrite a file {why} `{self.command}`; move it away or choose another folder",
                             path)
        return path

    def add(self, path: str | Path) -> Path:
        """Record a file this run just wrote."""
        path = Path(path)
        stamp = _stamp(path)
        if stamp is not None:
            self.now[self._rel(path)] = stamp
        return path

    def remove_earlier(self) -> tuple[int, list[str]]:
        """Delete the earlier run's files that are unchanged and not written again by this run, and the folders
        that leaves empty. Returns (number removed, files kept because they changed since)."""
        removed, changed = 0, []
        for rel, stamp in sorted(self.before.items()):
            if rel in self.now:
                continue
            path = self.root / rel
            current = _stamp(path)
            if current is None:
                continue
            if current != stamp:
                changed.append(rel)  # edited since: the user's now, kept and no longer recorded
                continue
            try:
                path.unlink()
                removed += 1
                parent = path.parent
                while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
                    parent.rmdir()
                    parent = parent.parent
            except OSError as exc:
                raise _os_error(exc, path, "remove an earlier output file") from None
        self.before = {k: v for k, v in self.before.items() if k in self.now}
        return removed, changed

    def save(self, keep_earlier: bool = False) -> Path:
        """Write the record: this run's files (and, with `keep_earlier`, the earlier run's still there: after a
        failed run, so the next one can still replace them)."""
        files = dict(self.now)
        if keep_earlier:
            for rel, stamp in self.before.items():
                if rel not in files and _stamp(self.root / rel) == stamp:
                    files[rel] = stamp
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _os_error(exc, self.root, "create the folder") from None
        return write_json(self.root / RECORD, {"command": self.command, "files": files}, indent=True)
