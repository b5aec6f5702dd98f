"""External detections as cells: `bench run --external DETS --method NAME --noise L --seeds S --dataset D`.

A detector trained elsewhere (mmdet, detectron2, ultralytics ...) on the suite's noisy training split is scored on
the clean test split and stored as an ordinary cell of the results store (config, noise/ manifest, predictions,
metrics, DONE), so `bench report` and `bench leaderboard add` compare it with the suite's own runs. Nothing is
trained. The cell's noise/ folder holds the noisy file that run should have trained on (`bench noise make` with the
same model, level and seed writes the same bytes), so the pairing can be checked.

The files fill the cells of the (level x seed) grid in order, levels first: `--noise 0.2,0.4 --seeds 2` takes four
files for (0.2, seed 0), (0.2, seed 1), (0.4, seed 0), (0.4, seed 1). A cell is identified by name, dataset, noise
and seed, not by the file: adding a corrected file for the same run replaces the old result (the cell is redone).
"""

from __future__ import annotations

import sys
from pathlib import Path

from benchmark.errors import BenchError
from benchmark.io import read_json
from benchmark.runner import store as st
from benchmark.runner.cells import DatasetCache, resolve_external
from benchmark.runner.grid import expand_grid, parse_levels, parse_methods, parse_seeds
from benchmark.runner.sweep import Planned, action_for


def plan_external(files: list[str], methods, noise, seeds, datasets: list[str], store: st.Store, *,
                  noise_model: str = "uniform", noise_params: dict | None = None, noise_seed=None,
                  noise_rng: str = "numpy", profile: str | None = None, read_options: dict | None = None,
                  overwrite: str = "missing", cache: DatasetCache | None = None) -> list[Planned]:
    """One planned cell per detections file (see module docstring); a done cell whose file or read options
    changed is planned for `redo`."""
    from methods import METHODS

    names = parse_methods(methods) if isinstance(methods, str) else list(methods)
    if len(names) != 1:
        raise BenchError(f"--external: name the external run with exactly one --method, got {', '.join(names)}")
    name = names[0]
    if name in METHODS:
        raise BenchError(f"--external: {name!r} is a registered method, whose cells the suite trains itself; "
                         f"give the external run its own name (e.g. mmdet_{name})")
    if not name.replace("_", "").replace("-", "").replace(".", "").replace("+", "").isalnum():
        raise BenchError(f"--external: method name {name!r} must be letters, digits and _ - . + only")
    if len(datasets) != 1:
        raise BenchError(f"--external: give exactly one --dataset (the one the detections are for), "
                         f"got {len(datasets)}")
    levels = parse_levels(noise) if isinstance(noise, str) else list(noise)
    seed_list = parse_seeds(seeds) if isinstance(seeds, str) else list(seeds)
    specs = sorted(expand_grid([name], levels, seed_list, datasets, noise_model=noise_model,
                               noise_params=noise_params, noise_seed=noise_seed, noise_rng=noise_rng,
                               profile=profile, baselines=False),
                   key=lambda s: (s.noise.level, s.seed))
    if len(files) != len(specs):
        raise BenchError(f"--external: {len(files)} detections file(s) for {len(specs)} cell(s) "
                         f"({len(levels)} level(s) x {len(seed_list)} seed(s)); give one file per cell, "
                         "levels first, then seeds")
    cache = cache or DatasetCache()
    out = []
    for spec, path in zip(specs, files):
        cell = resolve_external(spec, cache, Path(path), dict(read_options or {}))
        status = store.status(cell.id)
        action = action_for(status, overwrite)
        if (status == st.DONE_S and action == "skip" and overwrite != "never"
                and _recorded(store, cell.id) != cell.config["external"]):
            action = "redo"  # another file (or other read options) for the same run; `never` keeps the old result
        out.append(Planned(cell, status, action))
    return out


def _recorded(store: st.Store, cid: str) -> dict | None:
    try:
        return read_json(store.cell_dir(cid) / st.CONFIG).get("external")
    except (BenchError, AttributeError):
        return None


def external_predictions(config: dict, test) -> list[dict]:
    """The cell's detections, read and validated against the clean test split (see `load_detection_arrays`); the
    file must still be the one the cell was planned with. Boxes that look like corners get `bench eval`'s note, on
    stderr with the file's name."""
    from benchmark.evaluation import load_detection_arrays
    from benchmark.evaluation.detections import boxes_past_image, to_results
    from benchmark.io import sha256_file

    ext = config["external"]
    path = Path(config["locator"]["detections"])
    if not path.is_file():
        raise BenchError("detections file not found (it was there when the cell was planned)", path)
    if sha256_file(path) != ext["sha256"]:
        raise BenchError("detections file changed since the cell was planned (sha256 differs); rerun the "
                         "`bench run --external` command", path)
    arrays = load_detection_arrays(path, test, classes=ext.get("classes"),
                                   category_ids=ext.get("category_ids", "dataset"),
                                   match_images=ext.get("match_images", "id"))
    if (note := boxes_past_image(test, arrays)) is not None:
        print(f"{path.name}: {note}", file=sys.stderr)
    return to_results(test, arrays)
