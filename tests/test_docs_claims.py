"""Claims of the READMEs checked against the code: the noise README's API snippet runs as written, its manifest
field list is the manifest's, and leaderboard rows state `noise.rng` as README.md says."""

from __future__ import annotations

import json
import re
import subprocess
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


# Notes that live outside the repository (the developers' reference folder); users never get them, so nothing the
# suite ships may cite them. The repo's own docs/methods.md is fine: a bare "methods.md §N" / "methods.md 2.4" is not.
_OUTSIDE_REFS = re.compile(
    r"shared/reference|(?<![\w/-])(?:perf-anchors|fidelity-audit|structure-review|cpu-prototype|peers|anchors)\.md"
    r"|(?<!docs/)(?<![\w-])methods\.md\W{0,3}(?:§|section\b|\d)"
)
_DOC_CITATION = re.compile(r"docs/([\w-]+\.md)(?:,? \(?\"([^\"\n]+)\")?")


def _tracked_text_files() -> dict[str, str]:
    try:
        names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
        paths = [REPO / n for n in names.decode().split("\0") if n]
    except (OSError, subprocess.CalledProcessError):  # an unpacked sdist: no git
        paths = [p for p in REPO.rglob("*") if p.is_file() and not any(s.startswith(".") for s in p.parts)]
    out = {}
    for p in paths:
        if p.is_file() and p.suffix in {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".cfg", ".json", ".html"}:
            out[p.relative_to(REPO).as_posix()] = p.read_text(encoding="utf-8", errors="replace")
    return out


def test_no_citation_of_notes_outside_the_repository():
    here = Path(__file__).relative_to(REPO).as_posix()  # this file spells the patterns out
    hits = [f"{name}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}"
            for name, text in _tracked_text_files().items() if name != here
            for m in _OUTSIDE_REFS.finditer(text)]
    assert not hits, "cite the paper / authors' code or a docs/ page instead:\n" + "\n".join(hits)


def test_outside_refs_pattern_catches_the_old_citations():
    bad = ["(methods.md §6)", "methods.md 2.4: OA-MIL", "`../shared/reference/methods.md` §3.2",
           "perf-anchors.md's anchor G", "reading of methods.md section 7", "see anchors.md"]
    good = ["docs/methods.md", "[choices](methods.md#oa-mil-roi-head)", "  - Methods and choices: methods.md",
            'docs/methods.md ("OA-MIL RoI head")']
    assert all(_OUTSIDE_REFS.search(s) for s in bad)
    assert not any(_OUTSIDE_REFS.search(s) for s in good)


def test_cited_docs_pages_and_sections_exist():
    """`docs/<page>.md` cited anywhere exists, and a section named after it in quotes is one of its headings."""
    missing = []
    for name, text in _tracked_text_files().items():
        for m in _DOC_CITATION.finditer(text):
            page = REPO / "docs" / m.group(1)
            if not page.is_file():
                missing.append(f"{name}: docs/{m.group(1)}")
            elif m.group(2):
                headings = {h.strip() for h in re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), re.M)}
                if m.group(2) not in headings:
                    missing.append(f'{name}: docs/{m.group(1)} "{m.group(2)}"')
    assert not missing, "\n".join(missing)
