"""Make noisy training sets: `make_noisy`, `make_noisy_levels`, `compose`, `model_from_spec`, `calibrate`,
`write_noisy`, `write_levels`, `recover_clean`.

The noisy dataset has the noisy box in `bbox`, the clean box in `true_bbox` (None for added bogus boxes, the field
SSD-Det's loader reads), `area` recomputed for changed boxes, ids and order preserved (added boxes appended with new
ids). `segmentation` is dropped from every annotation: a polygon would hand a method the clean box back. The
manifest records everything needed to rebuild the clean set: removed annotations with their index, original classes
of relabelled boxes, ids of added boxes and original areas where they were not w x h.

Same inputs give byte-identical files on any machine: annotations keep the source's key order (`true_bbox`
added last; the manifest's keys are sorted), noisy boxes of the default `numpy` mode are
rounded to 0.01 px (the legacy mode writes OA-MIL's float32 values losslessly), manifest statistics to 4 decimals,
and nothing machine-specific (paths, times) is written.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from itertools import repeat
from operator import contains, itemgetter, setitem
from pathlib import Path
from typing import Any

import numpy as np

from benchmark import __version__
from benchmark.boxes import area, paired_iou, size_groups, xyxy_to_xywh
from benchmark.datasets.core import DetectionDataset
from benchmark.errors import BenchError
from benchmark.io import atomic_write_bytes, dumps_json, gc_paused, parse_json, sha256_bytes, sha256_file, write_json
from noise.boxset import DECIMALS, BoxSet, detect_layout, extract
from noise.legacy import LEGACY_SEED
from noise.registry import KINDS, NoiseModel, get_model

RNG_MODES = ("numpy", "oamil-legacy")
MANIFEST_FORMAT = 1
STAT_DECIMALS = 4
DROPPED_FIELDS = ("segmentation",)
DEFAULT_SEED = 0


@dataclass
class NoisyResult:
    """One noisy training set. `payload` is the COCO json exactly as `write_noisy` writes it; `dataset` is that
    file read back, parsed on first use: writing levels never builds a second copy of every annotation, and the
    in-memory dataset is by construction the file's content."""

    manifest: dict
    payload: bytes
    image_root: Path | None = None  # of the source dataset, for `dataset`
    name: str = ""
    source: str = ""
    kind: str | None = None  # the source dataset's recipe kind (declared by the format that read it)

    @property
    def sha256(self) -> str:
        return self.manifest["output"]["sha256"]

    @cached_property
    def dataset(self) -> DetectionDataset:
        coco = parse_json(self.payload, f"noisy payload of {self.name or 'a dataset'}")
        return DetectionDataset(coco["images"], coco["annotations"], coco["categories"], self.image_root, self.name,
                                self.source, coco["info"], kind=self.kind)


# ---- entry points ---------------------------------------------------------------------------------------------
def make_noisy(ds: DetectionDataset, model: str | NoiseModel, level: float, seed: int | None = None,
               rng: str = "numpy", layout: str = "auto", source_sha256: str | None = None, **params) -> NoisyResult:
    """Perturb `ds` (a training split) with noise model `model` at strength `level`.

    `rng="numpy"` (default, what leaderboard rows use unless stated) draws from `numpy.random.default_rng(seed)`
    (seed default 0); `rng="oamil-legacy"` (model `uniform` only) regenerates OA-MIL's published files: legacy
    `RandomState(seed)` (default 45), their draw order, box filtering and VOC offsets (see `noise.legacy`).
    `layout` ("auto" | "coco" | "voc") says which legacy parser to mimic; auto: VOC when the dataset was loaded
    from VOC XML (`info["format"] == "voc"`). `params` go to the model (see `bench noise ls`).
    The manifest's `source.sha256` is the sha256 of the source file as read (`sha256_of: "file"`) when `ds` came
    straight from a COCO json, else the annotation-content fingerprint (`sha256_of: "annotations"`,
    `ds.fingerprint()`, ~2 s on COCO train). `source_sha256`: that fingerprint, if the caller already has it (the
    runner does)."""
    return make_noisy_levels(ds, model, [level], seed=seed, rng=rng, layout=layout, source_sha256=source_sha256,
                             **params)[0]


