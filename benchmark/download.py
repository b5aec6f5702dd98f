"""Resumable, checked downloads for dataset archives and ImageNet weights (`bench data prepare`, `bench weights
fetch`).

Why our own and not torchvision's `download_url` / `torch.hub.download_url_to_file`: neither resumes a cut transfer
(an 18 GB COCO zip), and a refusing host ends in a traceback. Here a file is fetched into `DEST.part` with HTTP
Range requests (a rerun or a retry continues where the transfer stopped), its size and checksum are checked, and
only then is it renamed to `DEST`. Every failure is one line naming the file and what to do.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

from benchmark.errors import BenchError

CHUNK = 1 << 20
USER_AGENT = "noisybox-bench"
PERMANENT = (401, 403, 404, 410)  # the host says no: retrying will not change it


def file_digest(path: str | Path, algorithm: str, progress: bool = False, what: str = "") -> str:
    """Hex digest of a file, read in chunks (a bar for big archives: md5 of 19 GB takes minutes)."""
    h = hashlib.new(algorithm)
    path = Path(path)
    bar = _bar(path.stat().st_size, f"checking {what or path.name}", 0, progress)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
            bar.update(len(block))
    bar.close()
    return h.hexdigest()


def check_file(path: str | Path, size: int | None = None, md5: str | None = None, sha256: str | None = None,
               progress: bool = False, what: str = "") -> None:
    """Raise a one-line BenchError if `path` does not have the expected size / md5 / sha256 (a sha256 may be a
    prefix, as torchvision's weight file names carry one)."""
    path = Path(path)
    what = what or path.name
    got = path.stat().st_size
    if size is not None and got != size:
        raise BenchError(f"{what}: {got} bytes, expected {size} (incomplete or another file)", path)
    for algorithm, want in (("md5", md5), ("sha256", sha256)):
        if want:
            digest = file_digest(path, algorithm, progress, what)
            if not digest.startswith(want.lower()):
                raise BenchError(f"{what}: {algorithm} {digest[:len(want)]} does not match the expected {want} "
                                 "(corrupt or another file)", path)


def _bar(total: int | None, desc: str, initial: int, progress: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                disable=not progress, leave=False)


def _write_chunk(f, data: bytes) -> None:
    """One write of downloaded bytes (its own function so a test can simulate a full disk)."""
    f.write(data)


class DownloadRefused(BenchError):
    """The host refused or could not be reached (after the retries): another host may still serve the file."""

    def __init__(self, name: str, url: str, reason: str, hint: str):
        self.reason = f"{url}: {reason}"
        super().__init__(f"cannot download {name} from {url} ({reason}); {hint}")


def _refused(name: str, url: str, reason: str, hint: str) -> DownloadRefused:
    return DownloadRefused(name, url, reason, hint)


def download(url: str, dest: str | Path, size: int | None = None, md5: str | None = None,
             sha256: str | None = None, retries: int = 3, timeout: float = 30.0, backoff: float = 2.0,
             progress: bool = True, hint: str = "") -> Path:
    """Fetch `url` into `dest` (atomic: `dest.part`, renamed once size and checksum match). A `.part` left by an
    earlier attempt is continued with a Range request; a server that ignores Range restarts from zero. Transient
    failures (cut connection, timeout, 5xx) are retried `retries` times with `backoff` seconds doubling; 401/403/
    404/410 are not. `hint`: what to do when the host refuses (e.g. the `--mirror` / `--from` options)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    name = dest.name
    hint = hint or "fetch it by hand"
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:  # not a prefix of this file: start again
        part.unlink()
        have = 0
    if size is not None:
        free = shutil.disk_usage(dest.parent).free
        if free < size - have:
            raise BenchError(f"not enough free space for {name}: {size - have} bytes to fetch, {free} free", dest.parent)
    attempt, delay = 0, backoff
    while True:
        try:
            have = _fetch(url, part, have, size, timeout, progress, name)
            break
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # nothing after the bytes we have: the .part is complete (checked below)
                break
            if exc.code in PERMANENT or attempt >= retries:
                raise _refused(name, url, f"HTTP {exc.code} {exc.reason}", hint) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException, _Short) as exc:
            if attempt >= retries:
                reason = getattr(exc, "reason", None) or exc
                raise _refused(name, url, f"{type(exc).__name__}: {reason}", hint) from None
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise BenchError(f"disk full while downloading {name} ({part.stat().st_size if part.exists() else 0} "
                                 f"bytes kept in {part.name}; free space and rerun to continue)", dest.parent) from None
            raise
        attempt += 1
        time.sleep(delay)
        delay *= 2
        have = part.stat().st_size if part.exists() else 0
    try:
        check_file(part, size, md5, sha256, progress=progress, what=name)
    except BenchError:
        part.unlink(missing_ok=True)  # a wrong file must not be continued next time
        raise
    os.replace(part, dest)
    return dest


class _Short(Exception):
    """The server closed the connection before sending the whole file."""


def _fetch(url: str, part: Path, have: int, size: int | None, timeout: float, progress: bool, name: str) -> int:
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    req = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        if have and resp.status != 206:  # Range ignored: the body is the whole file
            have = 0
        length = resp.headers.get("Content-Length")
        total = size if size is not None else (have + int(length) if length and length.isdigit() else None)
        bar = _bar(total, name, have, progress)
        try:
            with open(part, "ab" if have else "wb") as f:
                while True:
                    try:
                        block = resp.read(CHUNK)
                    except (ConnectionError, TimeoutError, OSError, http.client.HTTPException) as exc:
                        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                            raise
                        raise _Short(str(exc)) from None
                    if not block:
                        break
                    _write_chunk(f, block)
                    have += len(block)
                    bar.update(len(block))
        finally:
            bar.close()
    if total is not None and have < total:
        raise _Short(f"{have} of {total} bytes")
    return have
