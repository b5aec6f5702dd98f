"""`bench leaderboard add | render | validate | latex`."""

from __future__ import annotations

from pathlib import Path

import click

from benchmark.errors import BenchError
from leaderboard.rows import ENTRIES, load_rows, validate_all

ENTRIES_HELP = ("leaderboard entries folder; the default is the suite's own leaderboard inside the installed package "
                "— give your own folder for a leaderboard of your own")


@click.group()
def leaderboard():
    """Paper-reported and reproduced numbers, one JSON file per row."""


@leaderboard.command()
@click.argument("results_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--entries", type=click.Path(path_type=Path), default=ENTRIES, show_default=True,
              help=ENTRIES_HELP + " (created if missing)")
@click.option("--dataset-name", help="leaderboard dataset key (e.g. coco2017, voc2007); default: the store's dataset")
@click.option("--test-split", help="evaluation split name (e.g. val2017, test); default: test")
@click.option("--replace", is_flag=True,
              help="replace existing reproduced blocks even by ones with fewer seeds (default: keep them, with a warning)")
def add(results_dir, entries, dataset_name, test_split, replace):
    """Add the finished cells of RESULTS_DIR as reproduced rows.

    An existing row's reproduced block is replaced by one with at least as many seeds; one that would drop seeds
    (e.g. from a half-finished store) is kept, with a warning per row, unless --replace is given.
    """
    from leaderboard.add import add_results

    written, kept = add_results(results_dir, entries, dataset_name, test_split, replace)
    for p in written:
        click.echo(f"wrote {p}")
    for line in kept:
        click.echo(f"warning: {line}", err=True)


@leaderboard.command()
@click.option("--entries", type=click.Path(path_type=Path), default=ENTRIES, show_default=True, help=ENTRIES_HELP)
def validate(entries):
    """Check every row against the schema (exit 1 on any problem)."""
    problems = validate_all(entries)
    for p in problems:
        click.echo(p, err=True)
    n = len(list(Path(entries).rglob("*.json")))
    if problems:
        raise click.ClickException(f"{len(problems)} problem(s) in {n} rows")
    click.echo(f"{n} rows valid")


@leaderboard.command()
@click.option("--entries", type=click.Path(path_type=Path), default=ENTRIES, show_default=True, help=ENTRIES_HELP)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="output folder (default: the folder above the entries)")
@click.option("--metric", default=None, help="AP, AP50, AP75, ... (default: AP; VOC_AP50 for voc2007)")
@click.option("--sort-level", type=float, default=None, help="noise level to sort by (default: the highest)")
@click.option("--tolerance", type=float, default=1.0, show_default=True, help="flag |reported - reproduced| above this")
@click.option("--latex", is_flag=True, help="also write leaderboard.tex")
def render(entries, out, metric, sort_level, tolerance, latex):
    """Write README.md and index.html (and leaderboard.tex) from the rows; a file of those names that this
    command did not write is never overwritten."""
    from leaderboard.render import build_tables, write_views

    rows = [r for _, r in load_rows(entries)]
    if not rows:
        raise BenchError("no leaderboard rows", entries)
    tables = build_tables(rows, metric, sort_level)
    out = Path(out) if out else Path(entries).resolve().parent
    for p in write_views(out, tables, tolerance, latex):
        click.echo(f"wrote {p}")