def make_noisy_levels(ds: DetectionDataset, model: str | NoiseModel, levels: Iterable[float],
                      seed: int | None = None, rng: str = "numpy", layout: str = "auto",
                      source_sha256: str | None = None, **params) -> list[NoisyResult]:
    """`make_noisy` for several levels from one extraction and one fingerprint (each level restarts the seed)."""
    return list(iter_noisy(ds, model, levels, seed=seed, rng=rng, layout=layout, source_sha256=source_sha256,
                           **params))


def iter_noisy(ds: DetectionDataset, model: str | NoiseModel, levels: Iterable[float], seed: int | None = None,
               rng: str = "numpy", layout: str = "auto", source_sha256: str | None = None,
               **params) -> Iterator[NoisyResult]:
    """`make_noisy_levels` one level at a time, so a caller can write and drop each result (memory stays flat).
    Dataset, model name, parameter names, levels and seed are checked before anything is made."""
    nm, mode, seed, layout = _check(ds, model, seed, rng, layout, params)
    levels = [nm.check_level(lv) for lv in levels]
    with gc_paused():  # bulk work on ~1M small objects: the cyclic collector would triple its cost
        base = extract(ds, mode, layout)
        source = _source(ds, source_sha256)

    recorded = params_record(nm, params)

    def results() -> Iterator[NoisyResult]:
        template = None
        for level in levels:
            bs = nm.fn(base, level, new_rng(mode, seed), **params)
            with gc_paused():
                if template is None:
                    template = OutputTemplate(ds.annotations)
                made = _finish(ds, bs, nm, level, seed, mode, layout, recorded, source, template)
            del bs
            yield made
            del made  # the caller has written it: do not hold two levels in memory at once

    return results()


def new_rng(mode: str, seed: int):
    return np.random.RandomState(seed) if mode == "oamil-legacy" else np.random.default_rng(seed)


def compose(steps: Sequence[Any], name: str | None = None) -> NoiseModel:
    """One model applying several in order, e.g. `compose([("uniform", None), ("missing", 0.1)])`.

    A step is a name, or (name, level) or (name, level, params); level None follows the level given to
    `make_noisy`, a number fixes it. All steps share one random stream, in step order."""
    parsed = []
    for step in steps:
        step = (step,) if isinstance(step, (str, NoiseModel)) else tuple(step)
        if not 1 <= len(step) <= 3:
            raise BenchError(f"compose: a step is a name, (name, level) or (name, level, params), got {step!r}")
        nm = get_model(step[0])
        level = step[1] if len(step) > 1 else None
        params = dict(step[2]) if len(step) > 2 and step[2] else {}
        nm.check_params(params)
        if level is not None:
            level = nm.check_level(level)
        parsed.append((nm, level, params))
    if not parsed:
        raise BenchError("compose: give at least one step")
    free = [nm for nm, lv, _ in parsed if lv is None]
    if not free:  # the level given to make_noisy would change nothing, yet be recorded as the file's level
        raise BenchError("compose: every step fixes its level, so the level of make_noisy / --level would be "
                         "ignored; leave one step without '@level' to follow it (e.g. uniform+missing@0.1)")
    max_level = min((nm.max_level for nm in free), default=1.0)
    inclusive = all(nm.max_inclusive for nm in free if nm.max_level == max_level) if free else True
    kinds = {nm.kind for nm, _, _ in parsed}
    kind = kinds.pop() if len(kinds) == 1 else "mixed"

    def composed(bs: BoxSet, level, rng):
        for nm, lv, params in parsed:
            bs = nm.fn(bs, level if lv is None else lv, rng, **params)
        return bs

    label = name or "+".join(nm.name if lv is None else f"{nm.name}@{lv:g}" for nm, lv, _ in parsed)
    steps_meta = tuple({"model": nm.name, "level": lv, "params": params} for nm, lv, params in parsed)
    files = tuple(dict.fromkeys(f"{nm.name}.{key}" for nm, _, _ in parsed for key in nm.file_params))
    return NoiseModel(label, composed, kind if kind in KINDS else "mixed", max_level, inclusive, False,
                      "composition: " + ", ".join(str(s["model"]) for s in steps_meta), steps_meta, files)


