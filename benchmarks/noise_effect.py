"""Noise effect benchmark: how much box noise costs a detector, with the clean oracle as the upper bound.

For each dataset (default `shapes` and `bccd`), the `cpu` profile, OA-MIL's uniform box noise at each level
(default 0, 0.2, 0.4; noise seed 0 for every level and training seed, as the papers' released files are) and each
training seed (default 0, 1, 2):
  - every method in --methods (default faster_rcnn) trains on the noisy boxes at every level, with faster_rcnn at
    every level and `clean` (the oracle, once per seed on the clean boxes) added, as `bench run` adds them
    (`--no-baselines` drops both);
  - `--extra METHODS:LEVELS` adds more methods at their own levels, without baselines (repeatable).
Level 0 changes no box, so faster_rcnn at noise 0 is the same training as the oracle (same boxes, seeds and
config): it is not run twice; its row reuses the oracle's runs (`same_run_as` in the JSON).
Every model is evaluated on the clean test split (COCO AP / AP50 / AP75, faster-coco-eval).

The grid runs through the suite's runner (`benchmark.runner.api`, the code behind `bench run`): one results store per
dataset, `--out/<dataset>/`, one 1-thread worker per --jobs; rerunning continues where it stopped, and a store that
`bench run` filled with the same cells (same methods, levels, seeds, profile and --set) is found done. The table is
then built from the stores (`benchmark.results`): mean ± std over seeds; `train s`, the runner's wall seconds of
training per run (a resumed run counts its last part only); `step/FR`, a method's engine seconds per iteration
relative to faster_rcnn's (its rows and the oracle's) on the same dataset; `box IoU noisy -> refined`, for methods
that export refined training boxes (the cell's refined_boxes.json: OA-MIL's corrected boxes, SSD-Det's pseudo
boxes, DISCO's, SD-LocNet's), the mean IoU with the clean boxes of the noisy boxes and of the refined ones
(`reports.analysis.refined_ious`); OA-MIL's mean best-instance score and, in brackets, its weight φ over the last
epoch. With several methods at the highest level, the script prints the AP ordering. Writes
benchmarks/out/noise_effect.json.

    python benchmarks/noise_effect.py                         # full grid, ~4 min a cell on one core
    python benchmarks/noise_effect.py --datasets shapes --seeds 0, --jobs 2
    python benchmarks/noise_effect.py --methods oa_mil,ssd_det --levels 0.2,0.4
    python benchmarks/noise_effect.py --extra oa_mil,ssd_det:0.4   # + the robust methods at 0.4 only (issue #7)
    python benchmarks/noise_effect.py --extra retinanet,free_anchor,co_teaching,sd_locnet,disco:0.4 \
        --extra retinanet_clean:0.4                                # issue #31's rows (one-stage oracle once)
    python benchmarks/noise_effect.py --table-only --out /tmp/s14 ...   # the table of stores `bench run` filled
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ORACLE = "clean"
BASELINE = "faster_rcnn"  # the oracle is this detector on the clean boxes
ORACLES = (ORACLE, "retinanet_clean")  # trained on the clean boxes: one row per dataset whatever the level
NOISE_SEED = 0  # `bench run`'s default noise seed (numpy rng)
DEFAULT_JSON = REPO / "benchmarks" / "out" / "noise_effect.json"


# ---- the grid: `bench run`'s, through its own code -----------------------------------------------------------------
def _scope(item: str) -> str | None:
    """The method a `--set METHOD:KEY=V` is scoped to (None for a global one)."""
    key = item.partition("=")[0]
    return key.partition(":")[0].strip() if ":" in key else None


def parse_extra(specs) -> list[tuple[str, str]]:
    """`--extra METHODS:LEVELS` -> [(methods, levels)] (levels in `bench run --noise` syntax)."""
    out = []
    for spec in specs:
        names, sep, levels = spec.partition(":")
        if not sep or not names.strip(", ") or not levels.strip(", "):
            raise click.BadParameter(f"{spec!r}: expected METHODS:LEVELS, e.g. oa_mil,ssd_det:0.4", param_hint="--extra")
        out.append((names, levels))
    return out


def build_grid(datasets: list[str], groups: list[tuple[str, str, bool]], seeds: str, profile: str | None = None,
               sets=()) -> tuple[list, set]:
    """The cells of every (methods, levels, with baselines) group, each expanded by `benchmark.runner.api.grid` as
    `bench run -m METHODS --noise LEVELS --seeds SEEDS [--no-baselines]` would (so the cell ids are the same), with
    the `--set` items that apply to the group's methods. Returns (specs, dropped): faster_rcnn's level-0 cells are
    dropped where the oracle trains the same (dataset, seed, overrides); `dropped` holds those (dataset, seed)."""
    from benchmark.errors import BenchError
    from benchmark.runner.api import SweepOptions, grid
    from benchmark.runner.grid import BASELINE_METHODS, ORACLE_METHOD, parse_methods

    specs, used = [], set()
    for methods, levels, baselines in groups:
        members = set(parse_methods(methods)) | ({ORACLE_METHOD, *BASELINE_METHODS} if baselines else set())
        mine = [s for s in sets if _scope(s) is None or _scope(s) in members]
        used |= {_scope(s) for s in mine}
        specs += grid(SweepOptions(methods=methods, noise=levels, seeds=seeds, datasets=list(datasets),
                                   profile=profile, sets=mine, baselines=baselines))
    unused = [s for s in sets if _scope(s) is not None and _scope(s) not in used]
    if unused:
        raise BenchError(f"--set {unused[0]}: {_scope(unused[0])!r} is not a method of this grid")
    oracle = {(s.dataset, s.seed): s.overrides for s in specs if s.method == ORACLE}
    dropped = {(s.dataset, s.seed) for s in specs if s.method == BASELINE and s.noise.level == 0
               and oracle.get((s.dataset, s.seed), None) == s.overrides}
    specs = [s for s in specs if not (s.method == BASELINE and s.noise.level == 0 and (s.dataset, s.seed) in dropped)]
    # the baseline and the oracle first (the noise-effect table), then the other methods, seed by seed, so a stopped
    # run has complete tables for what it finished
    specs.sort(key=lambda s: (s.method not in (BASELINE, ORACLE), s.seed))
    return specs, dropped


def store_name(dataset: str) -> str:
    """The folder under --out of a dataset's results store: its name in the cells (`shapes`, `bccd`), made one
    portable path component."""
    from benchmark.runner.cells import dataset_name

    return "".join(c if c.isalnum() or c in "._-=," else "_" for c in dataset_name(dataset))


def dataset_list(values) -> list[str]:
    """`--datasets shapes,bccd` -> two names; a spec with its own commas (`shapes:train=16,val=8`) stays whole."""
    out = []
    for value in values:
        out += [value.strip()] if ":" in value else [d.strip() for d in value.split(",") if d.strip()]
    return list(dict.fromkeys(out))


def sweep_options(specs: list, store: Path, jobs: int, imports=(), progress: bool = False):
    from benchmark.runner.api import SweepOptions

    return SweepOptions(methods=sorted({s.method for s in specs}), cells=list(specs), store=store, jobs=jobs, threads=1,
                        imports=list(imports), report=False, progress=progress)


# ---- the table, from the stores -------------------------------------------------------------------------------------
def _num(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def refined_box_iou(cell_dir: Path) -> dict:
    """Mean IoU with the clean boxes of the noisy training boxes and of the refined boxes the cell stores
    (refined_boxes.json), over the annotations that have both (empty when the method exports none)."""
    from reports.analysis import refined_ious
    from reports.store import Cell

    cell = Cell(Path(cell_dir))
    refined, noisy = cell.refined_boxes, cell.noisy_train
    if refined is None or noisy is None:
        return {}
    before, after = refined_ious(noisy, refined)
    if not len(after):
        return {}
    return {"noisy_iou": round(float(before.mean()), 4), "refined_iou": round(float(after.mean()), 4),
            "refined_n": int(len(after))}


def store_row(r: dict) -> dict:
    """One table row from a results-table row (`benchmark.results.load`) and its cell's files."""
    from benchmark.io import read_json

    model = (read_json(Path(r["cell_dir"]) / "config.json").get("method_config") or {}).get("model") or {}
    row = {"dataset": r["dataset"], "method": r["method"], "level": float(r["noise_level"]), "seed": int(r["seed"]),
           "profile": r["profile"], "detector": r.get("detector"), "cell": r["cell"],
           **{k: _num(r.get(k)) for k in ("AP", "AP50", "AP75", "APs", "APm")},
           "iterations": _num(r.get("train_iterations")), "train_s": _num(r.get("time_train_s")),
           "engine_train_s": _num(r.get("train_train_seconds")), "predict_s": _num(r.get("time_predict_s")),
           **refined_box_iou(Path(r["cell_dir"])),
           "pretrained": model.get("pretrained"), "weights_sha256": model.get("weights_sha256")}
    for key in ("oamil_mean_best_score", "oamil_mean_phi"):  # the last epoch's (the engine's final diagnostics)
        if _num(r.get(f"train_{key}")) is not None:
            row[key] = round(_num(r[f"train_{key}"]), 4)
    return row


