"""Cell identity: a `CellSpec` resolved into the full config whose sha256 names the cell's directory.

The identity holds everything that changes a result: method and its resolved config, dataset name + the sha256 of
both splits' annotations, noise model / parameters / seed / rng, training seed, profile, code version. It leaves out
where the data happens to live (`locator`) and runtime knobs that do not change the experiment (device, loader
workers, logging, AMP, image caching, checkpoint frequency), so the same cell is found again on another machine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from benchmark import __version__
from benchmark.errors import BenchError
from benchmark.io import dumps_json
from benchmark.runner.devices import visible_gpus
from benchmark.runner.grid import CellSpec
from benchmark.store_layout import ID_LENGTH, NON_IDENTITY, cell_id, identity, label  # noqa: F401 -- with the store check

SCHEMA = 1
PAPER_KINDS = ("coco", "voc")  # datasets on which a GPU machine defaults to the R50-FPN `fair` recipe
EXTERNAL_PROFILE = "external"  # default profile of cells scored from external detections (benchmark.runner.external)


@dataclass
class Cell:
    """A resolved cell: its id (directory name), the content of its config.json, and the spec it came from."""

    id: str
    config: dict
    spec: CellSpec | None = None

    @property
    def method(self) -> str:
        return self.config["method"]

    def label(self) -> str:
        return label(self.config)


# ---- datasets ---------------------------------------------------------------------------------------------------
def _absolute_spec(spec: str) -> str:
    """Make path specs absolute so a worker started elsewhere finds the same files; catalog names stay as they are."""
    if spec.startswith("coco:"):
        return "coco:" + ",".join(str(Path(p).expanduser().resolve()) for p in spec[5:].split(","))
    p = Path(spec).expanduser()
    return str(p.resolve()) if p.exists() else spec


# names that say which split or part a file / folder is, not which dataset: `coco/annotations/instances_train2017
# .json` is the dataset `coco`, Roboflow's `cells/train/_annotations.coco.json` the dataset `cells`, a YOLO
# `blood/data.yaml` the dataset `blood`
_SPLIT_WORDS = {"train", "training", "trainval", "val", "valid", "validation", "test", "testing", "annotations",
                "annotation", "images", "labels", "splits"}
_FILE_WORDS = _SPLIT_WORDS | {"", "instances", "coco", "json", "detections", "gt", "data", "dataset"}


def _generic(name: str, words: set[str]) -> bool:
    parts = name.lower().replace(".", "_").replace("-", "_").split("_")
    return all(w.rstrip("0123456789") in words or w.isdigit() for w in parts)


def _named(path: Path) -> str:
    """The first name on the way up from `path` that is not a split / part name (else `path`'s own)."""
    path = path.resolve()
    own = path.stem if path.is_file() else path.name
    if not _generic(own, _FILE_WORDS if path.is_file() else _SPLIT_WORDS):
        return own
    for q in path.parents:
        if q.name and not _generic(q.name, _SPLIT_WORDS):
            return q.name
    return own


def dataset_name(spec: str) -> str:
    """Catalog name, or the dataset's own name from its train file / folder path: the first file or folder name
    that is not a generic one (`train`, `annotations`, `instances_train2017`, ...). Two different datasets that
    still end up with one name are told apart in the results table (`benchmark.results.load`).

    VOC folders take the catalog's (and leaderboard's) names: `.../VOC2007` is `voc2007` and a `VOCdevkit/` with
    2007 and 2012 is `voc0712`, so a sweep on the folder and one on the prepared catalog dataset are the same
    cells. (Before this, a `VOC2007` folder was named `VOC2007`: such cells get new ids once.)"""
    if spec.startswith("coco:"):
        return _named(Path(spec[5:].split(",")[0]).expanduser())
    p = Path(spec).expanduser()
    if p.exists():
        if p.is_dir():
            from benchmark.datasets.voc import voc_devkit_name

            devkit = voc_devkit_name(p)
            if devkit:
                return devkit
        name = _named(p)
        return name.lower() if re.fullmatch(r"VOC\d{4}", name, re.IGNORECASE) else name
    return spec


class DatasetCache:
    """Loads each dataset once per process and remembers its fingerprints. `progress`: show the loader's own bar
    (the built-in shapes dataset draws its images behind one), as `bench run --progress/--no-progress` says."""

    def __init__(self, progress: bool = True):
        self.progress = progress
        self._splits: dict[str, dict] = {}
        self._facts: dict[str, dict] = {}

    def splits(self, spec: str) -> dict:
        if spec not in self._splits:
            from benchmark.datasets import load

            splits = load(spec, progress=self.progress)
            missing = [s for s in ("train", "test") if s not in splits]
            if missing:
                raise BenchError(f"dataset has no {missing[0]!r} split (found: {', '.join(splits)})", spec)
            self._splits[spec] = splits
        return self._splits[spec]

    def facts(self, spec: str) -> dict:
        """{name, kind, train_sha256, test_sha256}: how the dataset enters a cell's identity."""
        if spec not in self._facts:
            from benchmark.config import dataset_kind

            splits = self.splits(spec)
            self._facts[spec] = {
                "name": dataset_name(spec),
                "kind": dataset_kind(splits["train"]),
                "train_sha256": splits["train"].fingerprint(),
                "test_sha256": splits["test"].fingerprint(),
            }
        return self._facts[spec]


# ---- resolution -------------------------------------------------------------------------------------------------
def default_profile(kind: str, gpu: bool | None = None) -> str:
    """`fair` (the shared R50-FPN recipe) when cells run on GPUs (default: this machine has one) for real COCO/VOC
    data, `cpu` otherwise. The authors' recipes (`paper`) are asked for by name."""
    gpu = bool(visible_gpus()) if gpu is None else gpu
    return "fair" if gpu and kind in PAPER_KINDS else "cpu"


def _cell(spec: CellSpec, facts: dict, profile: str, method_config: dict, extra: dict, locator: dict) -> Cell:
    """The config every cell shares (method, data, noise, seed, code version) plus `extra`, hashed into its id.
    The noise setting enters as `NoiseSpec.identity` gives it, with what it adds to the locator (files, defaults)."""
    noise, noise_locator = spec.noise.identity()
    config = {
        "schema": SCHEMA,
        "code_version": __version__,
        "method": spec.method,
        "method_config": method_config,
        "profile": profile,
        "dataset": dict(facts),
        "noise": noise,
        "seed": spec.seed,
        **extra,
    }
    cid = cell_id(config)
    config["cell_id"] = cid
    config["locator"] = {"dataset_spec": _absolute_spec(spec.dataset), **locator, **noise_locator}
    return Cell(cid, config, spec)


def weights_identity(path: str | Path, model_cfg: dict) -> tuple[str | None, str]:
    """(`model.weights` as the identity holds it, absolute path) of `bench run --weights PATH`: None when the file
    is torchvision's own ImageNet file for the backbone the profile loads pretrained (the same experiment as
    letting torchvision download it), else `sha256:<hex>` of the file, so the cell id follows the content, not
    the path. The path goes to the cell's locator (`locator.weights`)."""
    from benchmark.weights import file_sha256, is_torchvision_file

    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise BenchError("--weights: file not found", p)
    sha = file_sha256(p)
    if model_cfg.get("pretrained") and is_torchvision_file(sha, str(model_cfg.get("backbone"))):
        return None, str(p)
    return f"sha256:{sha}", str(p)


def resolve(spec: CellSpec, datasets: DatasetCache, gpu: bool | None = None, weights: str | Path | None = None) -> Cell:
    """The full config of one cell (method config resolved against its profile, dataset fingerprinted).
    `weights`: a local initial-weights file for the cell (`bench run --weights`, see `weights_identity`)."""
    from benchmark.config import resolve_config
    from methods import get_method

    adapter = get_method(spec.method)
    facts = datasets.facts(spec.dataset)
    profile = spec.profile or default_profile(facts["kind"], gpu)
    overrides = dict(spec.overrides)
    for key in ("train.seed", "train.data_seed"):
        if key in overrides:
            raise BenchError(f"--set {key}: the training seed comes from --seeds")
    overrides.update({"train.seed": spec.seed, "train.data_seed": spec.seed})
    method_config = resolve_config(adapter, profile, facts["kind"], spec.noise.level, overrides)
    version = getattr(adapter, "version", None)
    extra = {} if version is None else {"method_version": version}
    locator = {"overrides": dict(spec.overrides)}  # what the user changed (--set), for labels: not identity
    if weights is not None:
        model = method_config.setdefault("model", {})
        model["weights"], locator["weights"] = weights_identity(weights, model)
    return _cell(spec, facts, profile, method_config, extra, locator)


def resolve_external(spec: CellSpec, datasets: DatasetCache, detections: Path, read_options: dict) -> Cell:
    """The config of a cell scored from a detections file made elsewhere (`benchmark.runner.external`): no method
    config, profile `external` unless given, and the file's sha256 and read options under `external`."""
    from benchmark.evaluation.detections import check_read_options
    from benchmark.io import sha256_file

    path = Path(detections).expanduser().resolve()
    if not path.is_file():
        raise BenchError("--external: detections file not found", path)
    check_read_options(path, **read_options)
    facts = datasets.facts(spec.dataset)
    external = {"file": path.name, "sha256": sha256_file(path), **read_options}
    return _cell(spec, facts, spec.profile or EXTERNAL_PROFILE, {}, {"external": external},
                 {"detections": str(path)})


def resolve_all(specs: list[CellSpec], datasets: DatasetCache | None = None, gpu: bool | None = None,
                weights: str | Path | None = None) -> list[Cell]:
    """Resolve a grid; cells that resolve to the same id (e.g. a repeated level) are kept once. `gpu` says whether
    the cells will run on GPUs (for the default profile; None: whether this machine has one)."""
    datasets = datasets or DatasetCache()
    cells: dict[str, Cell] = {}
    for spec in specs:
        cell = resolve(spec, datasets, gpu, weights)
        cells.setdefault(cell.id, cell)
    _try_noise(specs, datasets)
    return list(cells.values())


def _try_noise(specs: list[CellSpec], datasets: DatasetCache) -> None:
    """Each sweep's noise (dataset, model, parameters, level) tried once on a few training images
    (`NoiseSpec.try_on`): a bad parameter value fails the command, not every cell of the sweep one by one."""
    tried = set()
    for spec in specs:
        n = spec.noise
        key = (spec.dataset, n.model, dumps_json(n.params), n.rng, n.level)
        if n.is_clean or key in tried:
            continue
        tried.add(key)
        n.try_on(datasets.splits(spec.dataset)["train"])
