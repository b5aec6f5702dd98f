"""Paths a CPU-only CI never takes on its own: CUDA device selection, AMP resume, `--weights` of the wrong network,
local-executor thread layout, a preempted (requeued) Slurm job and `--no-wait` reruns. CUDA is mocked; all on CPU."""

from __future__ import annotations

import os

import pytest
import torch

from benchmark.config import resolve_config
from benchmark.errors import BenchError
from methods import get_method
from methods._core.model import build_faster_rcnn
from methods._core.toy import make_toy_dataset

TINY = {"train.epochs": 1, "train.iters_per_epoch": 1, "train.batch_size": 2, "train.steps": [1],
        "train.warmup_iters": 1, "model.widths": [8, 8, 16, 16], "model.pretrained": False, "model.fpn_channels": 16,
        "model.representation_size": 32, "model.box_batch_size_per_image": 16}


def _model_cfg(profile: str, **model) -> dict:
    return resolve_config(get_method("faster_rcnn"), profile, "coco", None,
                          {f"model.{k}": v for k, v in model.items()})["model"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), num_images=4, size=(64, 48), noise=0.2)


# ---- --weights PATH of another network ------------------------------------------------------------------------------
def test_weights_of_a_resnet_of_another_depth_are_a_clear_error(tmp_path):
    """A ResNet-18 file for a ResNet-34 fits every ResNet-18 layer (and the reverse fits all of ResNet-18): loading
    just those would train the rest from random weights without a word."""
    import torchvision

    for src, dst in (("resnet18", "resnet34"), ("resnet34", "resnet18")):
        path = tmp_path / f"{src}.pth"
        torch.save(torchvision.models.get_model(src).state_dict(), path)
        with pytest.raises(BenchError, match=f"weights do not fit model.backbone={dst}"):
            build_faster_rcnn(_model_cfg("paper", backbone=dst, pretrained=False, weights=str(path)), 2)
    ok = tmp_path / "resnet18.pth"  # the right file (with its fc and BN counters) still loads
    m = build_faster_rcnn(_model_cfg("paper", backbone="resnet18", pretrained=False, weights=str(ok)), 2)
    assert torch.equal(m.backbone.body.layer4[1].conv2.weight, torch.load(ok)["layer4.1.conv2.weight"])


def test_detector_weights_with_another_backbone_are_a_clear_error(tmp_path):
    src = build_faster_rcnn(_model_cfg("cpu", widths=[8, 8, 16, 16], pretrained=False), 4)  # same FPN / heads, other body widths
    path = tmp_path / "det.pth"
    torch.save({"model": src.state_dict()}, path)
    with pytest.raises(BenchError, match="weights do not fit model.backbone=tiny"):
        build_faster_rcnn(_model_cfg("cpu", weights=str(path)), 4)


# ---- AMP -------------------------------------------------------------------------------------------------------------
class _ScalerEnabledOnGpu(torch.amp.GradScaler):
    """What a GPU run with AMP has: an enabled scaler (here only while loading a state, so the CPU step still runs)."""

    def load_state_dict(self, state_dict):
        self._enabled = True
        try:
            super().load_state_dict(state_dict)
        finally:
            self._enabled = False


def test_a_checkpoint_without_amp_resumes_with_amp_on(toy, tmp_path, monkeypatch):
    """`train.amp` and `train.device` may change on resume (RUNTIME_KEYS): a run started on CPU or with amp=false
    saved an empty scaler state, which an enabled GradScaler refuses to load."""
    from benchmark.engine import fit

    m = get_method("faster_rcnn")
    cfg = resolve_config(m, "cpu", "coco", None, TINY)
    fit(m, toy, cfg, tmp_path / "run", progress=False)
    assert torch.load(tmp_path / "run" / "checkpoint.pth", weights_only=True)["scaler"] == {}
    monkeypatch.setattr(torch.amp, "GradScaler", _ScalerEnabledOnGpu)
    out = fit(m, toy, cfg, tmp_path / "run", progress=False)  # resumes the finished run: loads every state
    assert out.metrics["iterations"] == 1