def collect(store: Path, cells: list[tuple[str, str, str]], reuse: set = frozenset()) -> tuple[list[dict], list[dict]]:
    """(rows, missing) of the grid's `cells` [(cell id, label, status)]: a row per done and intact cell of the store
    (`benchmark.results.load`), the others listed with their status. `reuse`: oracle cell ids that also stand for
    faster_rcnn at noise 0 (the same training)."""
    import pandas as pd

    from benchmark import results
    from benchmark.results import base_method

    df = results.load(store) if (store / "cells").is_dir() else pd.DataFrame(columns=["cell"])
    ids = {cid for cid, _, _ in cells}
    rows = [store_row(r) for r in df[df["cell"].isin(ids)].to_dict("records")]
    for r in list(rows):
        if r["cell"] in reuse:
            label = BASELINE + r["method"][len(base_method(r["method"])):]
            rows.append({**r, "method": label, "level": 0.0, "same_run_as": r["method"]})
    done = set(df["cell"])
    missing = [{"cell": cid, "label": label, "status": status, "store": str(store)}
               for cid, label, status in cells if cid not in done]
    return rows, missing


def _mean_std(values: list) -> tuple[float, float]:
    values = [v for v in values if v is not None and v == v]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _base(method: str) -> str:
    from benchmark.results import base_method

    return base_method(method)


