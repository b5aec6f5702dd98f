"""`bench new-method NAME`: a ready-to-install package for a new method adapter.

The skeleton trains out of the box (it starts as plain Faster R-CNN on the shared core), registers itself through
the `noisybox_bench.methods` entry point, and ships a test that runs the contract kit, so a new author changes
one method at a time and always has a working, tested adapter.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from benchmark.errors import BenchError
from benchmark.io import atomic_write_text

_ADAPTER = '''"""{title}: a noisybox-bench method adapter.

Start here. Every hook of the protocol (`methods/base.py` in noisybox-bench) is below: `default_config` and
`build_model` work as they are (plain Faster R-CNN on the suite's shared core, so the adapter trains and passes its
tests at once); the optional ones are pass-throughs or comments that keep the suite's default, each saying what it
is for. Training, checkpoints, resume, DDP, prediction and evaluation come from the suite's engine.
"""

from __future__ import annotations

from methods import MethodAdapter, Paper

from {package}.config import DEFAULTS


class {cls}(MethodAdapter):
    name = "{name}"  # the registry name users type (`bench run --method {name}`)
    # shown by `bench methods ls`; e.g. Paper(title="...", venue="CVPR", year=2019, url="https://arxiv.org/abs/...",
    # code="https://github.com/...")
    paper = Paper(title="TODO: paper title")
    description = "TODO: one line on what the method changes"
    reads_clean_boxes = False  # never True for a real method: clean boxes are the benchmark's answer key
    refines_boxes = False  # True if the model corrects its training boxes and has a refined_boxes() hook (below)
    relative_cost = 1.0  # training time vs the core Faster R-CNN, e.g. 3.0: the runner starts costly cells first
    detector = "two_stage"  # the detection core: "one_stage" builds on methods.core.build_retinanet instead

    # ---- configuration ---------------------------------------------------------------------------------------
    def default_config(self, profile, noise_level=None, dataset_kind="coco"):
        """Your hyper-parameters (the `method` section of the run config), per profile (`cpu`, `paper`)."""
        cfg = dict(DEFAULTS["common"])
        cfg.update(DEFAULTS.get(profile, {{}}))
        return cfg

    def profile_overrides(self, profile, noise_level=None, dataset_kind="coco"):
        """Changes to the shared `model` / `train` sections your method needs, e.g. {{"train": {{"epochs": 14}}}}."""
        return super().profile_overrides(profile, noise_level, dataset_kind)

    # ---- model -----------------------------------------------------------------------------------------------
    def build_model(self, cfg, num_classes):
        """A module with torchvision's detection interface: `forward(images, targets)` returns a dict of losses in
        training mode and `[{{"boxes", "labels", "scores"}}]` in eval mode. Targets carry `boxes` (xyxy, the noisy
        boxes), `labels`, `ann_ids`, `image_id`, `orig_size`, `flip`."""
        # cfg["model"] is the shared core's section (backbone, anchors, sizes), cfg["method"] is yours. Reusing the
        # core keeps comparisons fair (same backbone and schedule). Import torch-side code here, not at the top:
        # `bench methods ls` imports every adapter module.
        from methods.core import build_faster_rcnn

        model = build_faster_rcnn(cfg["model"], num_classes)
        # Optional hooks: the engine calls them on the returned module when it has them; set those you need.
        # model.set_epoch = ...        # (epoch, num_epochs) at the start of every epoch (0-based): schedules
        # model.refined_boxes = ...    # () -> {{ann_id: [x1, y1, x2, y2]}}, corrected training boxes, original pixels
        # model.diagnostics = ...      # () -> {{name: float}}, extra run metrics merged into the training metrics
        # model.set_diagnostics = ...  # (d) clean boxes `d.clean_boxes`, for those metrics only, never for a loss
        # State kept outside parameters and buffers (e.g. boxes refined so far) survives resume only through the
        # module's get_extra_state / set_extra_state.
        return model

    # ---- data and lifecycle: the suite's; override train/predict only for more than one training run ----------
    # def training_view(self, train): ...  # the boxes the model sees: the suite's strips the clean ones; keep it
    # def train(self, train, cfg, workdir, *, resume=True, diagnostics=None, progress=True): ...  # -> TrainResult
    # def predict(self, checkpoint, dataset, cfg, progress=True): ...  # -> COCO results [{{image_id, bbox, ...}}]
'''

_CONFIG = '''"""Default hyper-parameters of {name}: one place, with the source of every value."""

DEFAULTS = {{
    "common": {{
        # "my_loss_weight": 1.0,  # paper §3.2, Eq. 5
    }},
    "cpu": {{}},
    "paper": {{}},
}}
'''

_TEST = '''"""The suite's contract kit: trains a few iterations, checks predictions, clean-box isolation, resume, determinism."""

