"""The contract kit: one call that checks a method adapter honours the suite's protocol.

`check_adapter(MyAdapter)` trains the adapter for a few iterations on a small `shapes` set with noisy boxes and
checks that it
1. declares a name and returns a config for every profile,
2. trains and leaves a checkpoint, metrics and (if it claims to refine boxes) refined training boxes,
3. never reads the clean boxes: training with the clean boxes replaced by garbage gives bit-identical weights
   (the oracle must do the opposite: its weights must change),
4. predicts valid COCO results, and some (known image and category ids, finite boxes inside the image, scores in
   [0, 1]; at least one detection at score threshold 0),
5. resumes from a checkpoint to exactly the weights of an uninterrupted run,
6. is deterministic under a fixed seed.
Third-party adapters call it from their own tests (`bench new-method` writes one); built-ins run it in ours.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TINY_OVERRIDES = {
    "train.epochs": 2, "train.iters_per_epoch": 1, "train.batch_size": 2, "train.steps": [1], "train.warmup_iters": 1,
    "model.widths": [8, 8, 16, 16], "model.pretrained": False, "model.fpn_channels": 16, "model.representation_size": 32,
    "model.box_batch_size_per_image": 16,
    "model.box_score_thresh": 0.0,  # a detector two iterations old is unsure of everything: keep all it finds
}
CONTRACT_DATASET = "shapes:train=8,val=4,size=64,seed=11"


@dataclass
class ContractReport:
    adapter: str
    passed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        lines = [f"contract check of {self.adapter!r}: {len(self.passed)} passed, {len(self.failed)} failed"]
        lines += [f"  FAIL {name}: {why}" for name, why in self.failed]
        return "\n".join(lines)


class _Interrupt(BaseException):
    """Raised from `set_epoch` to simulate a run killed between epochs."""


def _adapter_instance(adapter: Any):
    from methods import MethodAdapter, get_method

    if isinstance(adapter, str):
        return get_method(adapter)
    if isinstance(adapter, type) and issubclass(adapter, MethodAdapter):
        return adapter()
    if isinstance(adapter, MethodAdapter):
        return adapter
    raise TypeError(f"expected a MethodAdapter subclass, instance or registered name, got {adapter!r}")


def _weights(checkpoint: Path) -> dict:
    import torch

    return torch.load(checkpoint, map_location="cpu", weights_only=False)["model"]


def _params(checkpoint: Path) -> dict:
    return {k: v for k, v in _weights(checkpoint).items() if not k.endswith("_extra_state")}


def _refined(result) -> Any:
    from benchmark.io import read_json

    return read_json(result.refined_boxes) if result.refined_boxes else None


def _same(a: Any, b: Any) -> bool:
    """Exact equality of two state dicts, including a method's extra state (e.g. its refined boxes)."""
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _garbage_clean_boxes(ds):
    """The same dataset with every clean box replaced by an unrelated box (what a leak would train on)."""
    anns = []
    for a in ds.annotations:
        a = dict(a)
        if a.get("true_bbox") is not None:
            a["true_bbox"] = [1.0, 1.0, 3.0, 3.0]
        anns.append(a)
    return ds.replace_annotations(anns)


def _interrupting(adapter, at_epoch: int):
    """A copy of `adapter` whose model raises `_Interrupt` when epoch `at_epoch` starts."""
    inner_build = adapter.build_model

    class Interrupting(type(adapter)):
        def build_model(self, cfg, num_classes):
            model = inner_build(cfg, num_classes)
            original = getattr(model, "set_epoch", None)

            def set_epoch(epoch, num_epochs):
                if epoch == at_epoch:
                    raise _Interrupt()
                if original is not None:
                    original(epoch, num_epochs)

            model.set_epoch = set_epoch
            return model

    Interrupting.__name__ = type(adapter).__name__
    clone = Interrupting.__new__(Interrupting)
    clone.__dict__.update(adapter.__dict__)
    return clone


def _check_predictions(dets: list[dict], ds) -> str | None:
    images = {im["id"]: im for im in ds.images}
    cats = {c["id"] for c in ds.categories}
    if not isinstance(dets, list):
        return f"predict returned {type(dets).__name__}, expected a list of COCO results"
    if not dets:
        return (f"predict returned no detections on {len(images)} test images at score threshold 0: a method that "
                "predicts nothing would score AP 0 without any error")
    for d in dets:
        if not {"image_id", "category_id", "bbox", "score"} <= set(d):
            return f"result lacks keys: {d}"
        if d["image_id"] not in images:
            return f"unknown image_id {d['image_id']}"
        if d["category_id"] not in cats:
            return f"unknown category_id {d['category_id']}"
        x, y, w, h = d["bbox"]
        im = images[d["image_id"]]
        if not all(math.isfinite(v) for v in (x, y, w, h)) or w < 0 or h < 0:
            return f"invalid box {d['bbox']}"
        if x < -0.5 or y < -0.5 or x + w > im["width"] + 0.5 or y + h > im["height"] + 0.5:
            return f"box {d['bbox']} outside image {im['width']}x{im['height']}"
        if not 0.0 <= d["score"] <= 1.0:
            return f"score {d['score']} outside [0, 1]"
    return None


