"""`bench reproduce TABLE`: one sweep per paper table, defined as data (`reproduce_tables.yaml`).

A table names its dataset (a catalog name: `bench data prepare voc2007`), the methods the suite can run with the
noise levels the paper reports for each, the metric, and the leaderboard rows that hold the paper's numbers. Every
cell runs the `paper` profile on the OA-MIL protocol's boxes (`uniform`, `oamil-legacy`, seed 45), so
`bench leaderboard add STORE` puts each reproduced number beside its reported one. The sweep itself is the runner's
(`benchmark.runner.api.run_sweep` with an explicit cell list): resumable, content-addressed, shared with `bench run`
(tables on one dataset share their common cells).

Like `bench` itself this module sits above everything it drives: the runner, the method registry, the dataset
catalog, and the leaderboard's reported rows (read only).

`--dry-run` prints the cells with the reported number each should match, a GPU-hours estimate (the cost model in the
tables file: a published images/s anchor, or `--speed` with the figures `benchmarks/gpu_check.py` measured) and the
data and weights the sweep needs, with whether they are here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmark.errors import BenchError

TABLES = Path(__file__).resolve().parent / "reproduce_tables.yaml"
PROFILE = "paper"
NOISE_MODEL = "uniform"
NOISE_RNG = "oamil-legacy"
BACKBONE = "R50-FPN"  # the paper profile's backbone, as the leaderboard rows name it
_NEEDED = ("paper", "dataset", "kind", "leaderboard_dataset", "test_split", "metric", "train_images", "test_images",
           "methods")
# which gpu_check dataset stands for a table's images: shapes is trained at 1333x800 (the COCO size), BCCD at VOC's
# 1000x600
SPEED_STAND_IN = {"coco": "shapes", "voc": "bccd"}
# methods gpu_check does not time itself: what their training is made of (first match wins)
MEASURED_AS = {"clean": [["faster_rcnn"]], "ssd_det+retrain": [["ssd_det", "faster_rcnn"]]}


@dataclass(frozen=True)
class Table:
    name: str
    paper: str
    dataset: str
    kind: str
    leaderboard_dataset: str
    test_split: str
    metric: str
    train_images: int
    test_images: int
    methods: dict[str, list[float]]
    not_runnable: dict[str, str]


def load_tables(path: str | Path = TABLES) -> tuple[dict[str, Table], dict]:
    """(tables by name, cost model) from the tables file; a malformed file is a one-line error naming it."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise BenchError(f"cannot read the tables file ({exc.__class__.__name__})", path) from None
    if not isinstance(data, dict) or not isinstance(data.get("tables"), dict) or not isinstance(
            data.get("cost_model"), dict):
        raise BenchError("tables file needs `tables` and `cost_model` mappings", path)
    tables = {}
    for name, t in data["tables"].items():
        missing = [k for k in _NEEDED if not isinstance(t, dict) or k not in t]
        if missing:
            raise BenchError(f"table {name!r} lacks {', '.join(missing)}", path)
        methods = t["methods"]
        if not isinstance(methods, dict) or not methods or not all(
                isinstance(lv, list) and lv and all(isinstance(x, (int, float)) and 0 <= x < 1 for x in lv)
                for lv in methods.values()):
            raise BenchError(f"table {name!r}: methods must map each method to a list of noise levels in [0, 1)", path)
        tables[name] = Table(name, str(t["paper"]), str(t["dataset"]), str(t["kind"]), str(t["leaderboard_dataset"]),
                             str(t["test_split"]), str(t["metric"]), int(t["train_images"]), int(t["test_images"]),
                             {m: sorted(float(x) for x in lv) for m, lv in methods.items()},
                             {str(k): str(v) for k, v in (t.get("not_runnable") or {}).items()})
    return tables, data["cost_model"]