from benchmark.testing import check_adapter

from {package}.adapter import {cls}


def test_{ident}_satisfies_the_adapter_contract(tmp_path):
    report = check_adapter({cls}, workdir=tmp_path)
    assert report.ok, report.summary()
'''

_PYPROJECT = '''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "{title} adapter for noisybox-bench"
requires-python = ">=3.10"
dependencies = ["noisybox-bench"]

[project.optional-dependencies]
test = ["pytest"]

[project.entry-points."noisybox_bench.methods"]
"{name}" = "{package}.adapter:{cls}"

[tool.setuptools.packages.find]
include = ["{package}*"]
'''

_README = '''# {dist}

{title} for noisybox-bench. Install it next to the suite and it appears in `bench methods ls`:

    pip install -e .
    bench methods ls
    pytest                       # the contract kit
    bench run --method {name} --noise 0.2,0.4 --seeds 3
    bench leaderboard add results/   # reproduced rows for the leaderboard

Edit `{package}/adapter.py` (the model) and `{package}/config.py` (hyper-parameters with their sources).
'''


def _identifiers(name: str) -> tuple[str, str, str]:
    if not re.fullmatch(r"[a-z][a-z0-9_+\-]*", name):
        raise BenchError(f"method name {name!r} must start with a lower-case letter and use a-z, 0-9, _, + or -")
    ident = re.sub(r"[^a-z0-9_]", "_", name)
    if keyword.iskeyword(ident):
        ident += "_"
    cls = "".join(p.capitalize() for p in ident.split("_") if p) or "Method"
    return ident, f"noisybox_{ident}", cls


def _check_name_is_free(name: str, package: str, dist: str) -> None:
    """A taken name would install a plug-in the registry ignores, so results would silently come from the owner;
    a taken package or distribution name (`my-method` after `my_method`: both are `noisybox_my_method`) would
    make pip uninstall the other method's package to install this one."""
    import importlib.util
    from importlib import metadata

    from methods import METHODS

    if name in METHODS:
        raise BenchError(f"method name {name!r} is already registered by {METHODS.owner(name)}; choose another name")
    try:
        metadata.distribution(dist)
        taken = f"distribution {dist}"
    except metadata.PackageNotFoundError:
        taken = f"module {package}" if importlib.util.find_spec(package) is not None else None
    if taken:
        raise BenchError(f"method name {name!r} would be packaged as {dist} ({package}), but {taken} is already "
                         "installed (another method's scaffold?); installing this one would replace it: choose "
                         "another name")


def scaffold(name: str, out_dir: str | Path, title: str | None = None) -> list[Path]:
    """Write the package for method `name` into `out_dir` (which must not exist or be empty)."""
    ident, package, cls = _identifiers(name)
    dist = f"noisybox-{ident.replace('_', '-')}"
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise BenchError("already exists and is not empty; choose another --out", out)
    _check_name_is_free(name, package, dist)
    fields = {"name": name, "ident": ident, "package": package, "cls": cls, "title": title or name, "dist": dist}
    files = {
        out / "pyproject.toml": _PYPROJECT,
        out / "README.md": _README,
        out / package / "__init__.py": '"""{title} adapter for noisybox-bench."""\n',
        out / package / "adapter.py": _ADAPTER,
        out / package / "config.py": _CONFIG,
        out / "tests" / f"test_{ident}.py": _TEST,
    }
    return [atomic_write_text(path, text.format(**fields)) for path, text in files.items()]
