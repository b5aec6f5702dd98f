"""A torch-free dummy method for the runner tests, and tests of the dummy itself.

`dummy` "trains" in `method.steps` steps of `method.step_s` seconds, checkpointing after each step (so a run killed
mid-training resumes), and its state is a deterministic function of the noisy training boxes and the training seed.
It predicts the test set's ground-truth boxes jittered by a generator seeded from that state, so AP differs from cell
to cell, is reproducible, and comes out identical whether or not training was interrupted and resumed.
Workers import it by name (`--import test_runner_dummy`), with `tests/` on the path.

Knobs (config `method.*`): `steps`, `step_s`, `jitter`, `fail_seed` / `crash_seed` (the cell whose training seed
equals it raises / SIGKILLs itself during training, so one sweep can hold good, failing and crashing cells).
`NOISYBOX_DUMMY_LOG=FILE` appends one line per finished training run: "<cell_id> <pid> <step it started from>".
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np

from benchmark.errors import BenchError
from benchmark.io import dumps_json, read_json, sha256_bytes, write_json
from methods import METHODS, register_method
from methods.base import MethodAdapter, TrainResult

_MASK = (1 << 64) - 1


class DummyAdapter(MethodAdapter):
    name = "dummy"
    description = "test double: GT boxes jittered by a seed derived from the noisy training boxes"
    refines_boxes = True

    def default_config(self, profile, noise_level=None, dataset_kind="coco"):
        return {"steps": 3, "step_s": 0.0, "jitter": 0.08, "fail_seed": -1, "crash_seed": -1}

    def train(self, train, cfg, workdir, *, resume=True, diagnostics=None, progress=True):
        m = cfg["method"]
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        ckpt = workdir / "checkpoint.json"
        view = self.training_view(train)
        if resume and ckpt.is_file():
            state = read_json(ckpt)
        else:
            boxes = sorted((a["id"], a["bbox"]) for a in view.annotations)
            start = int(sha256_bytes(dumps_json([boxes, cfg["train"]["seed"]]))[:16], 16)
            state = {"step": 0, "acc": start}
        start_step = state["step"]
        while state["step"] < m["steps"]:
            if cfg["train"]["seed"] == m["crash_seed"]:
                os.kill(os.getpid(), signal.SIGKILL)
            if cfg["train"]["seed"] == m["fail_seed"]:
                raise RuntimeError(f"dummy failure at step {state['step']}")
            time.sleep(m["step_s"])
            state = {"step": state["step"] + 1,
                     "acc": (state["acc"] * 6364136223846793005 + 1442695040888963407 + state["step"]) & _MASK}
            write_json(ckpt, state)
        final = write_json(workdir / "model_final.json", state)
        refined = [{"id": a["id"], "image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"]}
                   for a in view.annotations[:5]]
        refined_path = write_json(workdir / "refined_boxes.json", refined)
        log = os.environ.get("NOISYBOX_DUMMY_LOG")
        if log:
            with open(log, "a") as fh:
                fh.write(f"{workdir.parent.name} {os.getpid()} {start_step}\n")
        return TrainResult(final, {"steps": state["step"], "loss": (state["acc"] % 1000) / 1000}, refined_path)

    def predict(self, checkpoint, dataset, cfg, progress=True):
        state = read_json(checkpoint)
        rng = np.random.default_rng([state["acc"] & 0xFFFFFFFF, state["acc"] >> 32])
        jitter = cfg["method"]["jitter"]
        out = []
        for a in dataset.annotations:
            x, y, w, h = a["bbox"]
            dx, dy, dw, dh = rng.normal(0, jitter, 4)
            out.append({"image_id": a["image_id"], "category_id": a["category_id"],
                        "bbox": [x + dx * w, y + dy * h, w * (1 + dw), h * (1 + dh)],
                        "score": float(rng.uniform(0.05, 1.0))})
        return out


if "dummy" not in METHODS:
    register_method(DummyAdapter)

def checkpointed_steps(store: Path) -> int:
    """Training progress in a store of dummy cells: the steps their checkpoints hold, summed (a kill test waits on it)."""
    total = 0
    for ckpt in store.glob("cells/*/train/checkpoint.json"):
        try:
            total += read_json(ckpt)["step"]
        except (BenchError, KeyError):
            pass
    return total


TINY = "shapes:train=16,val=8,size=64,seed=3"  # generated in the test cache in ~1 s


# ---- tests of the dummy itself ------------------------------------------------------------------------------------
def _tiny():
    from benchmark.datasets import load

    return load(TINY)


def _cfg(seed=0, steps=3):
    return {"train": {"seed": seed}, "method": {**DummyAdapter().default_config("cpu"), "steps": steps}}


def test_dummy_is_deterministic_and_seed_sensitive(tmp_path):
    d = _tiny()
    a = DummyAdapter()
    p1 = a.predict(a.train(d["train"], _cfg(0), tmp_path / "a").checkpoint, d["test"], _cfg(0))
    p2 = a.predict(a.train(d["train"], _cfg(0), tmp_path / "b").checkpoint, d["test"], _cfg(0))
    p3 = a.predict(a.train(d["train"], _cfg(1), tmp_path / "c").checkpoint, d["test"], _cfg(1))
    assert p1 == p2
    assert p1 != p3


def test_dummy_resume_equals_uninterrupted(tmp_path):
    d = _tiny()
    a = DummyAdapter()
    full = read_json(a.train(d["train"], _cfg(0, steps=4), tmp_path / "full").checkpoint)
    a.train(d["train"], _cfg(0, steps=2), tmp_path / "part")  # "interrupted" after two steps
    resumed = read_json(a.train(d["train"], _cfg(0, steps=4), tmp_path / "part").checkpoint)
    assert resumed == full
