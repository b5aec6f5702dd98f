"""A valid leaderboard row with a paper-reported and/or a reproduced AP, for leaderboard and output tests."""

from __future__ import annotations


def _row(method="m1", level=0.4, reported=None, reproduced=None, dataset="coco2017"):
    return {
        "schema_version": 1, "method": method, "method_name": method.upper(), "paper": {"title": f"Paper {method}"},
        "dataset": dataset, "test_split": "val2017",
        "noise": {"model": "uniform", "level": level, "rng": "numpy"},
        "detector": "Faster R-CNN", "backbone": "R50-FPN", "schedule": "1x", "extra_supervision": "none",
        "reported": None if reported is None else {"source": "Table 1", "metrics": {"AP": reported}},
        "reproduced": None if reproduced is None else {
            "metrics": {"AP": {"mean": reproduced, "std": 0.5, "n": 3}}, "cells": ["abc"], "suite_version": "0",
            "hardware": "cpu"},
    }
