"""`build_report`: every table, plot, gallery and the HTML page for one results store.

Output layout (default `STORE/report/`):
  index.html                   self-contained page (format `html`)
  report.md                    all tables in Markdown, figures linked (format `md`)
  tables/<group>_<name>.{md,tex,csv}   per format
  plots/<group>_<name>.{png,svg}       always (the pages use them)
  galleries/<group>_<source>_<mode>.png
A group is one (dataset, noise model, profile) of the sweep; methods and noise levels vary inside it.
The folder keeps a record of the files the report wrote (`.noisybox-written.json`, `benchmark.owned`): rebuilding
into it removes what the earlier report wrote and this one does not (a group, a format, a gallery that is gone),
and nothing else. A file the user added or edited there is kept; a non-empty folder without the record is refused.
"""

from __future__ import annotations

import sys
from pathlib import Path

from benchmark import __version__
from reports import html
from reports import plots as P
from reports.analysis import NOISY_INPUT, Datasets, Skips
from reports.config import FORMATS, ReportConfig, parse_formats
from reports.headline import group_headline
from reports.sections import cells_section, definitions, group_section
from reports.store import CellCache, load_cells
from reports.tables import sweep_groups
from reports.writer import Writer, slug


def build_report(store_dir, out_dir=None, formats=FORMATS, config: ReportConfig | None = None,
                 progress: bool = True, echo=None) -> Path:
    """Write the comparison report for a results store; returns the HTML index path (report.md without html).
    `echo` (e.g. `click.echo`) gets the line naming the corrupt cells left out, if any."""
    from benchmark.results import corrupt_line

    store = Path(store_dir)
    formats = parse_formats(formats)
    cfg = config or ReportConfig()
    frame = load_cells(store)
    line = corrupt_line(frame.attrs.get("corrupt", []))
    if line and echo is not None:
        echo(line)
    out = Path(out_dir) if out_dir is not None else store / "report"
    w = Writer(out, formats)  # refuses a folder holding files an earlier report did not write
    try:
        index = _write(w, store, frame, formats, cfg, progress)
    except BaseException:
        w.abandon()
        raise
    changed = w.prune()
    if changed:
        print(f"note: kept {len(changed)} file(s) of the earlier report edited since it wrote them "
              f"(e.g. {out / changed[0]}); they are no longer part of the report", file=sys.stderr)
    return index


def _write(w: Writer, store: Path, frame, formats, cfg: ReportConfig, progress: bool) -> Path:
    out = w.out
    cache, datasets, skips = CellCache(), Datasets(), Skips()
    for cid, name, problem, redone in frame.attrs.get("unloaded", []):
        skips.add(_left_out(cid, name, problem, redone), cid)
    for cid, name, status, error in frame.attrs.get("unfinished", []):
        state = "not started" if status == "missing" else status
        skips.add(f"not finished: {name}, {state}{': ' + error if error else ''} (log: cells/{cid}/cell.log)", cid)
    title = f"noisybox-bench report: {store.resolve().name}"
    w.heading(1, title)
    w.para(f"store {store.resolve()} · {len(frame)} finished cell(s) · {frame['method'].nunique()} method(s) · "
           f"noisybox-bench {__version__}", css="meta")
    groups = sweep_groups(frame)
    for key, g in groups if len(groups) > 1 else []:  # the answer first (one group leads with its own)
        lines = group_headline(g, cfg.oracle_methods)
        if lines:
            w.para(f"{' · '.join(map(str, key))}: " + " ".join(lines), css="lead")
    nav = len(w.html)  # the navigation list goes here once the groups are known
    colors = P.method_colors(list(frame["method"]) + [NOISY_INPUT])  # one colour per method across the page
    bar = _progress(2 * sum(len(g) for _, g in groups), progress)
    try:
        for key, g in groups:
            group_section(w, key, g, cfg, cache, datasets, skips, colors, bar)
    finally:
        if bar is not None:
            bar.close()
    cells_section(w, frame, cache)
    definitions(w, cfg)
    for cid, why in cache.problems():
        skips.add(f"{why} (its analyses skipped)", cid)
    if skips.reasons:
        w.heading(2, "Skipped", anchor="skipped")
        w.bullets(skips.lines(), css="skips")
    links = "".join(f"<li><a href='#{slug('-'.join(map(str, k)))}'>{html.esc(' · '.join(map(str, k)))}</a></li>"
                    for k, _ in groups)
    w.html.insert(nav, f"<nav><ul>{links}<li><a href='#cells'>cells and environments</a></li>"
                       f"<li><a href='#definitions'>definitions</a></li></ul></nav>")

    index = out
    if "md" in formats:
        index = w.write_text(out / "report.md", "\n".join(w.md))
    if "html" in formats:
        index = w.write_text(out / "index.html", html.page(title, "\n".join(w.html)))
    return index


def _left_out(cid: str, name: str | None, problem: str, redone: bool) -> str:
    """One Skipped line for a DONE cell the results table left out: which cell, what is wrong, how to redo it."""
    fix = ("rerun the sweep to redo it: `bench run --dry-run` lists it as corrupt → redo" if redone
           else "`bench run` still counts it as done: delete the cell directory to redo it")
    return f"DONE but left out of the results table: {name + ', ' if name else ''}{problem} (cells/{cid}; {fix})"


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="report", unit="cell", file=sys.stderr, leave=False)
