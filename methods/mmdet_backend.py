"""`mmdet`: benchmark any mmdetection 3.x detector under box noise, trained through mmengine's Runner.

Optional backend (extra `mmdet`): mmdet needs compiled mmcv ops, which do not exist for every torch version, so
nothing else in the suite imports it. The adapter writes the cell's noisy training split as a COCO json (mmdet's
`CocoDataset` reads it as it is), generates a config that inherits the chosen mmdet config (`method.config`, a
path or an `mmdet::` name; Faster R-CNN R50-FPN 1x by default) and only swaps the data, then trains with
`Runner.train()` (auto-resume from the work dir's last checkpoint) and predicts with `Runner.test()` in
format-only mode; the `.bbox.json` it writes is read back with the suite's detection loader, so evaluation,
reports and the leaderboard treat it like any other cell.
"""

from __future__ import annotations

from pathlib import Path

from benchmark.errors import BenchError
from benchmark.io import atomic_write_text
from methods import MethodAdapter, Paper, TrainResult, register_method

DEFAULT_CONFIG = "mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py"


def require_mmdet():
    """Import mmdet and mmengine or fail with one line saying how to install them."""
    try:
        import mmdet  # noqa: F401
        import mmengine  # noqa: F401
    except Exception as exc:  # ImportError, or mmcv's own errors when its compiled ops do not match torch
        raise BenchError("the `mmdet` method needs mmdet 3.x, mmengine and an mmcv built for this torch "
                         f"(pip install 'noisybox-bench[mmdet]' and mmcv; import failed: {exc})") from None


def write_config(workdir: Path, train_file: Path, classes: list[str], train_images: Path | None, base: str,
                 seed: int, epochs: int | None, test_file: Path | None = None,
                 test_images: Path | None = None, outfile_prefix: Path | None = None) -> Path:
    """The mmdet config for one run: the base detector with the cell's data, seed, schedule and work dir."""
    from noise.mmdet_config import mmdet_config

    text = mmdet_config(train_file, classes, train_images, test_file, test_images, base=base)
    text += f"\nwork_dir = {str(Path(workdir).resolve())!r}\nrandomness = dict(seed={int(seed)}, deterministic=False)\n"
    if epochs is not None:
        text += f"train_cfg = dict(max_epochs={int(epochs)})\n"
    if outfile_prefix is not None:
        text += ("test_evaluator = dict(type='CocoMetric', ann_file=test_ann_file, metric='bbox', format_only=True, "
                 f"outfile_prefix={str(Path(outfile_prefix).resolve())!r})\n")
    return atomic_write_text(Path(workdir) / ("test_config.py" if outfile_prefix else "train_config.py"), text)


def _classes(ds) -> list[str]:
    return [c["name"] for c in ds.categories]


@register_method
class MMDetBackend(MethodAdapter):
    name = "mmdet"
    paper = Paper(title="MMDetection: Open MMLab Detection Toolbox and Benchmark", venue="arXiv", year=2019,
                  url="https://arxiv.org/abs/1906.07155", code="https://github.com/open-mmlab/mmdetection")
    description = "any mmdet 3.x config (RetinaNet, FCOS, DETR family, ...) trained on the noisy boxes"

    def default_config(self, profile, noise_level=None, dataset_kind="coco"):
        return {"config": DEFAULT_CONFIG, "epochs": None}

    def build_model(self, cfg, num_classes):
        raise BenchError("the mmdet backend builds its model inside mmengine's Runner; use train/predict")

    def train(self, train, cfg, workdir, *, resume=True, diagnostics=None, progress=True) -> TrainResult:
        require_mmdet()
        from mmengine.config import Config
        from mmengine.runner import Runner

        from benchmark.datasets import save_coco

        workdir = Path(workdir)
        view = self.training_view(train)
        train_file = save_coco(view, workdir / "train.json")
        conf = write_config(workdir, train_file, _classes(view), view.image_root, cfg["method"]["config"],
                            cfg["train"]["seed"], cfg["method"].get("epochs"))
        runner_cfg = Config.fromfile(str(conf))
        runner_cfg.resume = bool(resume)
        Runner.from_cfg(runner_cfg).train()
        last = workdir / "last_checkpoint"
        if not last.is_file():
            raise BenchError("mmengine finished without writing last_checkpoint", workdir)
        return TrainResult(checkpoint=Path(last.read_text().strip()), metrics={"backend": "mmdet",
                                                                               "config": cfg["method"]["config"]})

    def predict(self, checkpoint, dataset, cfg, progress=True) -> list[dict]:
        require_mmdet()
        from mmengine.config import Config
        from mmengine.runner import Runner

        from benchmark.datasets import save_coco
        from benchmark.evaluation import load_detections

        workdir = Path(checkpoint).parent / "predict"
        test_file = workdir / "test.json"
        save_coco(dataset.without_clean_boxes(), test_file)
        conf = write_config(workdir, test_file, _classes(dataset), dataset.image_root, cfg["method"]["config"],
                            cfg["train"]["seed"], None, test_file, dataset.image_root, workdir / "preds")
        runner_cfg = Config.fromfile(str(conf))
        runner_cfg.load_from = str(checkpoint)
        Runner.from_cfg(runner_cfg).test()
        return load_detections(workdir / "preds.bbox.json", dataset)
