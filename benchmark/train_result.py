"""What a training run leaves behind: the engine returns it, adapters pass it on (`methods.base` re-exports it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrainResult:
    """What a training run leaves behind (all paths inside the run's work directory)."""

    checkpoint: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    refined_boxes: Path | None = None
