"""The shared training engine and predictor: one plain loop in the spirit of torchvision's references/detection.

`fit(adapter, train, cfg, workdir)` trains `adapter.build_model(cfg, K)` on `train` (the view the adapter may see):
- seeds: `train.seed` initialises the model (and the global RNG torchvision's samplers draw from), `train.data_seed`
  drives image order and flips (`methods._core.data.TrainOrder`); both recorded in the checkpoint and metrics;
- schedule: `train.epochs` x `iters_per_epoch` iterations; per-iteration warm-up then step or cosine decay;
- checkpoints: `workdir/checkpoint.pth` after every `train.checkpoint_every` epochs and, inside an epoch, once
  `train.checkpoint_minutes` have passed since the last one (a preempted COCO epoch is hours; 0: epoch ends only)
  (model with the hooks' state, optimizer, scheduler, AMP scaler, epoch, iteration, RNG states, config, the loss
  sums of an epoch under way); `resume=True` continues from it and reproduces an uninterrupted run;
  `workdir/model_final.pth` holds the final weights + config + category ids and names for `predict`;
- CUDA AMP on GPU only; DDP when launched by `torchrun` (WORLD_SIZE/RANK/LOCAL_RANK; NCCL on GPU, gloo on CPU);
  `train.batch_size` is the total over all processes;
- a non-finite loss (or, without AMP, a non-finite gradient of finite losses) stops the run with a `BenchError`
  naming the iteration and the batch's image ids;
- `workdir/train.log` (the `noisybox.train` logger: its records also reach the runner's cell.log),
  `workdir/train_metrics.json`, `workdir/scalars.csv` (+ `train.loggers`), a tqdm bar (loss, it/s, ETA) on stderr;
- model hooks (see methods/base.py): `set_epoch`, `set_diagnostics`, `refined_boxes` (-> `refined_boxes.json`,
  gathered across processes), `diagnostics` (merged into the metrics).

The loop is cut the way torchvision's references/detection cut theirs: `_fit` (main) opens the workdir, `_build`s,
`_restore`s, runs `_train_one_epoch` (one `_train_step` per batch), and `_finish`es; `_Checkpointer` holds the
checkpoint policy.

`predict(adapter, checkpoint, dataset)` returns COCO results in original-image coordinates and category ids.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmark.config import is_device, option, scaled_lr, without_runtime_keys
from benchmark.errors import BenchError
from benchmark.io import dumps_json, write_json
from benchmark.scalars import CSV_NAME, ScalarLog
from benchmark.train_result import TrainResult
from methods._core.data import DetectionImages, IterationBatches, TrainOrder, aspect_groups, collate
from methods._core.geometry import xyxy_to_xywh

CHECKPOINT = "checkpoint.pth"
FINAL = "model_final.pth"


# ---- distributed helpers ---------------------------------------------------------------------------------------
def select_device(pref: str, what: str = "train.device", local_rank: int = 0, world_size: int = 1) -> torch.device:
    """`auto | cpu | cuda | cuda:N` -> the device (`cuda`: this process's LOCAL_RANK under torchrun); a device this
    machine does not have is a one-line BenchError, not CUDA's traceback."""
    if not is_device(pref):
        raise BenchError(f"{what} must be auto, cpu, cuda or cuda:N, got {pref!r}")
    if pref == "cpu" or (pref == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise BenchError(f"{what}={pref} but CUDA is not available")
    if pref.startswith("cuda:") and world_size > 1:
        raise BenchError(f"{what}={pref} with {world_size} processes would put them all on one GPU; use cuda or "
                         f"auto (process i uses cuda:LOCAL_RANK) and choose GPUs with CUDA_VISIBLE_DEVICES")
    index = int(pref[5:]) if pref.startswith("cuda:") else local_rank
    count = torch.cuda.device_count()
    if index >= count:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        why = f"process LOCAL_RANK {local_rank} needs cuda:{index}" if not pref.startswith("cuda:") else pref
        raise BenchError(f"{what}={pref}: {why} but only {count} CUDA device(s) are visible"
                         + (f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""))
    return torch.device(f"cuda:{index}")


class _Dist:
    """Process-group facts; `fit` initialises the group from torchrun's environment when needed."""

    def __init__(self, device_pref: str):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = select_device(device_pref, "train.device", self.local_rank, self.world_size)
        use_cuda = self.device.type == "cuda"
        if use_cuda:
            torch.cuda.set_device(self.device)
        self.owns_group = False
        if self.world_size > 1 and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if use_cuda else "gloo", init_method="env://")
            self.owns_group = True

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_gather(self, obj: Any) -> list[Any]:
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def all_reduce_mean(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            torch.distributed.all_reduce(t)
            t /= self.world_size
        return t

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.owns_group:
            torch.distributed.destroy_process_group()


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


# ---- schedule -----------------------------------------------------------------------------------------------
def iters_per_epoch(train_cfg: dict, num_images: int) -> int:
    ipe = train_cfg.get("iters_per_epoch")
    return int(ipe) if ipe else max(1, math.ceil(num_images / train_cfg["batch_size"]))


def lr_factor(it: int, train_cfg: dict, ipe: int) -> float:
    """Multiplier of the base lr at iteration `it` (0-based): linear warm-up x (step | cosine | constant)."""
    total = train_cfg["epochs"] * ipe
    kind = train_cfg["scheduler"]
    if kind == "step":
        epoch = it // ipe
        f = train_cfg["gamma"] ** sum(epoch >= s for s in train_cfg["steps"])
    elif kind == "cosine":
        f = 0.5 * (1.0 + math.cos(math.pi * min(it, total) / total))
    else:
        f = 1.0
    warm = train_cfg["warmup_iters"]
    if it < warm:
        alpha = it / warm
        f *= train_cfg["warmup_factor"] * (1 - alpha) + alpha
    return f


def make_optimizer(model: nn.Module, train_cfg: dict) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    lr = scaled_lr(train_cfg)
    if train_cfg["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=train_cfg["momentum"], weight_decay=train_cfg["weight_decay"])
    return torch.optim.AdamW(params, lr=lr, weight_decay=train_cfg["weight_decay"])


# ---- checkpoints --------------------------------------------------------------------------------------------
def _experiment(cfg: dict) -> dict:
    """The part of a config that defines the experiment (what a resumed run must share)."""
    return without_runtime_keys(cfg)


def _save(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _load(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BenchError("checkpoint not found", path) from None
    except Exception as exc:
        raise BenchError(f"cannot read checkpoint ({type(exc).__name__}: {exc})", path) from None


def _rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _seed_everything(seed: int, device: torch.device) -> None:
    torch.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)


# ---- logging ------------------------------------------------------------------------------------------------
_log = logging.getLogger("noisybox.train")
TRAIN_LOG = "train.log"


def _drop(record: logging.LogRecord) -> bool:
    return False


@contextmanager
def _train_log(path: Path | None):
    """Send `noisybox.train` records to `path` (the run's train.log) while the run trains; they still propagate, so
    the runner's cell.log handler sees them. `path` None (a process other than the main one): drop them."""
    level = _log.level
    if _log.getEffectiveLevel() > logging.INFO:
        _log.setLevel(logging.INFO)  # train.log gets every line whatever the root logger's level
    handler = None
    if path is None:
        _log.addFilter(_drop)
    else:
        handler = logging.FileHandler(path, mode="a", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        _log.addHandler(handler)
    try:
        yield
    finally:
        if handler is None:
            _log.removeFilter(_drop)
        else:
            _log.removeHandler(handler)
            handler.close()
        _log.setLevel(level)


def _call_hook(model: nn.Module, name: str, *args):
    fn = getattr(unwrap(model), name, None)
    return fn(*args) if callable(fn) else None


def _to_device(images, targets, device):
    images = [im.to(device, non_blocking=True) for im in images]
    targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
    return images, targets


# ---- training -----------------------------------------------------------------------------------------------
@dataclass
class _Run:
    """What a run trains with; built once (`_build`), then only read. The loop's state is `_Progress`."""

    adapter: Any
    train: Any
    cfg: dict
    workdir: Path
    dist: _Dist
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    images: DetectionImages
    order: TrainOrder
    num_images: int
    ipe: int
    use_amp: bool
    params: list  # what gradient clipping clips: the trainable parameters when the run starts
    categories: list[int]
    category_names: list
    ddp_model: nn.Module | None = None  # `model` under DDP, wrapped once the checkpoint is restored

    @property
    def tcfg(self) -> dict:
        return self.cfg["train"]

    @property
    def epochs(self) -> int:
        return self.tcfg["epochs"]

    @property
    def total_iters(self) -> int:
        return self.epochs * self.ipe


@dataclass
class _Progress:
    """The loop state a checkpoint carries: where the run stands, the epochs' history and training time."""

    start_epoch: int = 0
    iteration: int = 0
    history: list = field(default_factory=list)
    elapsed: float = 0.0
    resumed: bool = False
    mid_epoch: dict | None = None  # a checkpoint written inside `start_epoch`: restored once its loader exists


@dataclass
class _Epoch:
    """One epoch's loss sums so far and its clock (`before`: seconds spent in it before a resume)."""

    t0: float
    sums: dict = field(default_factory=dict)
    count: int = 0
    before: float = 0.0

    def seconds(self) -> float:
        return time.perf_counter() - self.t0 + self.before

    def add(self, names: list[str], values: list[float]) -> None:
        self.count += 1
        for name, v in zip(names, values):
            self.sums[name] = self.sums.get(name, 0.0) + v


def fit(adapter, train, cfg: dict, workdir: Path, *, resume: bool = True, diagnostics: Any = None,
        progress: bool = True) -> TrainResult:
    """Train `adapter`'s model on `train` (already the adapter's training view) into `workdir`."""
    workdir = Path(workdir)
    tcfg = cfg["train"]
    dist = _Dist(tcfg["device"])
    try:
        with torch.random.fork_rng(devices=[dist.device] if dist.device.type == "cuda" else []):
            return _fit(adapter, train, cfg, workdir, dist, resume, diagnostics, progress)
    finally:
        dist.close()


def _fit(adapter, train, cfg, workdir, dist: _Dist, resume, diagnostics, progress) -> TrainResult:
    """torchvision's `main`: open the workdir, build, restore, then epochs of `_train_one_epoch`, then `_finish`."""
    state = _open_workdir(workdir, cfg, train, dist, resume)
    run = _build(adapter, train, cfg, workdir, dist, diagnostics)
    loop = _restore(run, state)
    run.ddp_model = run.model
    if dist.enabled:
        run.ddp_model = nn.parallel.DistributedDataParallel(
            run.model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None,
            find_unused_parameters=bool(run.tcfg["find_unused_parameters"]))
    with _train_log(workdir / TRAIN_LOG if dist.main else None):
        _log_start(run, loop)
        scalars = bar = None
        if dist.main:  # a cell trains in STORE/cells/<id>/train: the cell id names its tracker run
            run_name = workdir.parent.name if workdir.name == "train" else workdir.name
            scalars = ScalarLog(workdir, run.tcfg["loggers"], loop.iteration if loop.resumed else None, run_name, cfg)
        if progress and dist.main and loop.iteration < run.total_iters:
            from tqdm import tqdm

            bar = tqdm(total=run.total_iters, initial=loop.iteration, desc=f"train {adapter.name}", unit="it",
                       file=sys.stderr, dynamic_ncols=True, leave=False)
        saver = _Checkpointer(workdir / CHECKPOINT, run.tcfg, dist.main)
        try:
            for epoch in range(loop.start_epoch, run.epochs):
                _train_one_epoch(run, loop, epoch, saver, bar, scalars)
        finally:
            if bar is not None:
                bar.close()
            if scalars is not None:
                scalars.close()
        return _finish(run, loop)


def _open_workdir(workdir: Path, cfg: dict, train, dist: _Dist, resume: bool) -> dict | None:
    """The checkpoint to resume from (checked to be this experiment's), or None; without `resume`, the outputs of
    an earlier run are removed first."""
    if dist.main:
        workdir.mkdir(parents=True, exist_ok=True)
    dist.barrier()
    ckpt_path = workdir / CHECKPOINT
    categories = sorted(c["id"] for c in train.categories)
    state = None
    if resume and ckpt_path.is_file():
        state = _load(ckpt_path)
        if dumps_json(_experiment(state["config"])) != dumps_json(_experiment(cfg)):
            raise BenchError("checkpoint was written with a different config; use another output directory "
                             "or train without resume", ckpt_path)
        if state.get("categories") != categories:
            raise BenchError("checkpoint was trained on different categories", ckpt_path)
    elif not resume and dist.main:
        for p in (ckpt_path, workdir / FINAL, workdir / TRAIN_LOG, workdir / "train_metrics.json",
                  workdir / "refined_boxes.json", workdir / CSV_NAME):
            p.unlink(missing_ok=True)
    dist.barrier()
    return state


def _build(adapter, train, cfg: dict, workdir: Path, dist: _Dist, diagnostics: Any) -> _Run:
    """Seeded model (+ `set_diagnostics`), optimizer, images, image order and lr schedule: a fresh run's start."""
    tcfg, device = cfg["train"], dist.device
    categories = sorted(c["id"] for c in train.categories)
    names = {c["id"]: c.get("name") for c in train.categories}
    labels = train.contiguous_labels()
    _seed_everything(tcfg["seed"], device)
    model = adapter.build_model(cfg, len(categories)).to(device)
    if diagnostics is not None:
        _call_hook(model, "set_diagnostics", diagnostics)
    optimizer = make_optimizer(model, tcfg)
    images = DetectionImages(train, labels, cache_images=bool(tcfg["cache_images"]),
                             clip_gt=bool(option(tcfg, "train", "clip_gt")))
    kept = images.with_boxes() if option(tcfg, "train", "filter_empty_gt") else None
    order = TrainOrder(len(train.images), tcfg["batch_size"], tcfg["data_seed"], tcfg["hflip"], tcfg["vflip"],
                       dist.rank, dist.world_size, indices=kept,
                       groups=aspect_groups(train) if option(tcfg, "train", "aspect_ratio_group") else None)
    ipe = iters_per_epoch(tcfg, order.pass_length)
    use_amp = bool(tcfg["amp"]) and device.type == "cuda"
    # a plain lambda: for a callable object LambdaLR.state_dict would store its __dict__ (a checkpoint change)
    return _Run(
        adapter=adapter, train=train, cfg=cfg, workdir=workdir, dist=dist, model=model, optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, tcfg, ipe)),
        scaler=torch.amp.GradScaler("cuda", enabled=use_amp), images=images, order=order,
        num_images=len(train.images) if kept is None else len(kept), ipe=ipe, use_amp=use_amp,
        params=[p for p in model.parameters() if p.requires_grad], categories=categories,
        category_names=[names[cid] for cid in categories])  # names saved so `predict` can tell ids of other classes


def _restore(run: _Run, state: dict | None) -> _Progress:
    """Model, optimizer, schedule, scaler and RNG as the checkpoint left them (a fresh run: other processes seed
    their own RNG); returns where the loop starts."""
    dist, device, seed = run.dist, run.dist.device, run.tcfg["seed"]
    if state is None:
        if dist.rank:
            _seed_everything(seed + dist.rank, device)  # different RoI sampling per process, as torchrun would
        return _Progress()
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    if state["scaler"]:  # empty when written without AMP (CPU, amp=false): a GPU run may resume it with AMP on
        run.scaler.load_state_dict(state["scaler"])
    loop = _Progress(state["epoch"], state["iteration"], list(state.get("history", [])),
                     float(state.get("elapsed", 0.0)), resumed=True,
                     mid_epoch=state if state.get("partial") is not None else None)
    if len(state["rng"]) == dist.world_size:
        _set_rng_state(state["rng"][dist.rank], device)
    else:  # a different number of processes: fresh, but still seeded, sampler randomness
        _seed_everything(seed + 7919 * (loop.start_epoch + 1) + dist.rank, device)
    return loop


def _restore_mid_epoch(run: _Run, loop: _Progress, epoch: _Epoch) -> None:
    """Resumed inside this epoch: the hooks' state as saved (not as `set_epoch` left it), the RNG state of that
    iteration and the epoch's loss sums so far."""
    state, loop.mid_epoch = loop.mid_epoch, None
    run.model.load_state_dict(state["model"])
    if len(state["rng"]) == run.dist.world_size:
        _set_rng_state(state["rng"][run.dist.rank], run.dist.device)
    so_far = state["partial"]
    epoch.sums, epoch.count, epoch.before = dict(so_far["sums"]), int(so_far["count"]), float(so_far["seconds"])


def _log_start(run: _Run, loop: _Progress) -> None:
    tcfg, dist = run.tcfg, run.dist
    if loop.resumed:
        _log.info(f"resume from epoch {loop.start_epoch} (iteration {loop.iteration}) world_size={dist.world_size}")
        return
    _log.info(f"start method={run.adapter.name} images={run.num_images} epochs={run.epochs} iters/epoch={run.ipe} "
              f"batch={tcfg['batch_size']} lr={scaled_lr(tcfg):g} seed={tcfg['seed']} data_seed={tcfg['data_seed']} "
              f"device={dist.device} world_size={dist.world_size} amp={run.use_amp} skipped={run.images.skipped}")
    _log.info(f"config {dumps_json(run.cfg).decode()}")


def _train_one_epoch(run: _Run, loop: _Progress, epoch: int, saver: _Checkpointer, bar, scalars) -> None:
    """torchvision's `train_one_epoch`: a loader from where the run stands, one `_train_step` per batch with its log
    line, scalars row and time-based checkpoint; the epoch's history entry and end-of-epoch checkpoint."""
    _call_hook(run.model, "set_epoch", epoch, run.epochs)
    sums = _Epoch(time.perf_counter())
    run.ddp_model.train()
    loader = torch.utils.data.DataLoader(  # from `iteration`: epoch * ipe, or where a checkpoint left off
        run.images, batch_sampler=IterationBatches(run.order, loop.iteration, (epoch + 1) * run.ipe),
        collate_fn=collate, num_workers=run.tcfg["workers"], pin_memory=run.dist.device.type == "cuda")
    batches = iter(loader)  # draws its base seed from the global RNG, as it did before the checkpoint
    if loop.mid_epoch is not None:
        _restore_mid_epoch(run, loop, sums)
    for ims, targets in batches:
        ims, targets = _to_device(ims, targets, run.dist.device)
        names, values, save_now = _train_step(run, ims, targets, loop.iteration, epoch, saver)
        loop.iteration += 1
        sums.add(names, values)
        _log_iteration(run, loop, epoch, sums, names, values, bar, scalars)
        if save_now and loop.iteration < (epoch + 1) * run.ipe:  # the epoch's end saves anyway
            saver.save(run, loop, epoch, {"sums": sums.sums, "count": sums.count, "seconds": sums.seconds()})
    seconds = sums.seconds()
    loop.elapsed += seconds
    loop.history.append({"epoch": epoch + 1, "iteration": loop.iteration, "seconds": round(seconds, 3),
                         **{k: round(v / max(sums.count, 1), 5) for k, v in sums.sums.items()}})
    _log.info(f"epoch {epoch + 1}/{run.epochs} done in {seconds:.1f}s "
              f"mean loss={sums.sums.get('loss', 0.0) / max(sums.count, 1):.4f}")
    if saver.at_epoch_end(epoch, run.epochs):
        saver.save(run, loop, epoch + 1, None)


def _train_step(run: _Run, ims, targets, iteration: int, epoch: int, saver: _Checkpointer):
    """One optimizer step: forward (CUDA AMP), losses averaged over processes with the non-finite guard, backward,
    gradient clipping, optimizer, scaler and lr schedule. Returns the loss names, their averaged values, and whether
    every process checkpoints after this step (the main process's clock asks; the flag rides on the reduction)."""
    dist, tcfg = run.dist, run.tcfg
    with torch.autocast("cuda") if run.use_amp else nullcontext():
        loss_dict = run.ddp_model(ims, targets)
    loss = sum(loss_dict.values())
    values = torch.stack([loss.detach().float()] + [v.detach().float() for v in loss_dict.values()])
    finite = torch.isfinite(values).all().float().reshape(1)
    reduced = dist.all_reduce_mean(torch.cat([values, finite, finite.new_tensor([float(saver.due())])]))
    save_now = bool(reduced[-1] > 0)
    reduced = reduced[:-1]
    if reduced[-1] < 1.0 or not torch.isfinite(reduced).all():
        _raise_nonfinite(dist, iteration, epoch, loss_dict, targets)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if tcfg["grad_clip"]:
        run.scaler.unscale_(run.optimizer)
        norm = nn.utils.clip_grad_norm_(run.params, tcfg["grad_clip"])
        if not run.use_amp and not torch.isfinite(norm):  # with AMP the scaler skips such a step
            _raise_nonfinite(dist, iteration, epoch, loss_dict, targets, "gradient")
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    return ["loss"] + list(loss_dict), reduced[:-1].tolist(), save_now


def _log_iteration(run: _Run, loop: _Progress, epoch: int, sums: _Epoch, names, values, bar, scalars) -> None:
    """The progress bar every step; every `log_every` steps (and the last) a train.log line and a scalars row."""
    lr = run.optimizer.param_groups[0]["lr"]
    if bar is not None:
        bar.update(1)
        bar.set_postfix(loss=f"{values[0]:.3f}", lr=f"{lr:.2e}", epoch=f"{epoch + 1}/{run.epochs}", refresh=False)
    if loop.iteration % run.tcfg["log_every"] and loop.iteration != run.total_iters:
        return
    parts = " ".join(f"{k}={v:.4f}" for k, v in zip(names, values))
    _log.info(f"epoch {epoch + 1}/{run.epochs} iter {loop.iteration}/{run.total_iters} lr={lr:.3e} {parts}")
    if scalars is not None:
        scalars.log({"iteration": loop.iteration, "epoch": round(loop.iteration / run.ipe, 4), "lr": lr,
                     "seconds": round(loop.elapsed + time.perf_counter() - sums.t0 + sums.before, 3),
                     **dict(zip(names, values)), **_numeric(_call_hook(run.model, "diagnostics"))})


class _Checkpointer:
    """When and what to save: the rolling checkpoint after every `checkpoint_every` epochs and the last one, and
    inside an epoch once `checkpoint_minutes` have passed since the last save (the main process's clock); written
    atomically by the main process once every process has sent its RNG state."""

    def __init__(self, path: Path, tcfg: dict, main: bool):
        self.path, self.main = path, main
        self.every_epochs = tcfg["checkpoint_every"]
        self.every_s = 60.0 * float(tcfg["checkpoint_minutes"])
        self.last = time.perf_counter()

    def due(self) -> bool:
        return self.main and self.every_s > 0 and time.perf_counter() - self.last >= self.every_s

    def at_epoch_end(self, epoch: int, epochs: int) -> bool:
        return (epoch + 1) % self.every_epochs == 0 or epoch + 1 == epochs

    def save(self, run: _Run, loop: _Progress, epochs_done: int, epoch_so_far: dict | None) -> None:
        """`epoch_so_far`: the loss sums of the epoch under way (a mid-epoch checkpoint), None at an epoch's end."""
        rng = run.dist.all_gather(_rng_state(run.dist.device))
        if run.dist.main:
            _save(self.path, {
                "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
                "scheduler": run.scheduler.state_dict(), "scaler": run.scaler.state_dict(),
                "epoch": epochs_done, "iteration": loop.iteration, "rng": rng, "config": run.cfg,
                "categories": run.categories, "category_names": run.category_names, "method": run.adapter.name,
                "history": loop.history, "elapsed": loop.elapsed, "partial": epoch_so_far,
            })
        run.dist.barrier()
        if epoch_so_far is not None:
            _log.info(f"checkpoint at iteration {loop.iteration} (epoch {epochs_done + 1}/{run.epochs} under way)")
        self.last = time.perf_counter()


def _finish(run: _Run, loop: _Progress) -> TrainResult:
    """End of training: the `refined_boxes` and `diagnostics` hooks (gathered from every process), then on the main
    process the final weights, refined_boxes.json and train_metrics.json."""
    dist, tcfg, final_path = run.dist, run.tcfg, run.workdir / FINAL
    refined_parts = dist.all_gather(_call_hook(run.model, "refined_boxes"))
    diag_parts = dist.all_gather(_call_hook(run.model, "diagnostics"))
    refined_path, metrics = None, {}
    if dist.main:
        _save(final_path, {"model": run.model.state_dict(), "config": run.cfg, "categories": run.categories,
                           "category_names": run.category_names, "method": run.adapter.name})
        if any(p is not None for p in refined_parts):
            merged = {}
            for part in refined_parts:
                merged.update({int(k): v for k, v in (part or {}).items()})
            refined_path = run.workdir / "refined_boxes.json"
            write_json(refined_path, refined_annotations(run.train, merged))
        metrics = {
            "method": run.adapter.name, "images": run.num_images, "epochs": run.epochs, "iters_per_epoch": run.ipe,
            "iterations": loop.iteration, "batch_size": tcfg["batch_size"], "lr": scaled_lr(tcfg),
            "seed": tcfg["seed"], "data_seed": tcfg["data_seed"], "world_size": dist.world_size,
            "device": str(dist.device), "amp": run.use_amp, "train_seconds": round(loop.elapsed, 3),
            "seconds_per_iter": round(loop.elapsed / max(loop.iteration, 1), 4),
            "skipped_annotations": run.images.skipped,
            "final_loss": loop.history[-1].get("loss") if loop.history else None, "history": loop.history,
        }
        metrics.update(_merge_diagnostics(diag_parts, metrics))
        write_json(run.workdir / "train_metrics.json", metrics, indent=True)
        _log.info(f"done: {loop.iteration} iterations in {loop.elapsed:.1f}s")
    dist.barrier()
    return TrainResult(checkpoint=final_path, metrics=metrics, refined_boxes=refined_path)


def _numeric(diag: dict | None) -> dict[str, float]:
    return {k: float(v) for k, v in (diag or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _merge_diagnostics(parts: list, metrics: dict) -> dict:
    """Average each numeric diagnostic over processes; names clashing with engine metrics get a `diag_` prefix."""
    parts = [p for p in parts if p]
    out: dict[str, Any] = {}
    for key in parts[0] if parts else {}:
        vals = [p[key] for p in parts if key in p]
        name = f"diag_{key}" if key in metrics else key
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            out[name] = sum(vals) / len(vals)
        else:
            out[name] = vals[0]
    return out


def _raise_nonfinite(dist: _Dist, iteration: int, epoch: int, loss_dict: dict, targets: list[dict],
                     kind: str = "loss"):
    """`kind` "loss", or "gradient": finite losses whose gradient is not (it would make every weight NaN)."""
    ids = [int(t["image_id"]) for t in targets]
    all_ids = sorted(i for part in dist.all_gather(ids) for i in part)
    if kind == "gradient":
        what = "finite losses " + ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in loss_dict.items())
    else:
        bad = {k: float(v.detach()) for k, v in loss_dict.items() if not math.isfinite(float(v.detach()))}
        what = ", ".join(f"{k}={v}" for k, v in bad.items()) or "on another process"
    raise BenchError(f"non-finite {kind} at iteration {iteration + 1} (epoch {epoch + 1}): {what}; "
                     f"batch image ids: {all_ids}")


def refined_annotations(train, refined: dict[int, list[float]]) -> list[dict]:
    """Training annotations with their refined box: [{id, image_id, category_id, bbox (xywh)}]."""
    out = []
    for a in train.annotations:
        box = refined.get(int(a["id"]))
        if box is None:
            continue
        x1, y1, x2, y2 = (float(v) for v in box)
        out.append({"id": a["id"], "image_id": a["image_id"], "category_id": a["category_id"],
                    "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)]})
    return out


# ---- prediction ---------------------------------------------------------------------------------------------
# where a run directory keeps its weights: `fit`'s workdir, `bench train --out` and a results-store cell (`train/`),
# and ssd_det+retrain's re-trained detector (`retrain/`) before its first stage
CHECKPOINT_DIRS = (".", "train", "retrain", "train/retrain")


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the newest weights in a run directory: `model_final.pth`, else the rolling
    `checkpoint.pth`, in the directory itself or in the subfolders runs write (`CHECKPOINT_DIRS`)."""
    path = Path(path)
    if not path.is_dir():
        return path
    for sub in CHECKPOINT_DIRS:
        for name in (FINAL, CHECKPOINT):
            if (path / sub / name).is_file():
                return path / sub / name
    tried = ", ".join(f"{sub}/{{{FINAL},{CHECKPOINT}}}" if sub != "." else f"{{{FINAL},{CHECKPOINT}}}"
                      for sub in CHECKPOINT_DIRS)
    raise BenchError(f"no checkpoint in this directory (looked for {tried})", path)


def load_model(adapter, checkpoint: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Model + checkpoint dict from `model_final.pth` or a rolling `checkpoint.pth` (or a run directory holding
    one, see `find_checkpoint`)."""
    checkpoint = find_checkpoint(checkpoint)
    state = _load(checkpoint)
    if not isinstance(state, dict) or "model" not in state or "config" not in state or "categories" not in state:
        raise BenchError("not a noisybox-bench checkpoint (needs model, config and categories)", checkpoint)
    cfg = dict(state["config"])
    cfg["model"] = {**cfg["model"], "weights": None, "pretrained": False}  # the checkpoint holds every weight
    model = adapter.build_model(cfg, len(state["categories"]))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise BenchError(f"weights do not fit method {adapter.name!r} ({str(exc).splitlines()[0]})", checkpoint) from None
    return model.to(device).eval(), state


def _check_category_names(state: dict, dataset, checkpoint: Path, shown: int = 3) -> None:
    """Same ids must mean the same classes: a dataset numbering its classes differently would be predicted and
    scored without any error, every box under another class's id. Checkpoints saved before names were stored
    (no `category_names`) and unnamed categories are not checked. Names compare without case / outer spaces."""
    names = state.get("category_names")
    if not isinstance(names, list) or len(names) != len(state["categories"]):
        return
    model = dict(zip(state["categories"], names))
    bad = [(c["id"], model[c["id"]], c["name"]) for c in sorted(dataset.categories, key=lambda c: c["id"])
           if isinstance(model.get(c["id"]), str) and isinstance(c.get("name"), str)
           and model[c["id"]].strip().casefold() != c["name"].strip().casefold()]
    if bad:
        listed = "; ".join(f"{cid}: model {m!r} vs dataset {d!r}" for cid, m, d in bad[:shown])
        listed += "; ..." if len(bad) > shown else ""
        known = ", ".join(f"{cid} {n}" for cid, n in list(model.items())[:10]) + (", ..." if len(model) > 10 else "")
        raise BenchError(f"{len(bad)} category ids name other classes in the dataset than in the model ({listed}); "
                         f"remap the dataset's category ids to the model's (model: {known})", checkpoint)


@torch.no_grad()
def predict(adapter, checkpoint: Path, dataset, cfg: dict | None = None, progress: bool = True,
            batch_size: int = 8) -> list[dict]:
    """COCO results `[{image_id, category_id, bbox: [x, y, w, h], score}]` for every image of `dataset`.

    The model is rebuilt from the checkpoint's own config; `cfg` may only choose the device and loader workers.
    The dataset's category ids must be the model's, naming the same classes (`_check_category_names`)."""
    runtime = (cfg or {}).get("train", {})
    device = select_device(runtime.get("device", "auto"), "device", int(os.environ.get("LOCAL_RANK", "0")))
    model, state = load_model(adapter, checkpoint, device)
    categories = state["categories"]
    _check_category_names(state, dataset, checkpoint)
    unknown = {c["id"] for c in dataset.categories} - set(categories)
    if unknown:
        raise BenchError(f"the dataset has category ids {sorted(unknown)} the model was not trained on "
                         f"(model: {categories})", checkpoint)
    labels = {cid: i + 1 for i, cid in enumerate(categories)}
    images = DetectionImages(dataset.replace_annotations([]), labels)
    loader = torch.utils.data.DataLoader(images, batch_size=batch_size, collate_fn=collate,
                                         num_workers=runtime.get("workers", 0))
    use_amp = device.type == "cuda" and bool(runtime.get("amp", True))
    results: list[dict] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(images), desc=f"predict {adapter.name}", unit="img", file=sys.stderr, leave=False)
    for ims, targets in loader:
        ims = [im.to(device) for im in ims]
        with torch.autocast("cuda") if use_amp else nullcontext():
            outputs = model(ims)
        for out, t in zip(outputs, targets):
            boxes = xyxy_to_xywh(out["boxes"].float().cpu())
            for box, label, score in zip(boxes.tolist(), out["labels"].tolist(), out["scores"].float().tolist()):
                results.append({"image_id": int(t["image_id"]), "category_id": categories[int(label) - 1],
                                "bbox": [round(v, 2) for v in box], "score": round(score, 5)})
        if bar is not None:
            bar.update(len(ims))
    if bar is not None:
        bar.close()
    return results