def summarise(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        level = None if _base(r["method"]) in ORACLES else r["level"]
        groups.setdefault((r["dataset"], r["method"], level), []).append(r)
    out = []
    for (dataset, method, level), rs in groups.items():
        s = {"dataset": dataset, "method": method, "level": level, "seeds": sorted(r["seed"] for r in rs)}
        for k in ("AP", "AP50", "AP75", "train_s", "noisy_iou", "refined_iou", "oamil_mean_best_score",
                  "oamil_mean_phi"):
            s[k], s[f"{k}_std"] = _mean_std([r.get(k) for r in rs])
        s["step_s"], _ = _mean_std([r["engine_train_s"] / r["iterations"] for r in rs
                                    if r.get("engine_train_s") and r.get("iterations")])
        s["same_run"] = any("same_run_as" in r for r in rs)
        out.append(s)
    for s in out:  # training-step cost relative to faster_rcnn on the same dataset (its rows and the oracle's)
        base = [b["step_s"] for b in out if b["dataset"] == s["dataset"] and _base(b["method"]) in (BASELINE, ORACLE)
                and not b["same_run"] and b["step_s"] == b["step_s"]]
        s["step_vs_faster_rcnn"] = s["step_s"] / statistics.fmean(base) if base else float("nan")
    order = {m: i for i, m in enumerate(["faster_rcnn", "oa_mil", "ssd_det"])}
    out.sort(key=lambda s: (s["dataset"], _base(s["method"]) in ORACLES, order.get(_base(s["method"]), 9),
                            s["method"], -1 if s["level"] is None else s["level"]))
    return out


def format_table(summary: list[dict]) -> str:
    dw = max([len("dataset")] + [len(s["dataset"]) for s in summary])
    mw = max([len("method")] + [len(s["method"]) for s in summary])
    head = (f"{'dataset':<{dw}} {'method':<{mw}} {'noise':>5} {'seeds':>5}  {'AP':>13} {'AP50':>13} {'AP75':>13} "
            f"{'train s':>9} {'step/FR':>7} {'box IoU noisy -> refined':>24}")
    lines = [head, "-" * len(head)]
    for s in summary:
        noise = "clean" if s["level"] is None else f"{s['level']:g}"
        cols = "  ".join(f"{100 * s[k]:5.1f} ± {100 * s[k + '_std']:4.1f}" for k in ("AP", "AP50", "AP75"))
        ious = "" if s["refined_iou"] != s["refined_iou"] else f"{s['noisy_iou']:.3f} -> {s['refined_iou']:.3f}"
        if s["oamil_mean_best_score"] == s["oamil_mean_best_score"]:
            ious += f"  best-instance score {s['oamil_mean_best_score']:.2f} (φ {s['oamil_mean_phi']:.3f})"
        lines.append(f"{s['dataset']:<{dw}} {s['method']:<{mw}} {noise:>5} {len(s['seeds']):>5}  {cols} "
                     f"{s['train_s']:9.0f} {s['step_vs_faster_rcnn']:6.2f}x {ious:>24}")
    return "\n".join(lines)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.0%}" if b > 0 else "n/a (oracle AP is 0)"


