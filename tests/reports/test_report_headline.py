"""The report's headline: best method per level, its share of the oracle, and whether the gap beats seed noise."""

import math

import pandas as pd

from reports.headline import group_headline
from reports.tables import DEFAULT_ORACLES


def frame(rows):
    """rows: (method, level, [AP fractions per seed])"""
    return pd.DataFrame([{"method": m, "noise_level": lv, "seed": s, "AP": ap}
                         for m, lv, aps in rows for s, ap in enumerate(aps)])


def test_the_best_method_its_oracle_share_and_a_gap_beyond_the_seed_spread():
    g = frame([("faster_rcnn", 0.1, [0.40, 0.42, 0.44]), ("faster_rcnn", 0.3, [0.20, 0.22, 0.27]),
               ("oa_mil", 0.1, [0.45, 0.45, 0.48]), ("oa_mil", 0.3, [0.30, 0.34, 0.32]),
               ("clean", 0.0, [0.50, 0.52, 0.54])])
    # oa_mil 0.3: mean 32.0, std 2.0; faster_rcnn 0.3: mean 23.0, std 3.606; oracle 52.0
    lines = group_headline(g, DEFAULT_ORACLES)
    assert lines[0] == ("At noise 0.3, oa_mil held up best: AP 32.0 ± 2.0, 62 % of the oracle. Next, faster_rcnn is "
                        "9.0 points lower (23.0 ± 3.6, 44 %): more than their seed spreads added (5.6).")
    assert lines[1] == "The clean oracle reaches AP 52.0."
    assert lines[2] == "Best at each level — 0.1: oa_mil (46.0), 0.3: oa_mil (32.0)."


def test_a_gap_inside_the_seed_spread_is_called_so_and_one_seed_is_flagged():
    close = frame([("a", 0.4, [0.30, 0.36]), ("b", 0.4, [0.29, 0.33]), ("clean", 0.0, [0.5, 0.5])])
    assert "within their seed spreads added" in group_headline(close, DEFAULT_ORACLES)[0]
    single = frame([("a", 0.4, [0.30]), ("b", 0.4, [0.10]), ("clean", 0.0, [0.5])])
    assert "one seed per cell" in group_headline(single, DEFAULT_ORACLES)[0]


def test_an_oracle_that_learned_nothing_is_said_and_no_share_is_given():
    g = frame([("a", 0.4, [0.002]), ("clean", 0.0, [0.004])])
    lines = group_headline(g, DEFAULT_ORACLES)
    assert "learned almost nothing" in lines[0] and "% of the oracle" not in lines[1]


def test_no_metric_no_headline():
    g = frame([("a", 0.4, [math.nan])])
    assert group_headline(g, DEFAULT_ORACLES) == []
