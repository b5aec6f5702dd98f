"""The self-contained HTML page: inline CSS, images as base64 data URIs, no scripts and no external requests,
so it opens from disk (or as an e-mail attachment) anywhere and loads without console errors."""

from __future__ import annotations

import base64
import html

CSS = """
:root { --fg: #1d1d1f; --muted: #666; --line: #d8d8d8; --accent: #2458a6; --best: #0b6b2f; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       margin: 0 auto; max-width: 1240px; padding: 1rem 1.5rem 4rem; }
h1 { font-size: 1.6rem; margin: .2rem 0 .4rem; }
h2 { font-size: 1.3rem; border-bottom: 2px solid var(--accent); padding-bottom: .2rem; margin-top: 2.4rem; }
h3 { font-size: 1.08rem; margin-top: 1.8rem; }
h4 { font-size: .98rem; margin: 1.2rem 0 .4rem; }
p.lead { font-size: 1rem; margin: .4rem 0; }
p.meta, p.note { color: var(--muted); font-size: .85rem; margin: .3rem 0 .8rem; }
nav ul { columns: 2; padding-left: 1.2rem; }
table { border-collapse: collapse; margin: .6rem 0 .2rem; font-size: .82rem; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding: .2rem 0; }
th, td { border-bottom: 1px solid var(--line); padding: .22rem .5rem; text-align: right; white-space: nowrap; }
thead th { border-bottom: 2px solid #999; text-align: center; background: #f6f7f9; }
tbody th { text-align: left; font-weight: 500; }
td:first-child, td.t { text-align: left; }
table.results tbody tr.oracle { font-style: italic; background: #fafafa; border-top: 2px solid #bbb; }
table.results strong { color: var(--best); }
span.n { color: var(--muted); font-size: .75rem; }
span.tag { font-size: .7rem; background: #e8eef8; color: var(--accent); border-radius: 3px; padding: 0 .3rem; }
.scroll { overflow-x: auto; max-width: 100%; }
figure { margin: .8rem 0 1.2rem; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: .82rem; }
details { margin: .3rem 0; }
summary { cursor: pointer; }
ul.skips { color: #8a4b00; }
code { background: #f2f2f2; padding: 0 .2rem; border-radius: 3px; }
"""


def esc(text) -> str:
    return html.escape(str(text))


def img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f"<img alt='{esc(alt)}' src='data:image/png;base64,{data}'>"


def figure(png: bytes, caption: str) -> str:
    return f"<figure>{img(png, caption)}<figcaption>{esc(caption)}</figcaption></figure>"


def details(summary: str, inner: str) -> str:
    return f"<details><summary>{esc(summary)}</summary>{inner}</details>"


def page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><link rel='icon' href='data:,'>"
            f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n")