def effect_lines(summary: list[dict]) -> list[str]:
    """The headline: AP75 of the noisy baseline at the highest level relative to the oracle."""
    lines = []
    for dataset in sorted({s["dataset"] for s in summary}):
        oracle = next((s for s in summary if s["dataset"] == dataset and s["method"] == ORACLE), None)
        base = [s for s in summary if s["dataset"] == dataset and s["method"] == BASELINE and s["level"]]
        if oracle and base:
            worst = max(base, key=lambda s: s["level"])
            lines.append(f"{dataset}: faster_rcnn at noise {worst['level']:g} keeps "
                         f"{_ratio(worst['AP'], oracle['AP'])} of the oracle's AP and "
                         f"{_ratio(worst['AP75'], oracle['AP75'])} of its AP75")
        top = max((s["level"] for s in summary if s["dataset"] == dataset and s["level"]), default=None)
        ranked = sorted((s for s in summary if s["dataset"] == dataset and s["level"] == top
                         and _base(s["method"]) not in ORACLES), key=lambda s: -s["AP"])
        if len(ranked) > 1:
            lines.append(f"{dataset}: AP ordering at noise {top:g}: " + " > ".join(
                f"{s['method']} {100 * s['AP']:.1f}" for s in ranked))
    return lines


def missing_lines(missing: list[dict]) -> list[str]:
    if not missing:
        return []
    return [f"missing: {len(missing)} cell(s) of the grid are not done (left out of the table):"] + [
        f"  {m['cell']}  {m['label']}  [{m['status']}]  in {m['store']}" for m in missing]