def get_table(name: str, path: str | Path = TABLES) -> tuple[Table, dict]:
    tables, cost = load_tables(path)
    if name not in tables:
        raise BenchError(f"unknown table {name!r} (known: {', '.join(sorted(tables))})")
    return tables[name], cost


def select_methods(table: Table, only: str | None) -> dict[str, list[float]]:
    """The table's methods, or those of `only` (comma-separated); a method the table does not run is an error."""
    if not only:
        return dict(table.methods)
    names = [m.strip() for m in only.split(",") if m.strip()]
    unknown = [m for m in names if m not in table.methods]
    if unknown:
        raise BenchError(f"--methods: {', '.join(unknown)} not in table {table.name} (its methods: "
                         f"{', '.join(table.methods)})")
    return {m: table.methods[m] for m in names}


def cell_specs(table: Table, methods: dict[str, list[float]], seeds: list[int], dataset: str | None = None):
    """The sweep's `CellSpec`s: each method at its own levels (no added baselines: the table says which rows run),
    `paper` profile, OA-MIL noise drawn by `oamil-legacy` (its seed, 45); level 0 is the clean training set."""
    from benchmark.runner.grid import expand_grid

    specs = []
    for method, levels in methods.items():
        specs += expand_grid([method], levels, seeds, [dataset or table.dataset], noise_model=NOISE_MODEL,
                             noise_rng=NOISE_RNG, profile=PROFILE, baselines=False)
    return specs


def reported(table: Table, entries: str | Path | None = None) -> dict[tuple[str, float], float]:
    """(method, level) -> the paper's number for the table's metric, from the leaderboard rows that reproduced
    rows of this table will be matched to (same dataset key, split, noise model, level, backbone and profile)."""
    from leaderboard.rows import ENTRIES, load_rows

    out = {}
    for _, row in load_rows(entries or ENTRIES):
        if (row["dataset"], row["test_split"], row["noise"]["model"], row["backbone"], row.get("profile", "paper")) \
                != (table.leaderboard_dataset, table.test_split, NOISE_MODEL, BACKBONE, PROFILE):
            continue
        value = ((row.get("reported") or {}).get("metrics") or {}).get(table.metric)
        if value is not None:
            out[(row["method"], float(row["noise"]["level"]))] = float(value)
    return out


# ---- cost model -------------------------------------------------------------------------------------------------
def _config(method: str, kind: str, level: float) -> dict:
    from benchmark.config import resolve_config
    from methods import get_method

    return resolve_config(get_method(method), PROFILE, kind, level)


def images_per_epoch(train_cfg: dict, train_images: int) -> int:
    """Images one epoch trains on: the whole split, or `iters_per_epoch` batches where the recipe fixes that."""
    ipe = train_cfg.get("iters_per_epoch")
    return train_images if ipe is None else int(ipe) * int(train_cfg["batch_size"])


def load_speed(path: str | Path) -> dict[tuple[str, str, bool], float]:
    """(gpu_check dataset, method, amp) -> measured training images/s, from `benchmarks/gpu_check.py`'s JSON."""
    from benchmark.io import read_json

    data = read_json(path)
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise BenchError("not a gpu_check.py result (no `rows` list)", path)
    out = {}
    for r in rows:
        try:
            ips = float(r["images_per_s"])
        except (KeyError, TypeError, ValueError):
            continue
        if math.isfinite(ips) and ips > 0:
            out[(str(r["dataset"]), str(r["method"]), bool(r["amp"]))] = ips
    if not out:
        raise BenchError("gpu_check result has no images/s figures", path)
    return out


