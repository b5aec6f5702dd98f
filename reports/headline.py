"""The report's first lines: which method held up at each noise level, by how much, and whether that is more than
seed noise — written from the numbers, so a reader gets the answer before any table."""

from __future__ import annotations

import math

import pandas as pd

from reports.tables import MIN_ORACLE_AP, aggregate, oracle_methods_in, reference_oracles


def _pm(mean: float, std: float) -> str:
    return f"{mean:.1f}" if not math.isfinite(std) else f"{mean:.1f} ± {std:.1f}"


def _spread(std: float) -> float:
    return std if math.isfinite(std) else 0.0


def group_headline(g: pd.DataFrame, oracle_methods, metric: str = "AP") -> list[str]:
    """Sentences about one sweep group (dataset · noise model · profile); empty when it has no `metric`."""
    if metric not in g or g[metric].isna().all():
        return []
    agg = aggregate(g, [metric])
    oracles = oracle_methods_in(g, oracle_methods)
    ref = reference_oracles(oracles)
    noisy = agg[~agg["method"].isin(oracles)]
    if noisy.empty:
        return []
    oracle_ap = agg.loc[agg["method"].isin(ref), "mean"].mean() if ref else math.nan
    oracle_ok = math.isfinite(oracle_ap) and oracle_ap >= MIN_ORACLE_AP

    def share(mean: float, words: str = " of the oracle") -> str:
        return f", {100 * mean / oracle_ap:.0f} %{words}" if oracle_ok else ""

    out = []
    top = max(noisy["noise_level"])
    at = noisy[noisy["noise_level"] == top].sort_values("mean", ascending=False)
    best = at.iloc[0]
    text = (f"At noise {top:g}, {best['method']} held up best: {metric} {_pm(best['mean'], best['std'])}"
            f"{share(best['mean'])}.")
    if len(at) > 1:
        runner = at.iloc[1]
        gap = best["mean"] - runner["mean"]
        spread = _spread(best["std"]) + _spread(runner["std"])
        if min(best["n"], runner["n"]) < 2:
            verdict = "one seed per cell, so seed noise cannot be ruled out (run --seeds 3)"
        elif gap > spread:
            verdict = f"more than their seed spreads added ({spread:.1f})"
        else:
            verdict = f"within their seed spreads added ({spread:.1f}), so not a clear difference"
        text += (f" Next, {runner['method']} is {gap:.1f} points lower ({_pm(runner['mean'], runner['std'])}"
                 f"{share(runner['mean'], '')}): {verdict}.")
    out.append(text)
    if oracle_ok:
        out.append(f"The clean oracle reaches {metric} {oracle_ap:.1f}.")
    elif ref:
        out.append(f"The clean oracle learned almost nothing ({metric} {oracle_ap:.1f}): the noisy rows are not "
                   "meaningful; train longer or start from pretrained weights.")
    levels = sorted(noisy["noise_level"].unique())
    if len(levels) > 1:
        winners = []
        for level in levels:
            row = noisy[noisy["noise_level"] == level].sort_values("mean", ascending=False).iloc[0]
            winners.append(f"{level:g}: {row['method']} ({row['mean']:.1f})")
        out.append("Best at each level — " + ", ".join(winners) + ".")
    return out
