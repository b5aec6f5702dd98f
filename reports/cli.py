"""`bench report RESULTS_DIR`: comparison tables, plots, failure modes and one HTML page for a results store."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from reports.build import build_report
from reports.config import FORMATS, ReportConfig, parse_formats


@click.command("report")
@click.argument("results_dir", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="output folder (default: RESULTS_DIR/report)")
@click.option("--format", "formats", default=",".join(FORMATS), show_default=True,
              help="comma-separated subset of md, html, latex, csv")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="JSON with report settings: failure_modes {bad_iou, group_cover, ...}, tide {pos_threshold, "
                   "bg_threshold, ...}, oracle_methods, sensitivity, gallery_per_mode, tide_iou_range")
@click.option("--tide-iou-range", is_flag=True, default=None,
              help="also decompose AP@[.5:.95] (10 matchings per cell; slow on large test sets)")
@click.option("--quiet", is_flag=True, help="no progress bar")
def report(results_dir: Path, out_dir: Path | None, formats: str, config_path: Path | None,
           tide_iou_range: bool | None, quiet: bool):
    """Write comparison reports for the results store RESULTS_DIR."""
    fmts = parse_formats(formats)
    cfg = ReportConfig.from_json(config_path) if config_path else ReportConfig()
    if tide_iou_range:
        cfg = replace(cfg, tide_iou_range=True)
    index = build_report(results_dir, out_dir, fmts, cfg, progress=not quiet,
                         echo=lambda line: click.echo(line, err=True))
    click.echo(f"report: {index}")

