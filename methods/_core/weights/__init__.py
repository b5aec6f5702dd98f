"""Weights shipped with the suite (package data): `tiny_pretext.pth`, the `tiny` backbone body pretrained by
`python -m methods._core.pretrain` (a label-only pretext task on the suite's own procedural images)."""

from pathlib import Path

TINY_PRETEXT = Path(__file__).resolve().parent / "tiny_pretext.pth"
TINY_PRETEXT_WIDTHS = [32, 48, 96, 160]  # the only `model.widths` the shipped file fits