def training_speed(method: str, kind: str, amp: bool, cost: dict,
                   speed: dict | None = None) -> tuple[float, str]:
    """(images/s of one GPU training `method` on a `kind` dataset, what the figure is based on)."""
    if speed:
        stand_in = SPEED_STAND_IN.get(kind)
        for parts in ([method], *MEASURED_AS.get(method, [])):
            if all((stand_in, p, amp) in speed for p in parts):  # consecutive trainings: their times add up
                ips = 1.0 / sum(1.0 / speed[(stand_in, p, amp)] for p in parts)
                return ips, f"measured ({'+'.join(parts)} on {stand_in}, amp {'on' if amp else 'off'})"
    anchor = cost["anchor"]
    factor = float(cost.get("method_cost", {}).get(method, 1.0))
    ips = float(anchor["images_per_s"]) * float(cost.get("kind_speedup", {}).get(kind, 1.0)) / factor
    return ips, f"{anchor['gpu']} anchor, cost x{factor:g}"


@dataclass
class CellCost:
    method: str
    level: float
    seed: int
    epochs: int
    images_per_s: float
    basis: str
    gpu_hours: float


def estimate(table: Table, specs, cost: dict, speed: dict | None = None) -> list[CellCost]:
    """GPU-hours per cell: training images x epochs / images/s, plus inference over the test split."""
    out, configs = [], {}
    infer = float(cost["anchor"]["inference_s_per_image"]) * table.test_images
    for s in specs:
        key = (s.method, s.noise.level)
        if key not in configs:
            configs[key] = _config(s.method, table.kind, s.noise.level)["train"]
        tcfg = configs[key]
        ips, basis = training_speed(s.method, table.kind, bool(tcfg.get("amp")), cost, speed)
        seconds = images_per_epoch(tcfg, table.train_images) * int(tcfg["epochs"]) / ips + infer
        out.append(CellCost(s.method, s.noise.level, s.seed, int(tcfg["epochs"]), ips, basis, seconds / 3600.0))
    return out


# ---- what the sweep needs ---------------------------------------------------------------------------------------
def dataset_status(name: str) -> tuple[bool, str]:
    """(present, one line) for a catalog dataset (prepared where the catalog looks for it, or how to get it) or a
    dataset path."""
    from benchmark.datasets.catalog import CATALOG

    if name not in CATALOG and (":" in name or "/" in name or Path(name).expanduser().exists()):
        path = Path(name.split(":", 1)[-1].split(",")[0]).expanduser()
        return path.exists(), f"dataset {name}: {'present' if path.exists() else 'missing'}"
    entry = CATALOG.get(name)
    if entry is None:
        return False, f"dataset {name}: not in this suite's catalog (`bench data ls`); prepare it with " \
                      f"`bench data prepare {name}`"
    location, status = entry.locate()
    present = location is not None and Path(location).exists()
    where = f" at {location}" if location is not None else ""
    hint = "" if present or "bench data prepare" in status else f"; prepare it with `bench data prepare {name}`"
    return present, f"dataset {name}: {'present' if present else 'missing'}{where} ({status}){hint}"


def weights_status(model_cfg: dict, weights: str | Path | None = None) -> tuple[bool, str]:
    """(present, one line) for the backbone weights a paper-profile cell loads: `--weights` / `model.weights`, or
    torchvision's ImageNet file in the torch hub cache (`benchmark.weights`: what `pretrained` downloads)."""
    from benchmark import weights as bw

    local = weights or model_cfg.get("weights")
    if local:
        path = Path(local).expanduser()
        return path.is_file(), f"weights {path}: {'present' if path.is_file() else 'missing'}"
    name = bw.needed(model_cfg)
    if name is None:
        return True, f"weights: none ({model_cfg.get('backbone')} from a random init)"
    path = bw.cached(name)
    if path is not None:
        return True, f"weights {name} ImageNet: present at {path}"
    return False, (f"weights {name} ImageNet: missing from {bw.cache_dir()} ({bw.file_name(bw.weight_url(name))}: "
                   f"downloaded on first use; offline: `bench weights fetch {name}` where there is internet and copy "
                   f"the file there, or pass --weights PATH)")