# ---- device selection ------------------------------------------------------------------------------------------------
@pytest.fixture
def one_gpu(monkeypatch):
    """A machine with one CUDA device; set_device fails like CUDA for a device that does not exist."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)

    def set_device(device):
        if torch.device(device).index >= 1:
            raise RuntimeError("CUDA error: invalid device ordinal")

    def init_process_group(*a, **kw):
        raise RuntimeError("init_process_group would start NCCL")

    monkeypatch.setattr(torch.cuda, "set_device", set_device)
    monkeypatch.setattr(torch.distributed, "init_process_group", init_process_group)
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_a_gpu_this_machine_lacks_is_a_one_line_error(one_gpu):
    from benchmark.engine import _Dist

    with pytest.raises(BenchError, match=r"train.device=cuda:3: cuda:3 but only 1 CUDA device"):
        _Dist("cuda:3")
    one_gpu.setenv("CUDA_VISIBLE_DEVICES", "5")
    one_gpu.setenv("WORLD_SIZE", "2")
    one_gpu.setenv("RANK", "1")
    one_gpu.setenv("LOCAL_RANK", "1")  # torchrun --nproc_per_node 2 on one visible GPU
    with pytest.raises(BenchError, match=r"LOCAL_RANK 1 needs cuda:1 but only 1 .*CUDA_VISIBLE_DEVICES=5"):
        _Dist("cuda")
    with pytest.raises(BenchError, match="would put them all on one GPU"):
        _Dist("cuda:0")


def test_predict_on_cuda_without_cuda_is_a_one_line_error(toy, tmp_path, monkeypatch):
    from benchmark.engine import fit, predict

    m = get_method("faster_rcnn")
    res = fit(m, toy, resolve_config(m, "cpu", "coco", None, TINY), tmp_path / "run", progress=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device, msg in (("cuda", "device=cuda but CUDA is not available"),
                        ("gpu", "device must be auto, cpu, cuda or cuda:N")):
        with pytest.raises(BenchError, match=msg):
            predict(m, res.checkpoint, toy, {"train": {"device": device}}, progress=False)


def test_train_device_index_must_be_a_number():
    with pytest.raises(BenchError, match="train.device must be auto, cpu, cuda or cuda:N"):
        resolve_config(get_method("faster_rcnn"), "cpu", "coco", None, {"train.device": "cuda:x"})
    assert resolve_config(get_method("faster_rcnn"), "cpu", "coco", None,
                          {"train.device": "cuda:1"})["train"]["device"] == "cuda:1"


# ---- local executor layout --------------------------------------------------------------------------------------------
def test_threads_per_cell_sets_how_many_cells_fit_the_cores(monkeypatch):
    from benchmark.runner import api
    from benchmark.runner.api import SweepOptions, local_layout

    monkeypatch.setattr(api, "cpu_count", lambda: 16)
    monkeypatch.setattr(api, "visible_gpus", lambda: [])
    assert local_layout(SweepOptions("m")) == (16, 1, None)
    assert local_layout(SweepOptions("m", threads=4)) == (4, 4, None)  # not 16 cells x 4 threads on 16 cores
    assert local_layout(SweepOptions("m", threads=4, gpus_per_cell=2)) == (2, 4, None)
    assert local_layout(SweepOptions("m", threads=32)) == (1, 32, None)
    assert local_layout(SweepOptions("m", jobs=3, threads=2)) == (3, 2, None)


# ---- Slurm: a preempted job is requeued and waits in the queue again ---------------------------------------------------
def _dummy_cell(tmp_path):
    import test_runner_dummy  # noqa: F401  (registers `dummy`)

    from benchmark.runner import store as st
    from benchmark.runner.api import SweepOptions, grid
    from benchmark.runner.sweep import plan

    o = SweepOptions("dummy", noise="0.1", seeds="1", datasets=[test_runner_dummy.TINY], baselines=False,
                     store=tmp_path / "store", report=False, progress=False)
    store = st.Store(o.store)
    (p,) = plan(grid(o), store)
    return store.write_config(p.cell.config)


def test_a_requeued_slurm_job_keeps_its_cell_queued(tmp_path, monkeypatch):
    """submitit answers SIGUSR2 (preemption, time limit) by requeueing the task and `sys.exit(-1)`; the task then
    pends in the queue without a claim. A rerun of `bench run --no-wait` must see the cell queued, not resubmit it."""
    import test_runner_dummy

    from benchmark.runner import store as st
    from benchmark.runner.run_cell import run_cell

    cell_dir = _dummy_cell(tmp_path)
    st.mark_queued(cell_dir, "77_0", "slurm")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "squeue").write_text("#!/bin/sh\nprintf '77_0\\n'\n")  # the requeued task is pending again
    (bin_dir / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(st, "_SQUEUE_TTL_S", -1.0)

    def preempted(self, train, cfg, workdir, **kw):
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "checkpoint.json").write_text('{"step": 1, "acc": 1}')
        raise SystemExit(-1)

    monkeypatch.setattr(test_runner_dummy.DummyAdapter, "train", preempted)
    with pytest.raises(SystemExit):
        run_cell(cell_dir, progress=False)
    assert st.cell_status(cell_dir) == st.QUEUED_S

    def failing(self, train, cfg, workdir, **kw):
        raise RuntimeError("boom")

    monkeypatch.setattr(test_runner_dummy.DummyAdapter, "train", failing)
    assert run_cell(cell_dir, progress=False)["status"] == "failed"
    assert not (cell_dir / st.QUEUED).exists() and st.cell_status(cell_dir) == st.FAILED_S


# ---- NaN guard: a finite loss whose gradient is not --------------------------------------------------------------------
class _NanGradModel(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, images, targets=None):
        losses = self.inner(images, targets)
        if self.training:  # sqrt at 0: the value is 0, its gradient inf, times 0 -> NaN in every weight it reaches
            w = self.inner.roi_heads.box_predictor.cls_score.weight
            losses["loss_extra"] = 0.0 * ((w - w.detach()).sum() ** 2).sqrt()
        return losses


def test_a_non_finite_gradient_stops_the_run_instead_of_saving_nan_weights(toy, tmp_path):
    from benchmark.engine import fit
    from methods import MethodAdapter

    class NanGrad(MethodAdapter):
        name = "nan_grad"

        def build_model(self, cfg, num_classes):
            return _NanGradModel(build_faster_rcnn(cfg["model"], num_classes))

    cfg = resolve_config(NanGrad(), "cpu", "coco", None, TINY)
    with pytest.raises(BenchError, match=r"non-finite gradient at iteration 1 \(epoch 1\): finite losses .*"
                                         r"loss_extra=0; batch image ids"):
        fit(NanGrad(), toy, cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "model_final.pth").exists()
