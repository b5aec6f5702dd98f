"""`bench run`: a sweep of method x noise level x seed (x dataset) into a results store."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from benchmark.errors import BenchError


def _parse_kv(items: tuple[str, ...], what: str) -> dict:
    from benchmark.config import parse_overrides

    out = {}
    for item in items:
        if "=" not in item:
            raise BenchError(f"{what} expects key=value, got {item!r}")
        out.update(parse_overrides([item]))
    return out


def _noise_seed(text: str | None) -> int | str | None:
    """None (not given: the grid's default, 0 or OA-MIL's 45), "seed" or an integer."""
    if text is None or text == "seed":
        return text
    try:
        return int(text)
    except ValueError:
        raise BenchError(f"--noise-seed must be an integer or 'seed', got {text!r}") from None


@click.command("run")
@click.option("--method", "-m", "methods", required=True, help="Methods, comma-separated: faster_rcnn,oa_mil,ssd_det.")
@click.option("--noise", "-n", "noise", default="0.1..0.4", show_default=True,
              help="Noise levels: range 0.1..0.4 (step 0.1, or 0..0.4:0.2) and/or list 0,0.2,0.4; 0 = clean data.")
@click.option("--seeds", "-s", default="1", show_default=True,
              help="Training seeds: a count (3 -> 0,1,2), a list (0,1,2) or a range (0..2).")
@click.option("--dataset", "-d", "datasets", multiple=True, default=("shapes",), show_default=True,
              help="Catalog name or path (COCO json, VOC root, YOLO root, coco:TRAIN.json,TEST.json); repeatable.")
@click.option("--noise-model", default="uniform", show_default=True,
              help="Box-noise generator (bench noise ls), or a composition such as uniform+missing@0.1 (its "
                   "parameters as STEP.KEY=VALUE).")
@click.option("--noise-param", "noise_params", multiple=True, metavar="KEY=VALUE",
              help="Extra noise-model parameter; repeatable.")
@click.option("--noise-seed", default=None,
              help="Seed of the noise draw: an integer (same noisy file for every training seed) or 'seed' "
                   "[default: 0, or OA-MIL's 45 with --noise-rng oamil-legacy].")
@click.option("--noise-rng", type=click.Choice(["numpy", "oamil-legacy"]), default="numpy", show_default=True)
@click.option("--profile", type=click.Choice(["cpu", "paper"]), default=None,
              help="Training profile [default: paper on a GPU machine for COCO/VOC data, else cpu].")
@click.option("--set", "sets", multiple=True, metavar="[METHOD:]SECTION.KEY=VALUE",
              help="Config override (train.lr=0.01, or ssd_det:method.KEY=V for one method); repeatable.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="YAML file of config overrides, the keys --set takes (--set wins).")
@click.option("--no-baselines", is_flag=True, help="Leave out faster_rcnn at each level and the clean oracle.")
@click.option("--out", "-o", "out", type=click.Path(file_okay=False), default="results", show_default=True,
              help="Results store directory.")
@click.option("--overwrite", type=click.Choice(["never", "missing", "always"]), default="missing", show_default=True,
              help="missing: run cells not done (resume half-trained ones); never: only never-started cells; "
                   "always: rerun everything.")
@click.option("--dry-run", is_flag=True, help="List the cells, their status and what would happen; run nothing.")
@click.option("--executor", type=click.Choice(["local", "slurm"]), default="local", show_default=True)
@click.option("--jobs", "-j", type=int, default=None,
              help="Cells at once (local) [default: one per GPU group, or CPU cores / (threads x gpus-per-cell)].")
@click.option("--threads", type=int, default=None, help="Threads per cell [default: cores / jobs].")
@click.option("--gpus-per-cell", type=int, default=1, show_default=True,
              help="Processes per cell; > 1 runs each cell with torchrun (DDP).")
@click.option("--partition", default=None, help="Slurm partition.")
@click.option("--gpus-per-task", type=int, default=None, help="Slurm GPUs per array task [default: --gpus-per-cell].")
@click.option("--cpus-per-task", type=int, default=4, show_default=True, help="Slurm CPUs per array task.")
@click.option("--timeout-min", type=int, default=24 * 60, show_default=True, help="Slurm time limit per task.")
@click.option("--mem-gb", type=float, default=None, help="Slurm memory per task.")
@click.option("--array-parallelism", type=int, default=256, show_default=True,
              help="Slurm: array tasks running at once.")
@click.option("--slurm-arg", "slurm_args", multiple=True, metavar="KEY=VALUE",
              help="Extra sbatch parameter (account=..., qos=...); repeatable.")
@click.option("--no-wait", is_flag=True, help="Slurm: submit and return; rerun the command later to collect.")
@click.option("--cluster", default=None, hidden=True, help="submitit cluster override (local / debug) for tests.")
@click.option("--import", "imports", multiple=True, metavar="MODULE",
              help="Import a module or .py file first (e.g. one that registers extra methods); repeatable.")
@click.option("--external", "external", multiple=True, type=click.Path(dir_okay=False), metavar="DETS",
              help="Score detections made elsewhere (COCO results json, mmdet .bbox.json or --out pickle, detectron2) "
                   "as cells of --method NAME; one file per (level, seed) cell, levels first. Trains nothing.")
@click.option("--classes", default=None, help="--external: detector class names in label order (mmdet `classes`).")
@click.option("--category-ids", type=click.Choice(["dataset", "index0", "index1"]), default="dataset",
              show_default=True, help="--external json: what category_id holds (GT ids or 0/1-based class indices).")
@click.option("--match-images", type=click.Choice(["id", "file_stem"]), default="id", show_default=True,
              help="--external (json or pickle): match image ids to GT ids or to image file stems (ultralytics, "
                   "mmdet 3.x on VOC).")
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Local initial weights (backbone or detector state dict) for every cell instead of downloading; "
                   "torchvision's own ImageNet file keeps the cells' ids.")
@click.option("--offline", is_flag=True,
              help="The cells cannot download (also NOISYBOX_OFFLINE=1 or HF_HUB_OFFLINE=1): stop before any cell "
                   "starts if ImageNet weights the profile needs are not in the torch cache.")
@click.option("--report/--no-report", default=True, show_default=True, help="Write the comparison report at the end.")
@click.option("--progress/--no-progress", default=None, help="Progress bars [default: when stderr is a terminal].")
def run(methods, noise, seeds, datasets, noise_model, noise_params, noise_seed, noise_rng, profile, sets,
        config_file, no_baselines, out, overwrite, dry_run, executor, jobs, threads, gpus_per_cell, partition, gpus_per_task,
        cpus_per_task, timeout_min, mem_gb, array_parallelism, slurm_args, no_wait, cluster, imports, external,
        classes, category_ids, match_images, weights, offline, report, progress):
    """Run a sweep of METHOD x noise level x seed into a results store (skips done cells, resumes the rest).

    \b
    bench run --method ssd_det --noise 0.1..0.4
    bench run --method faster_rcnn,oa_mil,ssd_det --noise 0,0.2,0.4 --seeds 3 --dataset bccd
    bench run --method ssd_det --executor slurm --partition gpu --gpus-per-task 1
    bench run --method mmdet_retinanet --noise 0.4 --dataset bccd --external work_dirs/retina.bbox.json
    """
    from benchmark.runner import api

    if config_file is not None:
        from benchmark.config import config_file_sets

        sets = (*config_file_sets(config_file), *sets)
    options = api.SweepOptions(
        methods=methods, noise=noise, seeds=seeds, datasets=list(datasets), noise_model=noise_model,
        noise_params=_parse_kv(noise_params, "--noise-param"), noise_seed=_noise_seed(noise_seed),
        noise_rng=noise_rng, profile=profile, sets=list(sets), baselines=not no_baselines, store=Path(out),
        overwrite=overwrite, executor=executor, jobs=jobs, threads=threads, gpus_per_cell=gpus_per_cell,
        partition=partition, gpus_per_task=gpus_per_task, cpus_per_task=cpus_per_task, timeout_min=timeout_min,
        mem_gb=mem_gb, array_parallelism=array_parallelism, slurm_args=_parse_kv(slurm_args, "--slurm-arg"),
        wait=not no_wait, cluster=cluster, imports=list(imports), report=report,
        progress=sys.stderr.isatty() if progress is None else progress,
        external=list(external), weights=weights, offline=offline,
        external_options={"category_ids": category_ids, "match_images": match_images,
                          **({"classes": [c.strip() for c in classes.split(",")]} if classes else {})},
    )
    if dry_run:
        click.echo(api.dry_run(options))
        return
    summary = api.run_sweep(options, echo=click.echo)
    if summary.failed or summary.aborted:
        raise click.exceptions.Exit(1)
