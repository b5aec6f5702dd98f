"""`noise.spec.NoiseSpec`: one noise setting parsed once, recorded as a cell's identity, read back and drawn."""

from __future__ import annotations

import pytest

from benchmark.datasets.core import DetectionDataset
from benchmark.errors import BenchError
from noise.spec import CLEAN, NoiseSpec


def one_box() -> DetectionDataset:
    return DetectionDataset([{"id": 1, "file_name": "a.jpg", "width": 1000, "height": 1000}],
                            [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [100.0, 100.0, 40.0, 20.0],
                              "area": 800.0, "iscrowd": 0}], [{"id": 1, "name": "a"}])


def test_parse_checks_once_and_fills_the_default_seed():
    assert NoiseSpec.parse("uniform").seed == 0
    assert NoiseSpec.parse("uniform", rng="oamil-legacy").seed == 45  # OA-MIL's published script's seed
    assert NoiseSpec.parse("uniform", rng="oamil-legacy", seed=3).seed == 3
    with pytest.raises(BenchError, match="has no parameter 'x'"):
        NoiseSpec.parse("una", {"x": 1})
    with pytest.raises(BenchError, match=r"must be in \[0, 0.5\]"):
        NoiseSpec.parse("una", levels=[0.2, 0.7])
    with pytest.raises(BenchError, match="not a step"):
        NoiseSpec.parse("uniform+missing@0.1", {"bogus.k": 1})


def test_a_level_of_the_sweep_keeps_the_setting_and_level_zero_is_clean():
    sweep = NoiseSpec.parse("bias", {"direction": "shrink"}, seed=7)
    cell = sweep.at(0.3)
    assert (cell.model, cell.level, cell.params, cell.seed, cell.rng) == ("bias", 0.3, {"direction": "shrink"}, 7,
                                                                          "numpy")
    assert sweep.at(0.3, seed=2).seed == 2
    assert sweep.at(0.0) == CLEAN and CLEAN.is_clean and CLEAN.model == "none"
    assert CLEAN.identity() == ({"model": "none", "level": 0.0, "params": {}, "seed": 0, "rng": "numpy"}, {})


def test_identity_read_back_draws_the_hand_computed_box():
    """bias shrink 0.25, dx=1 on [100, 100, 40, 20]: centre (120, 110) moves by dx*g*w = 10 to (130, 110), size
    x0.75 -> 30 x 15, so [115, 102.5, 30, 15]."""
    noise, locator = NoiseSpec.parse("bias", {"direction": "shrink", "dx": 1}, level=0.25).identity()
    assert noise["params"] == {"direction": "shrink", "dx": 1.0, "dy": 0.0}  # defaults filled, 1 read as 1.0
    assert locator == {"noise_defaults": {"direction": "grow", "dx": 0.0, "dy": 0.0}}
    made = NoiseSpec.from_config(noise, locator).make(one_box())
    assert made.dataset.annotations[0]["bbox"] == pytest.approx([115.0, 102.5, 30.0, 15.0])
    assert made.dataset.annotations[0]["true_bbox"] == [100.0, 100.0, 40.0, 20.0]


def test_a_parameter_file_is_recorded_by_content_and_read_back_by_path(tmp_path):
    matrix = tmp_path / "flip.json"
    matrix.write_text('{"1": {"1": 1}}')
    noise, locator = NoiseSpec.parse("class_flip", {"matrix": str(matrix)}, level=0.5).identity()
    assert noise["params"]["matrix"].startswith("sha256:") and locator["noise_files"] == {"matrix": str(matrix)}
    assert NoiseSpec.from_config(noise, locator).params["matrix"] == str(matrix)
    matrix.unlink()
    with pytest.raises(BenchError, match="the file is gone"):
        NoiseSpec.from_config(noise, locator)
