"""The engine on CUDA (skipped without it): mixed precision really on, and a CPU-written checkpoint resumes there."""

import pytest
from engine_kit import stopping_at_epoch

from benchmark.config import resolve_config
from benchmark.engine import fit
from methods import get_method
from methods._core.toy import make_toy_dataset

TINY = {"train.epochs": 2, "train.iters_per_epoch": 1, "train.batch_size": 2, "train.steps": [1],
        "train.warmup_iters": 1, "model.widths": [8, 8, 16, 16], "model.pretrained": False, "model.fpn_channels": 16,
        "model.representation_size": 32, "model.box_batch_size_per_image": 16}


@pytest.mark.gpu
def test_two_iterations_on_cuda_with_amp_then_a_cpu_checkpoint_resumes_on_cuda(tmp_path):
    toy = make_toy_dataset(tmp_path / "toy", num_images=4, size=(64, 48), noise=0.2)
    method = get_method("faster_rcnn")
    on_gpu = fit(method, toy, resolve_config(method, "cpu", "coco", None, {**TINY, "train.device": "cuda"}),
                 tmp_path / "gpu", progress=False)
    assert on_gpu.metrics["amp"] is True and on_gpu.metrics["device"].startswith("cuda")
    one_epoch = {**TINY, "train.device": "cpu", "train.epochs": 2}
    with pytest.raises(KeyboardInterrupt):
        fit(stopping_at_epoch(method, 1), toy, resolve_config(method, "cpu", "coco", None, one_epoch),
            tmp_path / "mixed", progress=False)
    resumed = fit(method, toy, resolve_config(method, "cpu", "coco", None, {**one_epoch, "train.device": "cuda"}),
                  tmp_path / "mixed", progress=False)
    assert resumed.metrics["iterations"] == 2 and resumed.metrics["device"].startswith("cuda")
