"""Claims of the READMEs checked against the code: the noise README's API snippet runs as written, its manifest
field list is the manifest's, and leaderboard rows state `noise.rng` as README.md says."""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _python_blocks(md: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", md.read_text(encoding="utf-8"), flags=re.S)


def test_noise_readme_snippet_runs_as_written(tmp_path, monkeypatch):
    blocks = _python_blocks(REPO / "noise" / "README.md")
    assert blocks, "noise/README.md has no python block"
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(blocks[0], "noise/README.md", "exec"), ns)  # noqa: S102 - the documented snippet itself
    assert {p.name for p in (tmp_path / "out" / "uniform-r0.4").iterdir()} == {"train.json", "manifest.json"}
    assert 0 < ns["level"] < 1
    assert ns["mixed"].manifest["counts"]["removed"] > 0
    clean, train = ns["clean"], ns["train"]
    assert [(a["id"], a["bbox"]) for a in clean.annotations] == [(a["id"], a["bbox"]) for a in train.annotations]


def test_manifest_fields_are_the_documented_ones():
    from benchmark.datasets import load
    from noise import make_noisy

    train = load("shapes-mini")["train"]
    m = make_noisy(train, "uniform", 0.2, seed=0).manifest
    documented = {"format", "suite_version", "model", "kind", "params", "param_files", "level", "seed", "rng",
                  "layout", "source", "output", "counts", "realised_iou", "notes", "removed", "class_changes",
                  "added_ids", "clean_area"}
    assert set(m) == documented
    assert m["layout"] is None  # `layout` is recorded for oamil-legacy only
    assert make_noisy(train, "uniform", 0.2, rng="oamil-legacy").manifest["layout"] == "coco"
    flipped = make_noisy(train, "class_flip", 0.1, seed=0).manifest["class_changes"]
    assert flipped and set(flipped[0]) == {"id", "category_id", "to"}


def test_leaderboard_rows_state_rng_as_documented():
    rows = [json.loads(p.read_text()) for p in (REPO / "leaderboard" / "entries").rglob("*.json")]
    assert rows
    for row in rows:
        rng = row["noise"]["rng"]
        if row["noise"]["level"] == 0:
            assert rng == "none", row
        elif row.get("reported") is not None:
            assert rng == "oamil-legacy", row
