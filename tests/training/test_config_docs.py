"""The config-key reference is generated from the code and complete; `--config FILE` takes the keys `--set` takes."""

import subprocess
import sys

import pytest

from benchmark import config as C
from benchmark.config import config_file_sets, resolve_config
from benchmark.config_docs import MEANING, key_rows, markdown, value_range
from benchmark.errors import BenchError
from methods import get_method


def test_every_model_and_train_key_has_a_meaning():
    keys = {(s, k) for p in C.PROFILES for kind in C.DATASET_KINDS for s in ("model", "train")
            for k in C.profile_defaults(p, kind)[s]}
    missing = sorted(f"{s}.{k}" for s, k in keys - set(MEANING))
    assert not missing, f"add a line to benchmark/config_docs.MEANING for: {missing}"
    stale = sorted(f"{s}.{k}" for s, k in set(MEANING) - keys)
    assert not stale, f"MEANING documents keys the config no longer has: {stale}"


@pytest.mark.parametrize("key, bad", [("model.fpn_channels", 0), ("train.warmup_iters", -1), ("train.lr", 0),
                                      ("train.hflip", 1.5), ("model.pretrained", "yes"),
                                      ("train.optimizer", "lamb")])
def test_the_documented_range_is_the_one_validate_enforces(key, bad):
    section, name = key.split(".")
    assert value_range(section, name)  # documented ...
    with pytest.raises(BenchError, match=key.replace(".", r"\.")):  # ... and enforced
        resolve_config(get_method("faster_rcnn"), "cpu", "coco", None, {key: bad})


def test_the_reference_shows_the_live_defaults():
    rows = {r["key"]: r for r in key_rows()}
    assert rows["model.backbone"]["defaults"]["paper/coco"] == C.profile_defaults("paper", "coco")["model"]["backbone"]
    assert rows["model.min_size"]["defaults"]["paper/voc"] == C.profile_defaults("paper", "voc")["model"]["min_size"]
    page = markdown()
    assert "| `train.lr` |" in page and "number > 0" in page


def test_config_file_flat_nested_and_per_method_keys(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train.lr: 0.002\nmodel:\n  backbone: resnet18\n  anchor_sizes: [[8], [16], [32], [64]]\n"
                 "ssd_det:method:\n  topk: 3\nssd_det:method.shake: 0.1\n")
    assert config_file_sets(f) == ['train.lr=0.002', 'model.backbone="resnet18"',
                                   'model.anchor_sizes=[[8], [16], [32], [64]]', 'ssd_det:method.topk=3',
                                   'ssd_det:method.shake=0.1']


@pytest.mark.parametrize("text, message", [("- a\n- b\n", "must be a mapping"), ("lr: 0.1\n", "must be SECTION.KEY"),
                                           ("train: {a.b: 1}\n", "plain key name"), ("train: [\n", "not valid YAML")])
def test_config_file_errors_name_the_file(tmp_path, text, message):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(BenchError, match=message) as err:
        config_file_sets(f)
    assert "bad.yaml" in str(err.value)


def test_run_with_a_config_file_plans_the_cells_the_same_sets_plan(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  lr: 0.002\nssd_det:method:\n  topk: 3\n")

    def plan(*extra):
        r = subprocess.run([sys.executable, "-m", "benchmark.cli", "run", "-m", "ssd_det", "--noise", "0.4",
                            "--dry-run", "-o", str(tmp_path / "store"), *extra], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout

    with_sets = plan("--set", "train.lr=0.002", "--set", "ssd_det:method.topk=3")
    assert plan("--config", str(f)) == with_sets != plan()
    # the command line wins over the file
    assert plan("--config", str(f), "--set", "train.lr=0.001") == plan("--set", "ssd_det:method.topk=3")


def test_config_show_prints_a_cells_resolved_config_and_marks_set_values(tmp_path):
    import json

    from click.testing import CliRunner

    from benchmark.config_cli import config
    from benchmark.io import write_json

    resolved = resolve_config(get_method("oa_mil"), "cpu", "shapes", 0.4, {"train.lr": 0.002})
    cell = tmp_path / "cells" / "abc"
    write_json(cell / "config.json", {"cell_id": "abc", "method": "oa_mil", "method_config": resolved,
                                      "dataset": {"name": "shapes"}, "noise": {"model": "uniform", "level": 0.4},
                                      "seed": 0, "profile": "cpu", "locator": {"overrides": {"train.lr": 0.002}}})
    r = CliRunner().invoke(config, ["show", str(cell)])
    assert r.exit_code == 0, r.output
    assert "train.lr = 0.002  <- --set" in r.output and "method.oais_gamma = 7.5\n" in r.output
    as_json = CliRunner().invoke(config, ["show", str(cell), "--json"])
    assert json.loads(as_json.output) == json.loads(json.dumps(resolved))
    write_json(tmp_path / "other.json", {"images": []})
    bad = CliRunner().invoke(config, ["show", str(tmp_path / "other.json")])
    assert isinstance(bad.exception, BenchError) and "not a cell config" in str(bad.exception)


def test_every_docs_page_is_in_the_site_nav():
    """mkdocs --strict (in CI) fails on a page outside the nav: caught here too, without mkdocs."""
    from pathlib import Path

    import yaml

    repo = Path(__file__).resolve().parents[2]
    nav = yaml.safe_load((repo / "mkdocs.yml").read_text())["nav"]

    def pages(entries):
        for entry in entries:
            for value in entry.values():
                yield from (pages(value) if isinstance(value, list) else [value])

    listed = set(pages(nav))
    on_disk = {p.relative_to(repo / "docs").as_posix() for p in (repo / "docs").rglob("*.md")}
    generated = {"reference/config.md"}  # written at build time by docs/gen_reference.py
    assert on_disk - listed == set(), "add these pages to mkdocs.yml's nav"
    assert listed - on_disk - generated == set(), "the nav names pages that do not exist"
