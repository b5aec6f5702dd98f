"""Reading and writing leaderboard rows (the JSON files under `leaderboard/entries/`)."""

from __future__ import annotations

from pathlib import Path

from benchmark.errors import BenchError
from benchmark.io import read_json, write_json
from leaderboard.schema import RowError, row_filename, row_key, validate_row

ENTRIES = Path(__file__).resolve().parent / "entries"  # the suite's own leaderboard (inside the installed package)


def entries_dir(root: str | Path) -> Path:
    """`root` if it is a folder; a missing one is an error, not an empty leaderboard that silently passes."""
    root = Path(root)
    if not root.is_dir():
        raise BenchError("leaderboard entries folder not found", root)
    return root


def load_rows(root: str | Path = ENTRIES, strict: bool = True) -> list[tuple[Path, dict]]:
    """All rows under `root`, each validated; with `strict` the first bad row raises a one-line error."""
    root = entries_dir(root)
    rows: list[tuple[Path, dict]] = []
    seen: dict = {}
    for path in sorted(root.rglob("*.json")):
        try:
            row = validate_row(read_json(path), path)
        except (RowError, BenchError):
            if strict:
                raise
            continue
        key = row_key(row)
        if key in seen:
            raise RowError(f"{path}: duplicates the row in {seen[key]}")
        seen[key] = path
        rows.append((path, row))
    return rows


def validate_all(root: str | Path = ENTRIES) -> list[str]:
    """Every problem in every row (for `bench leaderboard validate`): 'path: field: problem'."""
    from leaderboard.schema import row_errors

    root = entries_dir(root)
    problems: list = []
    seen: dict = {}
    for path in sorted(root.rglob("*.json")):
        try:
            row = read_json(path)
        except BenchError as exc:
            problems.append(str(exc))
            continue
        errs = row_errors(row)
        problems.extend(f"{path}: {e}" for e in errs)
        if not errs:
            expected = root / row_filename(row)
            if expected.resolve() != path.resolve():
                problems.append(f"{path}: file name does not match its content (expected {expected})")
            key = row_key(row)
            if key in seen:
                problems.append(f"{path}: duplicates the row in {seen[key]}")
            seen[key] = path
    return problems


def write_row(row: dict, root: str | Path = ENTRIES) -> Path:
    validate_row(row)
    return write_json(Path(root) / row_filename(row), row, indent=True)