# ---- the command ----------------------------------------------------------------------------------------------------
def run(datasets: list[str], groups: list[tuple[str, str, bool]], seeds: str, profile: str | None, sets, out: Path,
        jobs: int, table_only: bool = False, imports=(), progress: bool = False, echo=print) -> dict:
    """Run (unless `table_only`) the grid into one store per dataset under `out`, then build the table from the
    stores. Returns the JSON document (rows, summary, missing cells, failures, headline lines)."""
    from benchmark.runner import api
    from benchmark.runner import store as st
    from benchmark.runner.run_cell import import_modules

    import_modules(list(imports))
    specs, dropped = build_grid(datasets, groups, seeds, profile, sets)
    by_dataset: dict[str, list] = {}
    for s in specs:
        by_dataset.setdefault(s.dataset, []).append(s)
    t0 = time.perf_counter()
    rows, missing, failures, stores = [], [], [], {}
    for dataset, cells in by_dataset.items():
        store = out / store_name(dataset)
        stores[dataset] = str(store)
        options = sweep_options(cells, store, jobs, imports, progress)
        if not table_only:
            summary = api.run_sweep(options, echo=lambda line: print(line, file=sys.stderr))
            failures += [{**f, "store": str(store)} for f in summary.failed]
        planned = api.planned_cells(options, st.Store(store))
        reuse = {p.cell.id for p in planned if p.cell.spec.method == ORACLE
                 and (p.cell.spec.dataset, p.cell.spec.seed) in dropped}
        got, lost = collect(store, [(p.cell.id, p.cell.label(), p.status) for p in planned], reuse)
        rows += got
        missing += lost
    wall = time.perf_counter() - t0
    summary = summarise(rows)
    return {"profile": profile, "noise": {"model": "uniform", "seed": NOISE_SEED}, "jobs": jobs,
            "wall_s": round(wall, 1), "table_only": table_only, "stores": stores, "rows": rows, "summary": summary,
            "missing": missing, "failures": failures, "effect": effect_lines(summary)}


@click.command()
@click.option("--datasets", multiple=True, default=("shapes,bccd",), show_default=True,
              help="catalog names, comma-separated, or dataset specs as `bench run -d` takes them (repeatable)")
@click.option("--methods", default="faster_rcnn", show_default=True,
              help="noisy-box methods (faster_rcnn at every level and the oracle are added unless --no-baselines)")
@click.option("--levels", default="0,0.2,0.4", show_default=True, help="noise levels, as `bench run --noise`")
@click.option("--extra", multiple=True, metavar="METHODS:LEVELS",
              help="more methods at their own levels, no baselines added, e.g. oa_mil,ssd_det:0.4 (repeatable)")
@click.option("--seeds", default="0,1,2", show_default=True, help="training seeds, as `bench run --seeds`")
@click.option("--profile", default="cpu", show_default=True)
@click.option("--jobs", default=os.cpu_count() or 1, show_default=True, help="parallel 1-thread workers")
@click.option("--no-baselines", is_flag=True, help="leave out faster_rcnn at each level and the clean oracle")
@click.option("--set", "sets", multiple=True, metavar="[METHOD:]SECTION.KEY=VALUE",
              help="config override for every cell, as `bench run --set` (repeatable)")
@click.option("--import", "imports", multiple=True, metavar="MODULE", help="import a module first (extra methods)")
@click.option("--table-only", is_flag=True, help="train nothing: the table of what the stores hold (the rest is "
                                                 "listed as missing)")
@click.option("--out", default=str(REPO / "benchmarks" / "out" / "noise_effect"), show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="one results store per dataset: OUT/<dataset>/")
@click.option("--json", "json_path", default=str(DEFAULT_JSON), show_default=True,
              type=click.Path(dir_okay=False, path_type=Path))
def main(datasets, methods, levels, extra, seeds, profile, jobs, no_baselines, sets, imports, table_only, out,
         json_path):
    from benchmark.errors import BenchError
    from benchmark.io import write_json

    groups = [(methods, levels, not no_baselines)] + [(m, lv, False) for m, lv in parse_extra(extra)]
    try:
        doc = run(dataset_list(datasets), groups, seeds, profile, list(sets), out,
                  jobs, table_only=table_only, imports=imports, progress=sys.stderr.isatty())
    except BenchError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    print(format_table(doc["summary"]))
    for line in doc["effect"] + missing_lines(doc["missing"]):
        print(line)
    print(f"wall time {doc['wall_s']:.0f}s for {len(doc['rows'])} rows, stores: {', '.join(doc['stores'].values())} "
          f"(train s = per-run training time, 1 thread each)")
    write_json(json_path, doc, indent=True)
    if doc["failures"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
