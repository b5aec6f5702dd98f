"""Report figures with matplotlib's object API (no pyplot, so no display and no global figure state).

Every figure is written as PNG (for the HTML page) and SVG (for papers) with fixed metadata and SVG hash salt, so
re-running a report on the same store gives the same files.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from benchmark.io import atomic_write_bytes

_RC = {"svg.hashsalt": "noisybox-bench", "svg.fonttype": "none", "font.size": 9, "axes.grid": True,
       "grid.alpha": 0.3}
_DPI = 110
_PALETTE = matplotlib.colormaps["tab10"].colors
MODE_COLORS = {"good": "#4c9a2a", "group": "#d62728", "drift": "#9467bd", "part": "#ff7f0e",
               "oversize": "#8c564b", "shift": "#7f7f7f"}


def method_colors(methods) -> dict[str, tuple]:
    """Stable colour per method across all figures of a report."""
    return {m: _PALETTE[i % len(_PALETTE)] for i, m in enumerate(dict.fromkeys(methods))}


def save_figure(fig: Figure, base: Path, formats=("png", "svg")) -> dict[str, Path]:
    """Write `base.png` / `base.svg` atomically; returns {format: path}."""
    import io

    out = {}
    with matplotlib.rc_context(_RC):
        fig.set_dpi(_DPI)
        if fig.get_layout_engine() is not None:  # lay out once, then freeze it for every format (~2x faster)
            fig.draw_without_rendering()
            fig.set_layout_engine("none")
        for fmt in formats:
            buf = io.BytesIO()
            meta = {"Software": None} if fmt == "png" else {"Date": None, "Creator": None}
            fig.savefig(buf, format=fmt, dpi=_DPI, metadata=meta)
            out[fmt] = atomic_write_bytes(Path(f"{base}.{fmt}"), buf.getvalue())
    return out


def _figure(w: float, h: float) -> Figure:
    with matplotlib.rc_context(_RC):
        return Figure(figsize=(w, h), layout="constrained")


def ap_vs_noise(agg: pd.DataFrame, metrics=("AP", "AP75"), oracles=(), colors=None, title: str = "") -> Figure:
    """One panel per metric: mean ± std (error bars) over seeds vs noise level, a line per method.

    `agg` is `tables.aggregate(...)` output (method, noise_level, metric, mean, std, n) in AP points; oracle methods
    are drawn as a dashed horizontal band (mean ± std over all their cells) since their boxes are clean anyway.
    """
    metrics = [m for m in metrics if m in set(agg["metric"])]
    colors = colors or method_colors(agg["method"])
    with matplotlib.rc_context(_RC):
        fig = _figure(4.2 * max(len(metrics), 1), 3.4)
        axes = fig.subplots(1, max(len(metrics), 1), squeeze=False)[0]
        for ax, metric in zip(axes, metrics):
            sub = agg[agg["metric"] == metric]
            for method, m in sub.groupby("method", sort=False):
                m = m.sort_values("noise_level")
                if method in oracles:
                    mu, sd = m["mean"].mean(), m["mean"].std() if len(m) > 1 else 0.0
                    ax.axhline(mu, color=colors[method], ls="--", lw=1.2, label=f"{method} (oracle)")
                    if np.isfinite(sd) and sd > 0:
                        ax.axhspan(mu - sd, mu + sd, color=colors[method], alpha=0.12, lw=0)
                    continue
                ax.errorbar(m["noise_level"], m["mean"], yerr=m["std"].fillna(0.0), marker="o", ms=4, capsize=3,
                            color=colors[method], label=method)
            levels = sorted(sub.loc[~sub["method"].isin(oracles), "noise_level"].unique())
            if levels:
                ax.set_xticks(levels, [f"{lv:g}" for lv in levels])
            ax.set_xlabel("noise level")
            ax.set_ylabel(f"{metric} (points)")
            ax.set_title(metric)
            ax.set_ylim(bottom=0)
        if metrics:
            axes[0].legend(fontsize=8, loc="best")
        if title:
            fig.suptitle(title)
    return fig


def realised_iou(iou_by_level: dict[float, np.ndarray], title: str = "") -> Figure:
    """Realised IoU(noisy box, clean box) per noise level: box plot (10/25/50/75/90 %) with the mean marked."""
    levels = sorted(iou_by_level)
    with matplotlib.rc_context(_RC):
        fig = _figure(4.8, 3.4)
        ax = fig.subplots()
        data = [np.asarray(iou_by_level[lv], dtype=float) for lv in levels]
        if levels:
            ax.boxplot(data, positions=range(len(levels)), whis=(10, 90), showfliers=False, widths=0.5,
                       showmeans=True, meanprops={"marker": "D", "markersize": 4})
            ax.set_xticks(range(len(levels)), [f"{lv:g}" for lv in levels])
        ax.axhline(0.5, color="k", lw=0.8, ls=":")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("noise level")
        ax.set_ylabel("IoU(noisy, clean)")
        ax.set_title(title or "realised annotation IoU (whiskers 10-90 %, ◆ mean)")
    return fig


def iou_histograms(panels: list[tuple[str, float, np.ndarray, np.ndarray]], colors=None, title: str = "") -> Figure:
    """Grid (methods x levels): histogram of IoU(refined, clean) over the noisy boxes' IoU(noisy, clean)."""
    methods = list(dict.fromkeys(p[0] for p in panels))
    levels = sorted({p[1] for p in panels})
    colors = colors or method_colors(methods)
    bins = np.linspace(0, 1, 26)
    with matplotlib.rc_context(_RC):
        fig = _figure(2.6 * max(len(levels), 1), 2.1 * max(len(methods), 1))
        axes = fig.subplots(max(len(methods), 1), max(len(levels), 1), squeeze=False, sharex=True)
        for ax in axes.flat:
            ax.set_visible(False)
        for method, level, noisy, refined in panels:
            ax = axes[methods.index(method), levels.index(level)]
            ax.set_visible(True)
            ax.hist(noisy, bins=bins, color="0.6", alpha=0.6, label=f"noisy (mean {np.mean(noisy):.2f})")
            ax.hist(refined, bins=bins, histtype="step", lw=1.6, color=colors[method],
                    label=f"refined (mean {np.mean(refined):.2f})" if len(refined) else "refined")
            ax.set_title(f"{method} · noise {level:g}", fontsize=8)
            ax.legend(fontsize=6, loc="upper left")
            ax.set_xlabel("IoU with clean box", fontsize=7)
        if title:
            fig.suptitle(title)
    return fig