def try_levels(ds: DetectionDataset, model: str | NoiseModel, levels: Iterable[float], seed: int | None = None,
               rng: str = "numpy", layout: str = "auto", images: int = 3, **params) -> None:
    """Run `model` at every level on a few annotated images of `ds` (the first ones, plus one holding each class),
    discarding the result: parameter values that fail only at some level or against the data (`bias
    direction=sideways`, `per_class` strength x level >= 1, a confusion matrix naming an unknown class) fail here,
    before a sweep writes or trains anything."""
    keep: set = set()
    classes: set = set()
    every_class = len(ds.categories)
    for a in ds.annotations:
        if len(keep) < images or a.get("category_id") not in classes:
            keep.add(a.get("image_id"))
            classes.add(a.get("category_id"))
        elif len(classes) >= every_class:
            break  # COCO train: a few thousand annotations, not 860 k
    sample = DetectionDataset([im for im in ds.images if im.get("id") in keep],
                              [a for a in ds.annotations if a.get("image_id") in keep], ds.categories,
                              ds.image_root, ds.name, ds.source, ds.info)
    if not sample.images:  # no annotation at all: the whole set, so the error says that, not "no images"
        sample = ds
    for level in levels:
        if level:
            make_noisy(sample, model, level, seed=seed, rng=rng, layout=layout, source_sha256="sample", **params)


def model_from_spec(spec: str, params: dict | None = None) -> tuple[str | NoiseModel, dict]:
    """(model, params) for `make_noisy` from a model spec as the CLIs take it: `uniform`, or a composition
    `uniform+missing@0.1` (a step with @level keeps that level; the others follow the level given), with
    parameters `{key: value}` (one model) or `{"step.key": value}` (a composition)."""
    steps = [s.strip() for s in spec.split("+")]
    if not all(steps):
        raise BenchError(f"noise model {spec!r}: empty step in the composition")
    by_step: dict[str, dict] = {}
    for key, value in (params or {}).items():
        step, dot, name = str(key).rpartition(".")
        by_step.setdefault(step if dot else "", {})[name] = value
    if len(steps) == 1 and "@" not in steps[0]:
        extra = [k for k in by_step if k not in ("", steps[0])]
        if extra:
            raise BenchError(f"noise parameter: {extra[0]!r} is not a step of noise model {spec!r}")
        return steps[0], {**by_step.get("", {}), **by_step.get(steps[0], {})}
    if "" in by_step:
        raise BenchError(f"noise parameters of the composition {spec!r}: prefix each parameter with its step, e.g. "
                         "missing.key=v")
    names, out = [], []
    for s in steps:
        name, at, lv = s.partition("@")
        level = None
        if at:
            try:
                level = float(lv)
            except ValueError:
                raise BenchError(f"noise model {spec!r}: {lv!r} is not a level") from None
        names.append(name)
        out.append((name, level, by_step.get(name, {})))
    unknown = [k for k in by_step if k not in names]
    if unknown:
        raise BenchError(f"noise parameter: {unknown[0]!r} is not a step of noise model {spec!r}")
    return compose(out, name=spec), {}


CALIBRATION_SCAN = 8  # levels tried before bisecting: IoU need not fall all the way (see `calibrate`)


