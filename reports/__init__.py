"""Comparison reports for a results store: tables, plots, failure modes, TIDE-style errors, one HTML page.

Reads the results store (and datasets for test ground truth and images); never imports models or torch.
"""

from reports.build import build_report
from reports.config import FORMATS, ReportConfig

__all__ = ["FORMATS", "ReportConfig", "build_report"]