def needs(table: Table, specs, dataset: str | None = None,
          weights: str | Path | None = None) -> list[tuple[bool, str]]:
    lines = [dataset_status(dataset or table.dataset)]
    seen = set()
    for s in specs:
        model = _config(s.method, table.kind, s.noise.level)["model"]
        key = (model.get("backbone"), model.get("weights"), model.get("pretrained"))
        if key not in seen:
            seen.add(key)
            lines.append(weights_status(model, weights))
    return lines


# ---- the command's two modes ------------------------------------------------------------------------------------
def _level(lv: float) -> str:
    return "clean" if lv == 0 else f"{lv:g}"


def dry_run_text(table: Table, specs, cost: dict, speed: dict | None = None,
                 entries: str | Path | None = None, dataset: str | None = None,
                 weights: str | Path | None = None) -> str:
    paper = reported(table, entries)
    costs = estimate(table, specs, cost, speed)
    lines = [f"{table.name}: {table.paper}",
             f"dataset {dataset or table.dataset} ({table.kind}), profile {PROFILE}, noise {NOISE_MODEL} rng {NOISE_RNG}, "
             f"metric {table.metric} on {table.test_split}", ""]
    rows = [("method", "level", "seed", "reported", "epochs", "img/s", "GPU-h", "speed from")]
    for s, c in zip(specs, costs):
        rep = paper.get((s.method, s.noise.level))
        rows.append((s.method, _level(s.noise.level), str(s.seed), "-" if rep is None else f"{rep:.1f}",
                     str(c.epochs), f"{c.images_per_s:.1f}", f"{c.gpu_hours:.1f}", c.basis))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    total = sum(c.gpu_hours for c in costs)
    lines += ["", f"{len(specs)} cells, about {total:.0f} GPU-hours ({cost['anchor']['gpu']}-class GPU; "
                  f"{'measured images/s where given, else ' if speed else ''}anchor: {cost['anchor']['source']})"]
    unmatched = [s for s in specs if (s.method, s.noise.level) not in paper]
    if unmatched:
        lines.append(f"{len(unmatched)} cell(s) have no paper-reported row to match (shown as -)")
    if table.not_runnable:
        lines += ["", "not runnable yet (the table's other rows):"]
        lines += [f"  {m}: {why}" for m, why in table.not_runnable.items()]
    lines += ["", "needs:"] + [f"  [{'x' if ok else ' '}] {line}" for ok, line in needs(table, specs, dataset, weights)]
    return "\n".join(lines)


def add_command(table: Table, store: Path) -> str:
    return (f"bench leaderboard add {store} --dataset-name {table.leaderboard_dataset} "
            f"--test-split {table.test_split}")


def run(table: Table, specs, options, echo: Callable[[str], None] = print, dataset: str | None = None):
    """Run the table's cells through the runner (`options`: a `SweepOptions` whose grid fields are ignored)."""
    from dataclasses import replace

    from benchmark.runner import api

    present, line = dataset_status(dataset or table.dataset)
    if not present:
        raise BenchError(f"{table.name}: {line}")
    opts = replace(options, methods=sorted({s.method for s in specs}), datasets=[dataset or table.dataset],
                   cells=list(specs),
                   profile=PROFILE, noise_model=NOISE_MODEL, noise_rng=NOISE_RNG, baselines=False)
    summary = api.run_sweep(opts, echo=echo)
    if summary.done or summary.skipped:
        echo(f"paper numbers beside these: {add_command(table, opts.store)}")
    return summary


