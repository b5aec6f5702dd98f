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

Start here. The protocol (see `methods/base.py` in noisybox-bench) asks for:
- class attributes: `name` (the registry name users type), `paper`, `description`, and the two flags
  `reads_clean_boxes` (only an oracle sets it) and `refines_boxes` (set it if your model corrects its training
  boxes and exposes `refined_boxes()`);
- `default_config(profile, noise_level, dataset_kind)`: your method's own hyper-parameters (the `method`
  section of the run config), per profile (`cpu`, `paper`) and noise level;
- `profile_overrides(...)` (optional): changes to the shared `model` / `train` sections your method needs;
- `build_model(cfg, num_classes)`: a torch module with torchvision's detection interface: `forward(images,
  targets)` returns a dict of losses in training mode and `[{{"boxes", "labels", "scores"}}]` in eval mode.
  Targets carry `boxes` (xyxy, the noisy boxes), `labels`, `ann_ids`, `image_id`, `orig_size`, `flip`.
  Optional hooks: `set_epoch(epoch, num_epochs)`, `refined_boxes()`, `diagnostics()`, `set_diagnostics(d)`.
Training, checkpoints, resume, DDP, prediction and evaluation come from the suite's engine.
"""

from __future__ import annotations

from methods import MethodAdapter, Paper

from {package}.config import DEFAULTS


class {cls}(MethodAdapter):
    name = "{name}"
    paper = Paper(title="TODO: paper title", venue="TODO", year=None, url="", code="")
    description = "TODO: one line on what the method changes"
    reads_clean_boxes = False  # never True for a real method: clean boxes are the benchmark's answer key
    refines_boxes = False  # True if the model implements refined_boxes()

    def default_config(self, profile, noise_level=None, dataset_kind="coco"):
        cfg = dict(DEFAULTS["common"])
        cfg.update(DEFAULTS.get(profile, {{}}))
        return cfg

    def build_model(self, cfg, num_classes):
        # Replace with your detector. cfg["model"] is the shared core's section (backbone, anchors, sizes),
        # cfg["method"] is yours. Reusing the core keeps comparisons fair (same backbone and schedule).
        # Import torch-side code here, not at the top: `bench methods ls` imports every adapter module.
        from methods.core import build_faster_rcnn

        model = build_faster_rcnn(cfg["model"], num_classes)
        return model
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
{name} = "{package}.adapter:{cls}"

[tool.setuptools.packages.find]
include = ["{package}*"]
'''

_README = '''# {dist}

{title} for [noisybox-bench](https://github.com/). Install it next to the suite and it appears in
`bench methods ls`:

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


def scaffold(name: str, out_dir: str | Path, title: str | None = None) -> list[Path]:
    """Write the package for method `name` into `out_dir` (which must not exist or be empty)."""
    ident, package, cls = _identifiers(name)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise BenchError("already exists and is not empty; choose another --out", out)
    fields = {"name": name, "ident": ident, "package": package, "cls": cls, "title": title or name,
              "dist": f"noisybox-{ident.replace('_', '-')}"}
    files = {
        out / "pyproject.toml": _PYPROJECT,
        out / "README.md": _README,
        out / package / "__init__.py": '"""{title} adapter for noisybox-bench."""\n',
        out / package / "adapter.py": _ADAPTER,
        out / package / "config.py": _CONFIG,
        out / "tests" / f"test_{ident}.py": _TEST,
    }
    return [atomic_write_text(path, text.format(**fields)) for path, text in files.items()]