def calibrate(ds: DetectionDataset, model: str | NoiseModel, target_mean_iou: float, seed: int | None = None,
              tol: float = 1e-3, layout: str = "auto", **params) -> float:
    """The smallest level at which `model` gives realised mean IoU `target_mean_iou` on `ds` (with this seed).

    Realised IoU is over the boxes that keep a clean counterpart. It need not fall monotonically: where boxes
    shrink until they collapse, the keep-clean rule turns it back up (`bias direction=shrink`, wide `gaussian`), so
    a scan of `CALIBRATION_SCAN` levels finds the first interval the target falls in and bisection narrows it. The
    answer is rounded to 4 decimals."""
    nm, mode, seed, layout = _check(ds, model, seed, "numpy", layout, params)
    if nm.kind == "label":
        raise BenchError(f"noise model {nm.name!r} does not move boxes: its IoU is 1 at every level")
    try:
        target = float(target_mean_iou)
    except (TypeError, ValueError):
        raise BenchError(f"target mean IoU {target_mean_iou!r} is not a number") from None
    if not 0 < target < 1:
        raise BenchError(f"target mean IoU must be in (0, 1), got {target_mean_iou!r}")
    base = extract(ds, mode, layout)

    def iou_at(level: float) -> float:
        mean = _realised(nm.fn(base, level, new_rng(mode, seed), **params))["all"]["mean"]
        return 1.0 if mean is None else mean

    top = nm.max_level if nm.max_inclusive else nm.max_level * (1 - 1e-6)
    lo, at_lo, tried = 0.0, 1.0, []  # level 0 moves no box
    for k in range(1, CALIBRATION_SCAN + 1):
        hi = nm.max_level * k / CALIBRATION_SCAN if k < CALIBRATION_SCAN else top
        at_hi = iou_at(hi)
        tried.append((at_hi, hi))
        if at_hi <= target:
            break
        lo, at_lo = hi, at_hi
    else:
        lowest, where = min(tried)
        raise BenchError(f"model {nm.name!r} reaches mean IoU {lowest:.3f} at best (level {where:.4g}, of "
                         f"{CALIBRATION_SCAN} levels up to {top:.4g}) on this dataset; {target} is out of reach")
    if abs(at_hi - target) <= tol / 4:
        return round(hi, 4)
    for _ in range(60):  # at_lo = iou_at(lo) > target >= iou_at(hi) = at_hi throughout
        mid = (lo + hi) / 2
        value = iou_at(mid)
        if abs(value - target) <= tol / 4:
            return round(mid, 4)
        lo, hi, at_lo, at_hi = (mid, hi, value, at_hi) if value > target else (lo, mid, at_lo, value)
        if hi - lo < 1e-6:
            break
    if min(at_lo - target, target - at_hi) > tol:  # IoU steps over the target: no level gives it
        raise BenchError(f"model {nm.name!r}: realised mean IoU jumps from {at_lo:.4f} to {at_hi:.4f} at level "
                         f"{hi:.4g} on this dataset, so {target} is out of reach (e.g. boxes touching the image "
                         f"border are clipped to W-1 x H-1 at any level above 0)")
    return round(hi if target - at_hi <= at_lo - target else lo, 4)


def write_noisy(result: NoisyResult, out_dir: str | Path, stem: str = "train") -> dict[str, Path]:
    """Write `<out_dir>/<stem>.json` (the noisy COCO file) and `<out_dir>/manifest.json`, atomically."""
    out_dir = Path(out_dir)
    data = atomic_write_bytes(out_dir / f"{stem}.json", result.payload)
    manifest = write_json(out_dir / "manifest.json", result.manifest, indent=True)
    return {"annotations": data, "manifest": manifest}


