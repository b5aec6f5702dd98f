"""Reproduced-only datasets (the suite's `shapes` and BCCD, `cpu` profile): `bench leaderboard add STORE` writes their
rows, and the rendered views show them in their own section after the papers' tables, which stay as they were."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner
from store_kit import write_cell

from benchmark.cli import cli
from leaderboard.render import build_tables, to_latex, to_markdown
from leaderboard.rows import ENTRIES, load_rows, validate_all

ONE_STAGE = {"profile": {"detector": "one_stage"}}


def _cpu_store(root):
    """shapes: faster_rcnn at 0.2 / 0.4 and the oracle over seeds 0, 1; RetinaNet at 0.4 and its clean oracle, one
    seed; bccd: faster_rcnn at 0.4 and the oracle, seeds 0, 1, 2. AP fractions chosen for easy means and stds."""
    store = root / "store"
    for dataset, kind in (("shapes", "shapes"), ("bccd", "voc")):
        seeds = (0, 1) if dataset == "shapes" else (0, 1, 2)
        for seed in seeds:
            write_cell(store, "clean", 0.0, seed, {"AP": 0.66 + 0.02 * seed, "AP50": 0.9}, dataset=dataset, kind=kind)
            write_cell(store, "faster_rcnn", 0.4, seed, {"AP": 0.10 + 0.02 * seed, "AP50": 0.35}, dataset=dataset,
                       kind=kind)
            if dataset == "shapes":
                write_cell(store, "faster_rcnn", 0.2, seed, {"AP": 0.45, "AP50": 0.8}, dataset=dataset, kind=kind)
    write_cell(store, "retinanet", 0.4, 0, {"AP": 0.012, "AP50": 0.054}, dataset="shapes", kind="shapes",
               method_config=ONE_STAGE)
    write_cell(store, "retinanet_clean", 0.0, 0, {"AP": 0.088, "AP50": 0.2}, dataset="shapes", kind="shapes",
               method_config=ONE_STAGE)
    return store


def test_cpu_store_rows_render_in_their_own_section_after_the_paper_tables(tmp_path):
    entries = tmp_path / "lb" / "entries"
    shutil.copytree(ENTRIES, entries)
    for path, row in load_rows(entries):  # keep the papers' rows only: the suite ships CPU rows of its own
        if row["reported"] is None:
            Path(path).unlink()
    store = _cpu_store(tmp_path)
    runner = CliRunner()
    res = runner.invoke(cli, ["leaderboard", "add", str(store), "--entries", str(entries)])
    assert res.exit_code == 0, res.output
    assert validate_all(entries) == []
    res = runner.invoke(cli, ["leaderboard", "render", "--entries", str(entries)])
    assert res.exit_code == 0, res.output
    md = (entries.parent / "README.md").read_text()
    committed = (ENTRIES.parent / "README.md").read_text().split("\n## Reproduced on CPU")[0]
    assert md.startswith(committed)  # the papers' tables, unchanged and first
    section = md[len(committed):]
    assert section.startswith("\n## Reproduced on CPU (`cpu` profile, suite datasets)\n")
    assert section.index("### bccd (test) — AP") < section.index("### shapes (test) — AP")
    shapes = section[section.index("### shapes"):].splitlines()
    assert "| # | Method | Detector | Backbone | Profile | clean | 20% | 40% |" in shapes
    # mean ± std over the seeds, in AP points (10, 12 -> 11.0 ± 1.4; 66, 68 -> 67.0 ± 1.4), one seed without ±
    assert "| 1 | Faster R-CNN | Faster R-CNN | tiny-FPN | `cpu` | – | 45.0 ± 0.0 (n=2) | 11.0 ± 1.4 (n=2) |" in shapes
    # RetinaNet's clean oracle fills the clean column of the RetinaNet row (the paper rows' `run_method`)
    assert "| 2 | RetinaNet | RetinaNet | tiny-FPN | `cpu` | 8.8 (n=1) | – | 1.2 (n=1) |" in shapes
    assert "| 3 | Oracle (Faster R-CNN, clean boxes) | Faster R-CNN | tiny-FPN | `cpu` | 67.0 ± 1.4 (n=2) | – | – |" \
        in shapes
    bccd = section[section.index("### bccd"):section.index("### shapes")]
    assert "| Faster R-CNN | Faster R-CNN | tiny-FPN | `cpu` | – | 12.0 ± 2.0 (n=3) |" in bccd  # 10, 12, 14
    assert "| Oracle (Faster R-CNN, clean boxes) | Faster R-CNN | tiny-FPN | `cpu` | 68.0 ± 2.0 (n=3) | – |" in bccd
    page = (entries.parent / "index.html").read_text()
    assert page.index("Reproduced on CPU (`cpu` profile, suite datasets)") > page.index("voc2007 (test)")
    assert "<h3>shapes (test) — AP</h3>" in page and "<td class=l>RetinaNet</td><td class=l>tiny-FPN</td>" in page
    rows = [r for _, r in load_rows(entries)]
    tex = to_latex(build_tables(rows))
    assert tex.index("shapes (test)") > tex.index("voc2007 (test)")


def test_a_one_stage_oracle_without_a_paper_row_says_its_detector(tmp_path):
    """In a leaderboard of one's own (no paper rows to take names from), `retinanet_clean` is its own row, named as
    the oracle it is and with the one-stage detector its cells trained."""
    store = _cpu_store(tmp_path)
    entries = tmp_path / "mine"
    res = CliRunner().invoke(cli, ["leaderboard", "add", str(store), "--entries", str(entries)])
    assert res.exit_code == 0, res.output
    rows = {(r["dataset"], r["method"]): r for _, r in load_rows(entries)}
    oracle = rows[("shapes", "retinanet_clean")]
    assert (oracle["method_name"], oracle["detector"], oracle["profile"]) == \
        ("Oracle (RetinaNet, clean boxes)", "RetinaNet", "cpu")
    assert rows[("shapes", "clean")]["detector"] == "Faster R-CNN"
    md = to_markdown(build_tables([r for r in rows.values()]))
    assert md.count("## Reproduced on CPU") == 1 and "\n## shapes" not in md  # only the reproduced section


def test_reproduced_only_rows_of_another_profile_get_the_general_heading():
    from leaderboard_kit import _row

    md = to_markdown(build_tables([_row("m1", reproduced=40.0, dataset="aaa"), _row("m2", reported=30.0)]))
    assert "## Reproduced by the suite (datasets without paper-reported rows here)" in md
    assert "Reproduced on CPU" not in md
    assert md.index("## coco2017 (val2017)") < md.index("### aaa (val2017)")  # the paper table first
    assert "| 1 | M1 | Faster R-CNN | R50-FPN | `paper` | 40.0 ± 0.5 (n=3) |" in md