# ---- `bench reproduce` ------------------------------------------------------------------------------------------
def _command():
    import click

    from benchmark.runner.cli import _parse_kv

    @click.command("reproduce")
    @click.argument("table_name", metavar="TABLE")
    @click.option("--dry-run", is_flag=True, help="Print the cells, a GPU-hours estimate and the data and weights "
                                                  "needed (with whether they are here); run nothing.")
    @click.option("--seeds", "-s", default="1", show_default=True,
                  help="Training seeds: a count (3 -> 0,1,2), a list or a range (the papers report one run).")
    @click.option("--methods", "only", default=None, help="Only these of the table's methods (comma-separated).")
    @click.option("--dataset", "-d", default=None,
                  help="The table's dataset from another place (e.g. a VOC root) [default: the table's catalog name].")
    @click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="Local ImageNet ResNet-50 weights for every cell instead of the torch cache / a download.")
    @click.option("--offline", is_flag=True, help="Refuse to start if the weights are not in the torch cache.")
    @click.option("--speed", type=click.Path(dir_okay=False), default=None,
                  help="benchmarks/gpu_check.py JSON: measured images/s instead of the cost model's anchor.")
    @click.option("--tables", type=click.Path(dir_okay=False), default=str(TABLES), show_default=False,
                  help="Tables file [default: the suite's reproduce_tables.yaml].")
    @click.option("--entries", type=click.Path(file_okay=False), default=None,
                  help="Leaderboard entries holding the reported rows [default: the suite's own].")
    @click.option("--out", "-o", type=click.Path(file_okay=False), default="results", show_default=True,
                  help="Results store (tables on one dataset share their common cells).")
    @click.option("--overwrite", type=click.Choice(["never", "missing", "always"]), default="missing",
                  show_default=True)
    @click.option("--executor", type=click.Choice(["local", "slurm"]), default="local", show_default=True)
    @click.option("--jobs", "-j", type=int, default=None, help="Cells at once (local).")
    @click.option("--gpus-per-cell", type=int, default=1, show_default=True,
                  help="Processes per cell; > 1 runs each cell with torchrun (DDP).")
    @click.option("--partition", default=None, help="Slurm partition.")
    @click.option("--gpus-per-task", type=int, default=None, help="Slurm GPUs per array task.")
    @click.option("--timeout-min", type=int, default=24 * 60, show_default=True, help="Slurm time limit per task.")
    @click.option("--slurm-arg", "slurm_args", multiple=True, metavar="KEY=VALUE", help="Extra sbatch parameter.")
    @click.option("--no-wait", is_flag=True, help="Slurm: submit and return; rerun the command later to collect.")
    @click.option("--progress/--no-progress", default=None, help="Progress bars [default: when stderr is a terminal].")
    def reproduce(table_name, dry_run, seeds, only, dataset, weights, offline, speed, tables, entries, out, overwrite,
                  executor, jobs, gpus_per_cell, partition, gpus_per_task, timeout_min, slurm_args, no_wait, progress):
        """Re-run one paper TABLE (voc07-oamil, voc07-ssddet, coco-oamil, coco-ssddet): each method at the table's
        noise levels, `paper` profile, OA-MIL noise drawn by `oamil-legacy`.

        \b
        bench reproduce voc07-ssddet --dry-run
        bench reproduce voc07-ssddet --executor slurm --partition gpu
        bench leaderboard add results --dataset-name voc2007 --test-split test
        """
        import sys

        from benchmark.runner import api
        from benchmark.runner.grid import parse_seeds

        table, cost = get_table(table_name, tables)
        specs = cell_specs(table, select_methods(table, only), parse_seeds(seeds), dataset)
        measured = load_speed(speed) if speed else None
        if dry_run:
            click.echo(dry_run_text(table, specs, cost, measured, entries, dataset, weights))
            return
        options = api.SweepOptions(
            methods=[], store=Path(out), weights=weights, offline=offline, overwrite=overwrite, executor=executor, jobs=jobs,
            gpus_per_cell=gpus_per_cell, partition=partition, gpus_per_task=gpus_per_task, timeout_min=timeout_min,
            slurm_args=_parse_kv(slurm_args, "--slurm-arg"), wait=not no_wait,
            progress=sys.stderr.isatty() if progress is None else progress)
        summary = run(table, specs, options, click.echo, dataset)
        if summary.failed or summary.aborted:
            raise click.exceptions.Exit(1)

    return reproduce


reproduce = _command()