def write_levels(results: Iterable[NoisyResult], folder: Callable[[NoisyResult], Path], stem: str = "train"
                 ) -> Iterator[tuple[NoisyResult, dict[str, Path]]]:
    """`write_noisy` for each result of a sweep (e.g. `iter_noisy`), into `folder(result)`, in order. Each level
    is written (json, manifest, fsync) in a background thread while the next one is made, which hides the write:
    ~0.6 s per COCO-train level. Yields (result, paths) once that level's files are on disk; at most two levels
    are held at once."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="noise-write") as pool:
        pending = None
        for result in results:
            job = (result, pool.submit(write_noisy, result, folder(result), stem))
            if pending is not None:
                yield pending[0], pending[1].result()
            pending = job
            del result, job
        if pending is not None:
            yield pending[0], pending[1].result()


def recover_clean(noisy: DetectionDataset, manifest: dict) -> DetectionDataset:
    """The clean dataset back from a noisy one and its manifest (the source minus dropped fields such as
    `segmentation`): clean boxes, areas and classes restored, added boxes dropped, removed ones put back in place."""
    added = set(manifest.get("added_ids", []))
    classes = {c["id"]: c["category_id"] for c in manifest.get("class_changes", [])}
    ca = manifest.get("clean_area") or {}
    areas = dict(zip(ca.get("ids", []), ca.get("areas", [])))
    anns = []
    for a in noisy.annotations:
        if a["id"] in added:
            continue
        a = dict(a)
        clean = a.pop("true_bbox", a["bbox"])
        if clean is None:
            raise BenchError(f"annotation {a['id']} has no clean box but is not listed as added in the manifest")
        if a["bbox"] != clean:
            a["bbox"] = clean
            a["area"] = areas.get(a["id"], float(clean[2]) * float(clean[3]))
        if a["id"] in classes:
            a["category_id"] = classes[a["id"]]
        anns.append(a)
    for r in sorted(manifest.get("removed", []), key=lambda r: r["index"]):
        anns.insert(r["index"], dict(r["annotation"]))
    info = {k: v for k, v in noisy.info.items() if k != "noisybox"}
    return DetectionDataset(noisy.images, anns, noisy.categories, noisy.image_root, noisy.name, noisy.source, info,
                            kind=noisy.kind)


# ---- internals ------------------------------------------------------------------------------------------------
def check_model(model: str | NoiseModel, params: dict, rng: str = "numpy") -> NoiseModel:
    """The noise model, checked with its parameters and rng mode (what `make_noisy` checks before any work; the
    runner calls it when it expands a sweep)."""
    nm = get_model(model)
    nm.check_params(params)
    if rng not in RNG_MODES:
        raise BenchError(f"unknown rng mode {rng!r} (known: {', '.join(RNG_MODES)})")
    if rng == "oamil-legacy" and not nm.legacy:
        raise BenchError(f"rng 'oamil-legacy' reproduces OA-MIL's generator and applies to model 'uniform' only, "
                         f"not {nm.name!r}")
    return nm


def check_levels(model: str | NoiseModel, params: dict, rng: str, levels: Iterable[float]) -> NoiseModel:
    """`check_model` plus every level of a sweep: what needs no data, checked before any is loaded (`bench noise
    make`) or any cell starts (`bench run`)."""
    nm = check_model(model, params, rng)
    for lv in levels:
        nm.check_level(lv)
    return nm


def _check(ds, model, seed, rng, layout, params):
    nm = check_model(model, params, rng)
    if seed is None:
        seed = LEGACY_SEED if rng == "oamil-legacy" else DEFAULT_SEED
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2 ** 32:
        raise BenchError(f"noise seed must be an integer in [0, 2**32), got {seed!r}")
    if not isinstance(ds, DetectionDataset):
        raise BenchError(f"expected a DetectionDataset, got {type(ds).__name__}")
    where = ds.source or ds.name or None
    if not ds.images:
        raise BenchError("dataset has no images: nothing to perturb", where)
    if not ds.annotations:
        raise BenchError("dataset has no annotations: nothing to perturb", where)
    _refuse_noisy(ds, where)
    if layout == "auto":
        layout = detect_layout(ds)
    if layout not in ("coco", "voc"):
        raise BenchError(f"layout must be 'auto', 'coco' or 'voc', got {layout!r}")
    return nm, rng, int(seed), layout


def _refuse_noisy(ds: DetectionDataset, where) -> None:
    """A noisy file perturbed again would write its noisy boxes as `true_bbox`: the clean boxes, which the oracle
    trains on and `recover_clean` gives back, would be lost without a word."""
    made = ds.info.get("noisybox") if isinstance(ds.info, dict) else None
    if made or any(map(contains, ds.annotations, repeat("true_bbox"))):
        what = (f"made by noise model {made.get('model')!r} at level {made.get('level')}"
                if isinstance(made, dict) else "its annotations carry `true_bbox`")
        raise BenchError(f"this dataset is already noisy ({what}): perturb the clean source instead, or compose "
                         "models in one run (e.g. -m uniform+missing@0.1)", where)


def _source(ds: DetectionDataset, fingerprint: str | None) -> dict:
    if fingerprint is None and ds.file_sha256:
        sha, of = ds.file_sha256, "file"
    else:
        sha, of = fingerprint or ds.fingerprint(), "annotations"
    return {"name": ds.name, "sha256": sha, "sha256_of": of, "images": len(ds.images),
            "annotations": len(ds.annotations)}


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), STAT_DECIMALS)


def _realised(bs: BoxSet) -> dict:
    """Mean IoU(noisy, clean) over boxes with a clean counterpart, overall and by COCO size of the clean box."""
    rows = bs.active_index()
    c = bs.rows(bs.clean, rows)
    iou = paired_iou(bs.rows(bs.boxes, rows), c)
    return {k: {"n": int(m.sum()), "mean": _r(iou[m].mean()) if m.any() else None}
            for k, m in size_groups(area(c)).items()}


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _xywh(xyxy: np.ndarray, decimals: int | None) -> tuple[np.ndarray, np.ndarray]:
    out = xyxy_to_xywh(xyxy)
    area = out[:, 2] * out[:, 3]
    if decimals is not None:
        out = np.round(out, decimals) + 0.0
        area = np.round(out[:, 2] * out[:, 3], 2 * decimals) + 0.0
    return out, area


class OutputTemplate:
    """Every annotation as a noisy file writes it: copies with the clean box as `true_bbox`, without
    `DROPPED_FIELDS`, built once per source and shared by all levels of a sweep. `apply` sets one level's noisy boxes,
    areas and classes; a row an earlier level changed and this one does not gets its clean values back first, so
    each level serialises exactly its own changes, and rows every level moves (nearly all, on COCO) are written once
    per level instead of set and reset. The source annotations are never touched.

    Built with one loop that touches each dict once: separate C-level passes (copy, set, pop) are slower here, as
    each pass walks all 860 k dicts of COCO train through the cache again."""

    def __init__(self, anns: list[dict]):
        self.anns = anns
        dicts: list[dict] = []
        append = dicts.append
        for a in anns:
            b = a.copy()
            b["true_bbox"] = a["bbox"]
            for key in DROPPED_FIELDS:
                if key in b:
                    del b[key]
            append(b)
        self.dicts = dicts
        self.noisy_box = np.zeros(len(anns), bool)  # rows holding a level's box and area
        self.noisy_class = np.zeros(len(anns), bool)  # rows holding a level's class

    def apply(self, box_rows: np.ndarray, xywh: list, area: list, class_rows: np.ndarray, classes: list) -> None:
        """Rows `box_rows` get boxes `xywh` and areas `area`, rows `class_rows` get `classes`; every other row
        holds its clean values afterwards."""
        box_mask, class_mask = _mask(box_rows, len(self.dicts)), _mask(class_rows, len(self.dicts))
        self._restore_boxes(np.flatnonzero(self.noisy_box & ~box_mask))
        self._restore_classes(np.flatnonzero(self.noisy_class & ~class_mask))
        moved = self._rows(self.dicts, box_rows)
        _set_each(moved, "bbox", xywh)
        _set_each(moved, "area", area)
        _set_each(self._rows(self.dicts, class_rows), "category_id", classes)
        self.noisy_box, self.noisy_class = box_mask, class_mask

    @cached_property
    def ids(self) -> np.ndarray | None:
        """Every annotation's id as int64 (None where ids are not all integers): one pass, reused by each level."""
        try:
            return np.fromiter(map(itemgetter("id"), self.anns), np.int64, len(self.anns))
        except (TypeError, ValueError, OverflowError):
            return None

    def _rows(self, items: list, rows: np.ndarray) -> list:
        return items if rows.size == len(items) else list(map(items.__getitem__, rows.tolist()))

    def _restore_boxes(self, rows: np.ndarray) -> None:
        if not rows.size:
            return
        dicts, sources = self._rows(self.dicts, rows), self._rows(self.anns, rows)
        _set_each(dicts, "bbox", map(itemgetter("bbox"), sources))
        if all(map(contains, sources, repeat("area"))):  # loaded datasets always have it
            _set_each(dicts, "area", map(itemgetter("area"), sources))
            return
        for t, a in zip(dicts, sources):
            if "area" in a:
                t["area"] = a["area"]
            else:
                del t["area"]

    def _restore_classes(self, rows: np.ndarray) -> None:
        if rows.size:
            sources = self._rows(self.anns, rows)
            _set_each(self._rows(self.dicts, rows), "category_id", map(itemgetter("category_id"), sources))


