"""Shared file I/O: atomic writes leave no temp file behind and give the permissions the user's umask says (the
temp file mkstemp makes is 0600, which would hide a shared results store from the rest of a group)."""

from __future__ import annotations

import os
import stat

import pytest

from benchmark.errors import BenchError
from benchmark.io import atomic_write_bytes, read_json, write_json


def test_atomic_write_uses_the_umask_mode_and_leaves_no_temp_file(tmp_path):
    mask = os.umask(0)
    os.umask(mask)
    path = write_json(tmp_path / "sub" / "a.json", {"b": [1, 2]})
    assert read_json(path) == {"b": [1, 2]}
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    plain = tmp_path / "plain"
    plain.write_bytes(b"x")  # what an ordinary open() gives
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    atomic_write_bytes(path, b"[3]")
    assert read_json(path) == [3] and sorted(p.name for p in path.parent.iterdir()) == ["a.json"]


def test_read_json_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"{")
    with pytest.raises(BenchError, match="bad.json: malformed JSON") as exc:
        read_json(bad)
    assert "NaN" not in str(exc.value)
    bad.write_text('{"bbox": [1.0, NaN, 3, 4]}')  # what Python's json.dump writes for a float('nan')
    with pytest.raises(BenchError, match="NaN / Infinity are not JSON numbers"):
        read_json(bad)
    with pytest.raises(BenchError, match="nope.json: file not found"):
        read_json(tmp_path / "nope.json")
