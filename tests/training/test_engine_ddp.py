"""DDP on CPU: two gloo processes train in lock-step, rank 0 writes the outputs, refined boxes are gathered."""

import json
import os
import socket

import torch
import torch.multiprocessing as mp

from benchmark.config import resolve_config
from benchmark.engine import fit
from methods import MethodAdapter
from methods._core.model import build_faster_rcnn
from methods._core.toy import make_toy_dataset

TINY = {"train.epochs": 2, "train.iters_per_epoch": 2, "train.batch_size": 4, "train.steps": [1],
        "train.warmup_iters": 1, "model.widths": [8, 8, 16, 16], "model.pretrained": False, "model.fpn_channels": 16,
        "model.representation_size": 32, "model.box_batch_size_per_image": 16,
        "train.checkpoint_minutes": 1e-9}  # a mid-epoch checkpoint after every iteration: all ranks must join it


class SeenBoxesModel(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.seen = {}

    def forward(self, images, targets=None):
        if self.training:
            for t in targets:
                for aid in t["ann_ids"].tolist():
                    self.seen[aid] = [0.0, 0.0, 1.0, 1.0]
        return self.inner(images, targets)

    def refined_boxes(self):
        return dict(self.seen)

    def diagnostics(self):
        # called on every rank after the last step: keep this rank's weights to compare across processes
        torch.save(self.inner.state_dict(), os.path.join(os.environ["PROBE_OUT"], f"weights{os.environ['RANK']}.pt"))
        return {"seen_here": float(len(self.seen))}


class SeenBoxes(MethodAdapter):
    name = "ddp_probe"

    def build_model(self, cfg, num_classes):
        return SeenBoxesModel(build_faster_rcnn(cfg["model"], num_classes))


def _worker(rank, world, port, ds, out):
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world),
                       "RANK": str(rank), "LOCAL_RANK": str(rank), "PROBE_OUT": str(out)})
    torch.set_num_threads(1)
    method = SeenBoxes()
    cfg = resolve_config(method, "cpu", "coco", None, TINY)
    result = fit(method, ds, cfg, out / "run", progress=False)
    torch.save({"metrics": result.metrics}, out / f"rank{rank}.pt")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_gloo_two_processes(tmp_path):
    ds = make_toy_dataset(tmp_path / "toy", num_images=8, size=(64, 48))
    mp.spawn(_worker, args=(2, _free_port(), ds, tmp_path), nprocs=2, join=True)
    run = tmp_path / "run"
    metrics = json.loads((run / "train_metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["iterations"] == 4 and metrics["batch_size"] == 4
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)["metrics"]
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)["metrics"]
    assert r0["iterations"] == 4 and r1 == {}  # only rank 0 writes and reports
    w0, w1 = (torch.load(tmp_path / f"weights{r}.pt", weights_only=True) for r in (0, 1))
    trained = [k for k in w0 if k.endswith("weight") and "bn" not in k]
    assert trained and all(torch.equal(w0[k], w1[k]) for k in trained), "DDP ranks drifted apart"
    init = SeenBoxes().build_model(resolve_config(SeenBoxes(), "cpu", "coco", None, TINY), 2).inner.state_dict()
    assert not torch.equal(init["roi_heads.box_predictor.cls_score.weight"],
                           w0["roi_heads.box_predictor.cls_score.weight"])
    # 4 iterations x 4 images = 16 = two passes over 8 images: every annotation was seen by some rank
    refined = json.loads((run / "refined_boxes.json").read_text())
    assert sorted(r["id"] for r in refined) == sorted(a["id"] for a in ds.annotations)
    # diagnostics are averaged over ranks; each rank saw only part of the boxes
    assert 0 < metrics["seen_here"] < len(ds.annotations)
    assert torch.load(run / "checkpoint.pth", weights_only=True)["epoch"] == 2
    assert len(torch.load(run / "checkpoint.pth", weights_only=True)["rng"]) == 2
    # rank 0's clock asked for them; rank 1 joined each (a rank left out would deadlock in the RNG gather)
    log = (run / "train.log").read_text()
    assert "checkpoint at iteration 1 (epoch 1/2 under way)" in log and "checkpoint at iteration 3 (epoch 2/2" in log
