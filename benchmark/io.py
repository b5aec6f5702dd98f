"""Atomic, fast file I/O shared by every part of the suite.

Writes go to a temporary file in the same directory and are renamed into place, so a crash never leaves a
half-written file behind. JSON goes through orjson (about 4x faster than the standard module on COCO-sized files).
"""

from __future__ import annotations

import errno
import gc
import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from benchmark.errors import BenchError

_JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what the user's umask gives new files (read once: os.umask is process-wide)


@contextmanager
def gc_paused():
    """Pause the cyclic garbage collector: bulk loads of millions of small dicts run ~3x faster without it.

    On exit the objects made meanwhile go straight to the oldest generation (`gc.freeze()` + `gc.unfreeze()`):
    otherwise the first young-generation collection after re-enabling walks all of them (~0.5 s per million
    containers) and so does the next one up. They stay collectable. Skipped when the caller froze objects itself."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
            gc.enable()


def _os_error(exc: OSError, path: Path) -> BenchError:
    if exc.errno == errno.ENOSPC:
        return BenchError("no space left on device while writing", path)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return BenchError("permission denied while writing", path)
    return BenchError(f"cannot write ({exc.strerror or exc})", path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically (temp file + fsync + rename)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _os_error(exc, path) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), _FILE_MODE)  # mkstemp makes 0600; a plain open() would give 0666 & ~umask
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _os_error(exc, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def dumps_json(obj: Any, indent: bool = False, sort_keys: bool = True) -> bytes:
    """Serialise to JSON bytes; keys sorted so equal objects give byte-identical files. `sort_keys=False` keeps
    insertion order (deterministic for objects built the same way from the same input; ~40 % faster on COCO-sized
    lists). Non-string keys are allowed; orjson's option for them slows every dict down, so it is used only when
    the fast attempt meets one."""
    opts = orjson.OPT_SERIALIZE_NUMPY | (orjson.OPT_SORT_KEYS if sort_keys else 0) | (
        orjson.OPT_INDENT_2 if indent else 0)
    try:
        return orjson.dumps(obj, option=opts)
    except TypeError:  # a non-str key (or something unserialisable, which raises again)
        return orjson.dumps(obj, option=opts | _JSON_OPTS)


def write_json(path: str | Path, obj: Any, indent: bool = False) -> Path:
    return atomic_write_bytes(path, dumps_json(obj, indent=indent))


def read_json(path: str | Path) -> Any:
    """Read JSON; a missing or malformed file is a one-line `BenchError` naming the file."""
    return parse_json(read_bytes(path), path)


def read_bytes(path: str | Path) -> bytes:
    """A file's bytes; a missing or unreadable file is a one-line `BenchError` naming it."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise BenchError("file not found", path) from None
    except IsADirectoryError:
        raise BenchError("is a directory, expected a JSON file", path) from None
    except OSError as exc:
        raise BenchError(f"cannot read ({exc.strerror or exc})", path) from None


def parse_json(data: bytes, path: str | Path) -> Any:
    """Parse JSON bytes read from `path` (named in the error if they are malformed)."""
    try:
        with gc_paused():
            return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BenchError(f"malformed JSON ({exc}){_nan_hint(data, exc.pos)}", Path(path)) from None


def _nan_hint(data: bytes, pos: int) -> str:
    """Python's `json.dump` writes NaN / Infinity, which JSON (and orjson) does not allow: say so."""
    near = bytes(data[max(0, pos - 1):pos + 9]) if isinstance(data, (bytes, bytearray, memoryview)) else b""
    if b"NaN" in near or b"Infinity" in near:
        return ": NaN / Infinity are not JSON numbers (Python's json.dump writes them; write null instead)"
    return ""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
