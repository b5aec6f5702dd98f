"""Comparison tables: one row per method, one column group per noise level, mean ± std (n) over seeds.

Numbers are shown as the metrics registry says (`benchmark.evaluation.metrics`: AP fractions x 100, one decimal,
as the papers print them; headed by each metric's label). The best mean of every column among
the non-oracle methods is marked (bold in Markdown / LaTeX, <strong> in HTML, `best` in CSV). The clean oracle (a
method in `oracle_methods`, trained on the clean boxes, in any variant) is a separate last row and the reference
for retention.

- retention at a level = AP / oracle AP, per seed, in % (oracle AP = mean over the sweep's oracle cells of the
  default variant, else all of them; none below `MIN_ORACLE_AP`, where the oracle did not learn);
- AUC = area under the mean-AP-vs-noise curve (trapezoid over the noise levels every non-oracle method has),
  divided by the level span: the mean AP over the noise range, in AP points; rAUC = AUC / oracle AP in %.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from benchmark.evaluation import metrics as registry
from benchmark.results import base_method

DEFAULT_ORACLES = ("clean", "oracle")
MIN_ORACLE_AP = 1.0  # AP points: below it the oracle did not learn and retention would be a ratio of noise


@dataclass
class Table:
    """A rendered-anywhere table: numeric mean / std / n frames with the same index and column MultiIndex."""

    title: str
    mean: pd.DataFrame  # index: row label; columns: MultiIndex (group label, metric)
    std: pd.DataFrame
    n: pd.DataFrame
    oracle_rows: list[str] = field(default_factory=list)
    higher_is_better: bool = True
    decimals: int = 1
    note: str = ""
    lower_is_better: tuple = ()  # metrics (column level 1) whose best is the lowest mean, whatever higher_is_better

    def best(self) -> pd.DataFrame:
        """Boolean frame: the best mean of each column among the non-oracle rows (ties all marked)."""
        contenders = self.mean.drop(index=[r for r in self.oracle_rows if r in self.mean.index])
        if contenders.empty:
            return pd.DataFrame(False, index=self.mean.index, columns=self.mean.columns)
        target = contenders.max() if self.higher_is_better else contenders.min()
        lower = np.array([isinstance(c, tuple) and c[1] in self.lower_is_better for c in self.mean.columns], bool)
        target = target.where(~lower, contenders.min())
        rounded = self.mean.round(self.decimals)
        best = rounded.eq(target.round(self.decimals), axis=1) & self.mean.notna()
        best.loc[[r for r in self.oracle_rows if r in best.index]] = False
        return best


def sweep_groups(frame: pd.DataFrame) -> list[tuple[tuple[str, str, str], pd.DataFrame]]:
    """Split the cells into comparable groups: one per (dataset, noise model, profile).

    Cells trained on clean boxes (noise level 0, such as the clean oracle) do not depend on the noise model, so they
    join every noise-model group of their dataset and profile (alone they form a group of their own).
    """
    out = []
    for (dataset, profile), sub in frame.groupby(["dataset", "profile"], sort=False):
        clean = sub["noise_level"] == 0
        models = list(dict.fromkeys(sub.loc[~clean, "noise_model"])) or list(dict.fromkeys(sub["noise_model"]))
        for model in models:
            g = sub[clean | (sub["noise_model"] == model)].reset_index(drop=True)
            out.append(((str(dataset), str(model), str(profile)), g))
    return out


def oracle_methods_in(frame: pd.DataFrame, oracle_methods=DEFAULT_ORACLES) -> list[str]:
    """Rows that are an oracle, in any variant (`clean [train.lr=0.002]` as well as `clean`)."""
    wanted = set(oracle_methods)
    return [m for m in frame["method"].unique() if m in wanted or base_method(m) in wanted]


def reference_oracles(oracles: list[str]) -> list[str]:
    """The oracle rows retention divides by: those in the default variant when there are any (an oracle rerun with
    `--set` is shown, but is not the reference of the default runs), else all of them."""
    return [m for m in oracles if m == base_method(m)] or list(oracles)


def _level_label(level: float) -> str:
    return f"noise {level:g}"


def _method_order(frame: pd.DataFrame, oracles: list[str]) -> list[str]:
    methods = list(dict.fromkeys(frame["method"]))
    return [m for m in methods if m not in oracles] + [m for m in methods if m in oracles]


def aggregate(frame: pd.DataFrame, metrics, keys=("method", "noise_level")) -> pd.DataFrame:
    """Long frame: mean, sample std (ddof=1; NaN for n=1) and n over seeds, as shown (AP points: the registry's
    scale), per keys x metric."""
    long = frame.melt(id_vars=list(keys), value_vars=list(metrics), var_name="metric", value_name="value")
    long = long.dropna(subset=["value"])
    long["value"] = long["value"].astype(float) * long["metric"].map(registry.scale).astype(float)
    agg = long.groupby([*keys, "metric"], sort=False)["value"].agg(["mean", "std", "count"]).reset_index()
    return agg.rename(columns={"count": "n"})


def metric_table(frame: pd.DataFrame, metrics, title: str, oracle_methods=DEFAULT_ORACLES) -> Table | None:
    """Methods x (noise level, metric) table of mean ± std over seeds; None when no cell has these metrics."""
    metrics = [m for m in metrics if m in frame and frame[m].notna().any()]
    if not metrics:
        return None
    oracles = oracle_methods_in(frame, oracle_methods)
    agg = aggregate(frame, metrics)
    levels = sorted(agg["noise_level"].unique())
    cols = pd.MultiIndex.from_tuples([(_level_label(lv), m) for lv in levels for m in metrics])
    rows = _method_order(frame, oracles)
    mean = pd.DataFrame(np.nan, index=rows, columns=cols)
    std, n = mean.copy(), mean.copy()
    for r in agg.itertuples(index=False):
        key = (_level_label(r.noise_level), r.metric)
        mean.loc[r.method, key], std.loc[r.method, key], n.loc[r.method, key] = r.mean, r.std, r.n
    lower = tuple(m for m in metrics if not registry.higher_is_better(m))
    return Table(title, mean, std, n, oracle_rows=oracles, lower_is_better=lower)


def summary_table(frame: pd.DataFrame, title: str, metric: str = "AP",
                  oracle_methods=DEFAULT_ORACLES) -> Table | None:
    """Per method: retention (metric / oracle metric, %) at every noise level, AUC and rAUC."""
    if metric not in frame or frame[metric].isna().all():
        return None
    oracles = oracle_methods_in(frame, oracle_methods)
    rest = frame[~frame["method"].isin(oracles)]
    reference = reference_oracles(oracles)
    shown = registry.scale(metric)  # stored -> shown (AP fractions -> points)
    oracle_ap = frame.loc[frame["method"].isin(reference), metric].mean() * shown if oracles else np.nan
    untrained = bool(np.isfinite(oracle_ap) and oracle_ap < MIN_ORACLE_AP)
    if untrained:  # a ratio to ~0 says nothing (0.2 / 0.2 reads "100 % kept")
        oracle_ap = np.nan
    levels = sorted(rest["noise_level"].unique())
    rows = _method_order(frame, oracles)
    cols = [("retention %", _level_label(lv)) for lv in levels] + [("AUC", metric), ("rAUC %", metric)]
    mean = pd.DataFrame(np.nan, index=rows, columns=pd.MultiIndex.from_tuples(cols))
    std, n = mean.copy(), mean.copy()
    if np.isfinite(oracle_ap) and oracle_ap > 0:
        ret = rest.assign(retention=rest[metric] * shown / oracle_ap * 100.0)
        agg = ret.groupby(["method", "noise_level"])["retention"].agg(["mean", "std", "count"])
        for (method, lv), r in agg.iterrows():
            key = ("retention %", _level_label(lv))
            mean.loc[method, key], std.loc[method, key], n.loc[method, key] = r["mean"], r["std"], r["count"]
    common = _common_levels(rest)
    for method, sub in frame.groupby("method", sort=False):
        by_level = sub.groupby("noise_level")[metric].mean() * shown
        value = auc(by_level, common) if method not in oracles else by_level.mean()
        mean.loc[method, ("AUC", metric)] = value
        n.loc[method, ("AUC", metric)] = len(common) if method not in oracles else len(by_level)
        if np.isfinite(oracle_ap) and oracle_ap > 0:
            mean.loc[method, ("rAUC %", metric)] = value / oracle_ap * 100.0
    note = ("no clean-oracle cells: retention and rAUC unavailable; " if not oracles else
            f"oracle {metric} below {MIN_ORACLE_AP:g} point ({', '.join(reference)}): it did not learn, so retention "
            "and rAUC are not shown; " if untrained else f"oracle {metric} = {oracle_ap:.1f} ({', '.join(reference)}); ")
    note += f"AUC over noise levels {', '.join(f'{lv:g}' for lv in common)}" if len(common) >= 2 else \
        "AUC needs at least two noise levels shared by all methods"
    return Table(title, mean, std, n, oracle_rows=oracles, note=note)


def _common_levels(frame: pd.DataFrame) -> list[float]:
    sets = [set(sub["noise_level"]) for _, sub in frame.groupby("method")]
    return sorted(set.intersection(*sets)) if sets else []


def auc(mean_by_level: pd.Series, levels: list[float]) -> float:
    """Trapezoid area under mean-metric-vs-level over `levels`, divided by the level span (NaN if < 2 levels)."""
    if len(levels) < 2 or any(lv not in mean_by_level.index for lv in levels):
        return np.nan
    y = mean_by_level.loc[levels].to_numpy(dtype=float)
    x = np.asarray(levels, dtype=float)
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0 / (x[-1] - x[0]))


# ---- rendering --------------------------------------------------------------------------------------------------

def _fmt(v: float, decimals: int) -> str:
    return "–" if not np.isfinite(v) else f"{v:.{decimals}f}"


def _cell_text(t: Table, row, col, best: bool, style: str) -> str:
    m, s, n = t.mean.loc[row, col], t.std.loc[row, col], t.n.loc[row, col]
    if not np.isfinite(m):
        return "–" if style != "latex" else "--"
    core = _fmt(m, t.decimals)
    if style == "md" and best:
        core = f"**{core}**"
    elif style == "latex" and best:
        core = f"\\textbf{{{core}}}"
    elif style == "html" and best:
        core = f"<strong>{core}</strong>"
    pm = {"md": " ± ", "html": " ± ", "latex": " $\\pm$ "}[style]
    if np.isfinite(s):
        core += f"{pm}{_fmt(s, t.decimals)}"
    if np.isfinite(n) and col[0] not in ("AUC", "rAUC %"):
        core += f" ({int(n)})" if style != "html" else f" <span class='n'>({int(n)})</span>"
    return core


def _col_label(col) -> str:
    return f"{col[0]} · {registry.label(col[1])}"


def to_markdown(t: Table) -> str:
    best = t.best()
    header = ["method", *[_col_label(c) for c in t.mean.columns]]
    lines = [f"**{t.title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * len(t.mean.columns)]
    for row in t.mean.index:
        label = f"*{row} (oracle)*" if row in t.oracle_rows else str(row)
        cells = [_cell_text(t, row, c, bool(best.loc[row, c]), "md") for c in t.mean.columns]
        lines.append("| " + " | ".join([label.replace("|", "\\|"), *cells]) + " |")
    lines += ["", "mean ± std (n seeds); best non-oracle mean per column in bold." + (f" {t.note}" if t.note else "")]
    return "\n".join(lines) + "\n"


def to_html(t: Table) -> str:
    best = t.best()
    groups = list(dict.fromkeys(c[0] for c in t.mean.columns))
    e = html.escape
    head1 = "".join(f"<th colspan='{sum(1 for c in t.mean.columns if c[0] == g)}'>{e(str(g))}</th>" for g in groups)
    head2 = "".join(f"<th>{e(registry.label(c[1]))}</th>" for c in t.mean.columns)
    body = []
    for row in t.mean.index:
        cls = " class='oracle'" if row in t.oracle_rows else ""
        label = e(str(row)) + (" <span class='tag'>oracle</span>" if row in t.oracle_rows else "")
        cells = "".join(f"<td>{_cell_text(t, row, c, bool(best.loc[row, c]), 'html')}</td>" for c in t.mean.columns)
        body.append(f"<tr{cls}><th scope='row'>{label}</th>{cells}</tr>")
    note = "mean ± std (n seeds); best non-oracle mean per column in bold." + (f" {t.note}" if t.note else "")
    return (f"<table class='results'><caption>{e(t.title)}</caption><thead><tr><th rowspan='2'>method</th>{head1}"
            f"</tr><tr>{head2}</tr></thead><tbody>{''.join(body)}</tbody></table><p class='note'>{e(note)}</p>")


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def to_latex(t: Table) -> str:
    """booktabs tabular (needs \\usepackage{booktabs}); oracle row after a \\midrule, in italics."""
    best = t.best()
    cols = list(t.mean.columns)
    groups = list(dict.fromkeys(c[0] for c in cols))
    spans, start = [], 2
    for g in groups:
        width = sum(1 for c in cols if c[0] == g)
        spans.append((g, start, start + width - 1))
        start += width
    out = [f"% {latex_escape(t.title)}", "\\begin{tabular}{l" + "r" * len(cols) + "}", "\\toprule"]
    out.append(" & " + " & ".join(f"\\multicolumn{{{b - a + 1}}}{{c}}{{{latex_escape(g)}}}" for g, a, b in spans)
               + " \\\\")
    out.append(" ".join(f"\\cmidrule(lr){{{a}-{b}}}" for _, a, b in spans))
    out.append("Method & " + " & ".join(latex_escape(registry.label(c[1])) for c in cols) + " \\\\")
    out.append("\\midrule")
    normal = [r for r in t.mean.index if r not in t.oracle_rows]
    oracle = [r for r in t.mean.index if r in t.oracle_rows]
    for r in normal:
        out.append(latex_escape(r) + " & " + " & ".join(_cell_text(t, r, c, bool(best.loc[r, c]), "latex")
                                                         for c in cols) + " \\\\")
    if oracle:
        out.append("\\midrule")
        for r in oracle:
            out.append(f"\\textit{{{latex_escape(r)} (oracle)}} & " +
                       " & ".join(_cell_text(t, r, c, False, "latex") for c in cols) + " \\\\")
    out += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(out) + "\n"


def to_long(t: Table) -> pd.DataFrame:
    """Tidy frame (CSV): row, column group, metric, mean, std, n, best, oracle."""
    best = t.best()
    rows = []
    for r in t.mean.index:
        for c in t.mean.columns:
            rows.append({"row": r, "group": c[0], "metric": c[1], "mean": t.mean.loc[r, c], "std": t.std.loc[r, c],
                         "n": t.n.loc[r, c], "best": bool(best.loc[r, c]), "oracle": r in t.oracle_rows})
    return pd.DataFrame(rows)


# ---- plain frames (failure-mode rates, TIDE, noise and environment summaries) -----------------------------------

def _plain(v, decimals: int) -> str:
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            return "–"
        text = f"{v:.{decimals}f}"
        return f"{0.0:.{decimals}f}" if float(text) == 0 else text  # no "-0.0" for a tiny negative
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    return "" if v is None else str(v)


def _decimals(frame: pd.DataFrame, decimals) -> list[int]:
    """Per-column decimals from an int (all columns) or a {column: int} dict (others: 1)."""
    if isinstance(decimals, dict):
        return [decimals.get(c, 1) for c in frame.columns]
    return [decimals] * len(frame.columns)


def plain_markdown(frame: pd.DataFrame, title: str = "", decimals=1) -> str:
    head = [str(c) for c in frame.columns]
    dec = _decimals(frame, decimals)
    lines = ([f"**{title}**", ""] if title else []) + ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_plain(v, d).replace("|", "\\|") for v, d in zip(row, dec)) + " |")
    return "\n".join(lines) + "\n"


def plain_html(frame: pd.DataFrame, title: str = "", decimals=1, css_class: str = "plain") -> str:
    e = html.escape
    dec = _decimals(frame, decimals)
    text = [not pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]
    head = "".join(f"<th>{e(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td{' class=t' if t else ''}>{e(_plain(v, d))}</td>"
                                    for v, d, t in zip(row, dec, text)) + "</tr>"
                   for row in frame.itertuples(index=False))
    cap = f"<caption>{e(title)}</caption>" if title else ""
    return f"<table class='{css_class}'>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def plain_latex(frame: pd.DataFrame, title: str = "", decimals=1) -> str:
    dec = _decimals(frame, decimals)
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]
    spec = "".join("r" if n else "l" for n in numeric)
    out = ([f"% {latex_escape(title)}"] if title else []) + [f"\\begin{{tabular}}{{{spec}}}", "\\toprule",
                                                              " & ".join(latex_escape(c) for c in frame.columns)
                                                              + " \\\\", "\\midrule"]
    for row in frame.itertuples(index=False):
        out.append(" & ".join(latex_escape(_plain(v, d)).replace("–", "--") for v, d in zip(row, dec)) + " \\\\")
    out += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(out) + "\n"
