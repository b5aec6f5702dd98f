"""The optional mmdet backend: config generation and clear errors everywhere; training only where mmdet imports."""

from __future__ import annotations

import importlib.util

import pytest

from benchmark.config import resolve_config
from benchmark.errors import BenchError
from methods import get_method
from methods._core.toy import make_toy_dataset
from methods.mmdet_backend import DEFAULT_CONFIG, write_config


def _mmdet_importable() -> bool:
    try:
        import mmdet  # noqa: F401
        import mmengine  # noqa: F401
        return True
    except Exception:
        return False


MMDET = _mmdet_importable()


def test_written_config_points_mmdet_at_the_cell_data(tmp_path):
    train = tmp_path / "train.json"
    test = tmp_path / "test.json"
    conf = write_config(tmp_path / "run", train, ["rbc", "wbc"], tmp_path / "imgs", DEFAULT_CONFIG, seed=3, epochs=2,
                        test_file=test, test_images=tmp_path / "imgs", outfile_prefix=tmp_path / "run" / "preds")
    text = conf.read_text()
    assert f"_base_ = [{DEFAULT_CONFIG!r}]" in text
    assert f"train_ann_file = {str(train.resolve())!r}" in text and "classes = ('rbc', 'wbc')" in text
    assert "num_classes = 2" in text and "roi_head=dict(bbox_head=dict(num_classes=num_classes))" in text
    assert "randomness = dict(seed=3" in text and "max_epochs=2" in text
    assert "format_only=True" in text and str((tmp_path / "run" / "preds").resolve()) in text
    compile(text, str(conf), "exec")  # valid Python, as mmengine's Config.fromfile needs


@pytest.mark.skipif(MMDET, reason="mmdet is importable here: the missing-dependency message cannot be shown")
def test_without_mmdet_training_fails_with_one_clear_line(tmp_path):
    ds = make_toy_dataset(tmp_path / "toy", num_images=2)
    adapter = get_method("mmdet")
    cfg = resolve_config(adapter, "cpu", "coco", None, None)
    with pytest.raises(BenchError, match=r"needs mmdet 3\.x, mmengine and an mmcv"):
        adapter.train(ds, cfg, tmp_path / "run", progress=False)


@pytest.mark.slow
@pytest.mark.skipif(not MMDET, reason="mmdet/mmcv not importable on this machine (compiled mmcv ops needed)")
def test_mmdet_retinanet_trains_and_predicts_on_a_toy_set(tmp_path):
    ds = make_toy_dataset(tmp_path / "toy", num_images=4, noise=0.2)
    adapter = get_method("mmdet")
    cfg = resolve_config(adapter, "cpu", "coco", None, {"method.config": "mmdet::retinanet/retinanet_r18_fpn_1x_coco.py",
                                                         "method.epochs": 1})
    result = adapter.train(ds, cfg, tmp_path / "run", progress=False)
    dets = adapter.predict(result.checkpoint, ds, cfg, progress=False)
    assert isinstance(dets, list)
    assert {d["image_id"] for d in dets} <= {im["id"] for im in ds.images}
    assert importlib.util.find_spec("mmdet") is not None
