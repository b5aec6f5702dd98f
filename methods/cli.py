"""`bench methods ls` and `bench new-method NAME`."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def methods():
    """Registered method adapters."""


@methods.command("ls")
def ls():
    """Name, paper and source package of every method (built-in and plug-in)."""
    from methods import METHODS

    rows = []
    for name, cls in METHODS.items():
        paper = cls.paper.short() if cls.paper else "–"
        paper = paper if len(paper) <= 60 else paper[:57] + "..."
        flags = ",".join(f for f, on in (("oracle", cls.reads_clean_boxes), ("refines-boxes", cls.refines_boxes),
                                         ("one-stage", getattr(cls, "detector", "two_stage") == "one_stage")) if on)
        rows.append((name, paper, METHODS.origin(name), flags or "-"))
    widths = [max(len(r[i]) for r in rows + [("name", "paper", "source", "flags")]) for i in range(4)]
    for r in [("name", "paper", "source", "flags")] + rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())


@click.command("new-method")
@click.argument("name")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="folder to create (default: ./noisybox-NAME)")
@click.option("--title", default=None, help="human-readable method name")
def new_method(name, out, title):
    """Scaffold an installable adapter package for method NAME."""
    from methods.scaffold import scaffold

    out = out or Path(f"noisybox-{name.replace('_', '-')}")
    for path in scaffold(name, out, title):
        click.echo(f"wrote {path}")
    click.echo(f"next: pip install -e {out} && pytest {out}/tests && bench methods ls")