def check_adapter(adapter: Any, workdir: str | Path | None = None, overrides: dict | None = None,
                  dataset: str = CONTRACT_DATASET, profile: str = "cpu") -> ContractReport:
    """Run every contract check on `adapter` (class, instance or registered name); never raises on a failure."""
    import torch

    from benchmark.config import PROFILES, resolve_config
    from benchmark.datasets import load
    from noise import make_noisy

    torch.set_num_threads(1)
    adapter = _adapter_instance(adapter)
    report = ContractReport(adapter.name or type(adapter).__name__)
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="noisybox-contract-")
        workdir = tmp.name
    root = Path(workdir)

    def check(name: str, fn) -> Any:
        try:
            result = fn()
        except _Interrupt:
            raise
        except Exception as exc:  # a contract failure is reported, not raised
            report.failed.append((name, f"{type(exc).__name__}: {exc}"))
            return None
        if isinstance(result, str):
            report.failed.append((name, result))
            return None
        report.passed.append(name)
        return result if result is not None else True

    try:
        def metadata():
            if not adapter.name:
                return "adapter has no `name`"
            for prof in PROFILES:
                for level in (None, 0.2, 0.4):
                    if not isinstance(adapter.default_config(prof, level, "coco"), dict):
                        return f"default_config({prof!r}, {level}) is not a dict"

        check("metadata", metadata)
        splits = load(dataset)
        noisy = make_noisy(splits["train"], "uniform", 0.3, seed=0).dataset
        test = splits["test"]
        cfg = check("config", lambda: resolve_config(adapter, profile, "shapes", 0.3, {**TINY_OVERRIDES, **(overrides or {})}))
        if cfg is None:
            return report

        def train(run: str, data=noisy, who=adapter):
            return who.train(data, cfg, root / run, resume=True, progress=False)

        first = check("trains", lambda: train("a"))
        if first is None:
            return report

        def artefacts():
            if not Path(first.checkpoint).is_file():
                return f"no checkpoint at {first.checkpoint}"
            if adapter.refines_boxes:
                if first.refined_boxes is None or not Path(first.refined_boxes).is_file():
                    return "adapter claims refines_boxes but exported no refined boxes"
                from benchmark.io import read_json

                refined = read_json(first.refined_boxes)
                ids = {a["id"] for a in noisy.annotations}
                if not refined or not {r["id"] for r in refined} <= ids:
                    return "refined boxes are empty or name unknown annotation ids"
                if not all(all(math.isfinite(v) for v in r["bbox"]) for r in refined):
                    return "refined boxes contain non-finite values"

        check("artefacts", artefacts)

        def clean_isolation():
            leaked = train("garbage_clean", _garbage_clean_boxes(noisy))
            # parameters and buffers, plus the refined boxes the method exports; a method's extra state may hold
            # diagnostics computed against the clean boxes, which are allowed to differ
            same = _same(_params(first.checkpoint), _params(leaked.checkpoint)) and \
                _same(_refined(first), _refined(leaked))
            if adapter.reads_clean_boxes and same:
                return "oracle: weights do not depend on the clean boxes it should train on"
            if not adapter.reads_clean_boxes and not same:
                return "weights changed when only the clean boxes (true_bbox) changed: the method reads them"

        check("never reads clean boxes" if not adapter.reads_clean_boxes else "oracle reads clean boxes",
              clean_isolation)
        check("predicts valid COCO results",
              lambda: _check_predictions(adapter.predict(first.checkpoint, test, cfg, progress=False), test))

        def determinism():
            again = train("b")
            if not _same(_weights(first.checkpoint), _weights(again.checkpoint)):
                return "two runs with the same seeds gave different weights"

        check("deterministic under a fixed seed", determinism)

        def resume():
            try:
                train("resumed", who=_interrupting(adapter, at_epoch=1))
                return "the interrupted run did not stop (set_epoch hook not called by training?)"
            except _Interrupt:
                pass
            resumed = train("resumed")
            if not _same(_weights(first.checkpoint), _weights(resumed.checkpoint)):
                return "a run resumed from its checkpoint differs from the uninterrupted run"

        check("resumes from a checkpoint", resume)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return report


def assert_adapter_contract(adapter: Any, **kwargs) -> ContractReport:
    """`check_adapter` for pytest: fails with the summary when any check fails."""
    report = check_adapter(adapter, **kwargs)
    if not report.ok:
        raise AssertionError(report.summary())
    return report