def stacked_modes(rates: pd.DataFrame, label_cols=("method", "noise_level"), title: str = "",
                  modes=("good", "group", "drift", "part", "oversize", "shift")) -> Figure:
    """Horizontal stacked bars: share (% of all boxes) of every failure mode per method and level."""
    wide = rates.pivot_table(index=list(label_cols), columns="mode", values="pct_all", sort=False).fillna(0.0)
    labels = [" · ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in (k if isinstance(k, tuple) else (k,)))
              for k in wide.index]
    with matplotlib.rc_context(_RC):
        fig = _figure(6.5, 0.9 + 0.28 * max(len(labels), 1))
        ax = fig.subplots()
        left = np.zeros(len(labels))
        for m in modes:
            vals = wide[m].to_numpy() if m in wide else np.zeros(len(labels))
            ax.barh(range(len(labels)), vals, left=left, color=MODE_COLORS[m], label=m, height=0.7)
            left += vals
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_xlabel("% of boxes")
        ax.legend(ncols=len(modes), fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
        if title:
            ax.set_title(title, pad=22)
    return fig


def tide_lines(tide: pd.DataFrame, oracles=(), colors=None, title: str = "",
               types=("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss", "FalsePos", "FalseNeg")) -> Figure:
    """One small panel per TIDE error type: dAP (points) vs noise level, a line per method (oracle dashed)."""
    colors = colors or method_colors(tide["method"])
    with matplotlib.rc_context(_RC):
        fig = _figure(11, 4.8)
        axes = fig.subplots(2, 4, squeeze=False, sharex=True)
        for ax, t in zip(axes.flat, types):
            col = f"dAP_{t}"
            for method, m in tide.groupby("method", sort=False):
                m = m.sort_values("noise_level")
                ax.plot(m["noise_level"], m[col], marker="o", ms=3, color=colors[method],
                        ls="--" if method in oracles else "-", label=method)
            ax.set_title(f"d{t}" if t not in ("FalsePos", "FalseNeg") else f"{t} oracle", fontsize=8)
            ax.margins(y=0.15)
            ax.set_ylim(bottom=0)
            levels = sorted(tide["noise_level"].unique())
            ax.set_xticks(levels, [f"{lv:g}" for lv in levels])
        for ax in axes[-1]:
            ax.set_xlabel("noise level")
        axes[0, 0].legend(fontsize=6)
        axes[0, 0].set_ylabel("dAP (points)")
        axes[1, 0].set_ylabel("dAP (points)")
        if title:
            fig.suptitle(title)
    return fig


def training_curves(stats: pd.DataFrame, scalars: list[str], colors=None, title: str = "") -> Figure:
    """A panel per scalar: mean over seeds vs iteration (std band where there are several seeds), a line per
    method and noise level (solid at the highest level, fainter below)."""
    colors = colors or method_colors(stats["method"])
    levels = sorted(stats["noise_level"].unique())
    with matplotlib.rc_context(_RC):
        cols = min(len(scalars), 3) or 1
        rows = -(-len(scalars) // cols) or 1
        fig = _figure(4.0 * cols, 2.9 * rows)
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for ax, scalar in zip(axes, scalars):
            sub = stats[stats["scalar"] == scalar]
            for (method, level), m in sub.groupby(["method", "noise_level"], sort=False):
                alpha = 0.35 + 0.65 * (levels.index(level) + 1) / len(levels)
                ax.plot(m["iteration"], m["mean"], color=colors[method], alpha=alpha, lw=1.2,
                        label=f"{method} · {level:g}")
                if (m["n"] > 1).any():
                    sd = m["std"].fillna(0.0)
                    ax.fill_between(m["iteration"], m["mean"] - sd, m["mean"] + sd, color=colors[method],
                                    alpha=0.12 * alpha, lw=0)
            ax.set_title(scalar)
            ax.set_xlabel("iteration")
        for ax in axes[len(scalars):]:
            ax.set_visible(False)
        if scalars:
            axes[0].legend(fontsize=7, loc="best")
        if title:
            fig.suptitle(title)
    return fig
