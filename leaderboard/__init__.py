"""The leaderboard: paper-reported and reproduced numbers side by side, one JSON file per row."""

from leaderboard.rows import ENTRIES, load_rows, validate_all, write_row
from leaderboard.schema import SCHEMA_VERSION, RowError, row_errors, validate_row

__all__ = ["ENTRIES", "SCHEMA_VERSION", "RowError", "load_rows", "row_errors", "validate_all", "validate_row", "write_row"]
