"""Collects a report's Markdown and HTML bodies and writes each table / figure in the requested formats."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from benchmark.io import atomic_write_bytes, atomic_write_text
from benchmark.owned import OwnedFolder
from reports import html
from reports import plots as P
from reports.tables import Table, plain_html, plain_latex, plain_markdown, to_html, to_latex, to_long, to_markdown


def slug(text: str) -> str:
    """File-name-safe form of a label."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


class Writer:
    """Collects the Markdown and HTML bodies and writes the per-format files as sections are added."""

    def __init__(self, out: Path, formats: tuple[str, ...]):
        self.out, self.formats = out, formats
        self.md: list[str] = []
        self.html: list[str] = []
        # what this report writes, against the record of the earlier one: never replaces or deletes a user's file
        self.folder = OwnedFolder(out, "bench report").open("report folder")

    def write_text(self, path: Path, text: str) -> Path:
        return self.folder.add(atomic_write_text(self.folder.claim(path), text))

    def prune(self) -> list[str]:
        """Delete the files the earlier report wrote and this one did not (a method, group or format no longer in
        it), unless edited since, and record this report's files. Returns the edited ones (kept)."""
        _, changed = self.folder.remove_earlier()
        self.folder.save()
        return changed

    def abandon(self) -> None:
        """After a failed build: record this run's files with the earlier ones still there, deleting nothing."""
        if self.folder.now or self.folder.before:
            self.folder.save(keep_earlier=True)

    def heading(self, level: int, text: str, anchor: str | None = None):
        self.md.append(f"{'#' * level} {text}\n")
        a = f" id='{anchor}'" if anchor else ""
        self.html.append(f"<h{level}{a}>{html.esc(text)}</h{level}>")

    def para(self, text: str, css: str = "note"):
        self.md.append(text + "\n")
        self.html.append(f"<p class='{css}'>{html.esc(text)}</p>")

    def _files(self, name: str, md: str, tex: str, csv: pd.DataFrame):
        if "md" in self.formats:
            self.write_text(self.out / "tables" / f"{name}.md", md)
        if "latex" in self.formats:
            self.write_text(self.out / "tables" / f"{name}.tex", tex)
        if "csv" in self.formats:
            self.write_text(self.out / "tables" / f"{name}.csv", csv.to_csv(index=False))

    def csv(self, name: str, df: pd.DataFrame):
        """A CSV-only table (too wide to show), written when the csv format is on."""
        if "csv" in self.formats:
            self.write_text(self.out / "tables" / f"{name}.csv", df.to_csv(index=False))

    def table(self, t: Table | None, name: str):
        if t is None:
            return
        md = to_markdown(t)
        self._files(name, md, to_latex(t), to_long(t))
        self.md.append(md)
        self.html.append(f"<div class='scroll'>{to_html(t)}</div>")

    def frame(self, df: pd.DataFrame, name: str, title: str, decimals=1, csv: pd.DataFrame | None = None):
        if df is None or df.empty:
            return
        md = plain_markdown(df, title, decimals)
        self._files(name, md, plain_latex(df, title, decimals), df if csv is None else csv)
        self.md.append(md)
        self.html.append(f"<div class='scroll'>{plain_html(df, title, decimals)}</div>")

    def figure(self, fig, name: str, caption: str):
        for fmt in ("png", "svg"):
            self.folder.claim(self.out / "plots" / f"{name}.{fmt}")
        paths = P.save_figure(fig, self.out / "plots" / name)
        for p in paths.values():
            self.folder.add(p)
        self.md.append(f"![{caption}](plots/{name}.png)\n")
        self.html.append(html.figure(paths["png"].read_bytes(), caption))

    def picture(self, png: bytes, rel: str, caption: str):
        self.folder.add(atomic_write_bytes(self.folder.claim(self.out / rel), png))
        self.md.append(f"![{caption}]({rel})\n")
        self.html.append(html.figure(png, caption))

    def bullets(self, lines: list[str], css: str = ""):
        self.md.append("\n".join(f"- {line}" for line in lines) + "\n")
        self.html.append(f"<ul class='{css}'>" + "".join(f"<li>{html.esc(x)}</li>" for x in lines) + "</ul>")

    def raw_html(self, text: str):
        self.html.append(text)

    def collapse(self, start: int, summary: str) -> None:
        """Fold the HTML added since `start` (`len(self.html)` then) into one closed <details>: detail one click
        away; the Markdown keeps it inline."""
        if len(self.html) > start:
            inner = "\n".join(self.html[start:])
            del self.html[start:]
            self.html.append(html.details(summary, inner))