def _mask(rows: np.ndarray, n: int) -> np.ndarray:
    m = np.zeros(n, bool)
    m[rows] = True
    return m


def _set_each(dicts: Iterable[dict], key: str, values: Iterable) -> None:
    """`d[key] = v` for each pair, at C speed (a Python loop over 860 k dicts costs ~0.4 s per field)."""
    deque(map(setitem, dicts, repeat(key), values), maxlen=0)


def params_record(nm: NoiseModel, params: dict) -> dict:
    """The manifest's `params` (defaults filled in; a composition's steps) and `param_files`. A file a parameter
    names (`imported` file=, a `class_flip` matrix file) is recorded by its name and sha256, not its path: the
    manifest stays the same on any machine, and the hash says which content was used."""
    if not nm.steps:
        recorded, files = _files_by_name(nm, {**nm.defaults(), **params})
        return {"params": recorded, "param_files": files}
    steps, files = [], {}
    for step in nm.steps:
        recorded, found = _files_by_name(get_model(step["model"]), dict(step["params"]))
        steps.append({**step, "params": recorded})
        files.update({f"{step['model']}.{key}": value for key, value in found.items()})
    return {"params": {"steps": steps}, "param_files": files}


def _files_by_name(nm: NoiseModel, params: dict) -> tuple[dict, dict]:
    files = {}
    for key in nm.file_params:
        value = params.get(key)
        if isinstance(value, (str, Path)) and str(value) and Path(value).is_file():
            files[key] = {"name": Path(value).name, "sha256": sha256_file(value)}
            params[key] = Path(value).name
    return params, files


def _finish(ds, bs: BoxSet, nm: NoiseModel, level, seed, mode, layout, recorded: dict, source,
            template: OutputTemplate) -> NoisyResult:
    """One level's file and manifest: its noisy boxes, areas and classes set on `template` (`OutputTemplate` of
    `ds.annotations`, shared by the levels of a sweep) and serialised. `recorded`: `params_record(nm, params)`."""
    decimals = DECIMALS if mode == "numpy" else None
    anns = ds.annotations
    changed = bs.active & (bs.boxes != bs.clean).any(axis=1)
    relabelled = ~bs.removed & (bs.category != bs.clean_category)
    kept = np.flatnonzero(~bs.removed)
    # 1. the noisy values onto the template (removed rows are never changed: `active` excludes them)
    rows = np.flatnonzero(changed)
    xywh, area = _xywh(bs.boxes if rows.size == len(anns) else bs.boxes[rows], decimals)
    relabel_rows = np.flatnonzero(relabelled)
    new_cats = bs.category[relabel_rows].tolist()
    template.apply(rows, xywh.tolist(), area.tolist(), relabel_rows, new_cats)
    dicts = template.dicts
    out = dicts if kept.size == len(anns) else list(map(dicts.__getitem__, kept.tolist()))
    class_changes = [{"id": anns[r]["id"], "category_id": anns[r]["category_id"], "to": cat}
                     for r, cat in zip(relabel_rows.tolist(), new_cats)]
    # 2. what recover_clean needs beyond the file: removed annotations, original areas that were not w x h
    removed = [{"index": r, "annotation": {k: v for k, v in anns[r].items() if k not in DROPPED_FIELDS}}
               for r in np.flatnonzero(bs.removed).tolist()]
    src = bs.source_xywh[rows]  # the same float products recover_clean's w * h makes
    odd = rows[bs.source_area[rows] != src[:, 2] * src[:, 3]]
    clean_area = {"ids": _ids(template, odd), "areas": bs.source_area[odd].tolist()}
    if len(bs.added_boxes) and out is dicts:
        out = list(dicts)  # the template itself never holds added boxes
    added_ids = _append_added(out, ds, bs, decimals)
    info = dict(ds.info)
    info["noisybox"] = {"model": nm.name, "level": level, "seed": seed, "rng": mode, "suite_version": __version__}
    coco = {"info": info, "images": ds.images, "annotations": out, "categories": ds.categories}
    payload = dumps_json(coco, sort_keys=False)  # the source's key order: 40 % faster than sorting
    active = bs.active
    counts = {
        "boxes": len(anns),
        "perturbed": int(changed.sum()),
        "clipped": int((bs.clipped & changed).sum()),
        "kept_clean_degenerate": int((bs.collapsed & active & ~changed).sum()),
        "untouched_ignored": int(bs.ignored.sum()),
        "untouched_filtered": int((~bs.ignored & ~bs.eligible).sum()),
        "removed": len(removed),
        "added": len(added_ids),
        "class_changed": len(class_changes),
    }
    manifest = {
        "format": MANIFEST_FORMAT,
        "suite_version": __version__,
        "model": nm.name,
        "kind": nm.kind,
        "params": _jsonable(recorded["params"]),
        "param_files": recorded["param_files"],
        "level": level,
        "seed": seed,
        "rng": mode,
        "layout": layout if mode == "oamil-legacy" else None,
        "source": source,
        "output": {"sha256": sha256_bytes(payload), "annotations": len(out), "decimals": decimals,
                   "dropped_fields": list(DROPPED_FIELDS)},
        "counts": counts,
        "realised_iou": _realised(bs),
        "notes": _jsonable(bs.notes),
        "removed": removed,
        "class_changes": class_changes,
        "added_ids": added_ids,
        "clean_area": clean_area,
    }
    return NoisyResult(manifest, payload, ds.image_root, ds.name, ds.source, ds.kind)


def _ids(template: OutputTemplate, rows: np.ndarray) -> list:
    """Annotation ids of `rows` (through the template's id array: COCO-sized lists are long)."""
    if rows.size == 0:
        return []
    ids = template.ids
    return ids[rows].tolist() if ids is not None else [template.anns[r]["id"] for r in rows.tolist()]


def _append_added(out: list, ds, bs: BoxSet, decimals) -> list:
    if not len(bs.added_boxes):
        return []
    ids = [a["id"] for a in ds.annotations]
    if not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in ids):
        raise BenchError("annotation ids must be integers to add boxes with new ids", ds.source or None)
    start = max(ids, default=0) + 1
    xywh, area = _xywh(bs.added_boxes, decimals)
    new_ids = list(range(start, start + len(xywh)))
    for aid, img, cat, box, ar in zip(new_ids, bs.added_image.tolist(), bs.added_category.tolist(), xywh.tolist(),
                                      area.tolist()):
        out.append({"id": aid, "image_id": bs.image_ids[img], "category_id": cat, "bbox": box, "area": ar,
                    "iscrowd": 0, "ignore": 0, "true_bbox": None})
    return new_ids

