"""Grid expansion: the command-line lists (`--method a,b --noise 0.1..0.4 --seeds 3`) -> one `CellSpec` per run.

Pure and torch-free. A spec is still *unresolved*: `benchmark.runner.cells.resolve` turns it into the full config whose
hash names the cell. Noise level 0 means the clean training set, whatever the noise model, so every level-0 cell of
a method and seed is the same cell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from benchmark.errors import BenchError
from noise.spec import CLEAN, NoiseSpec, default_seed

BASELINE_METHODS = ("faster_rcnn",)  # run at every noise level of the sweep
ORACLE_METHOD = "clean"  # trained on the clean boxes, once per seed and dataset (noise level 0)
ORACLE_METHODS = (ORACLE_METHOD, "retinanet_clean")  # every oracle: one level-0 cell whatever --noise says


@dataclass(frozen=True)
class CellSpec:
    """One run of the grid before its config is resolved. `noise`: the cell's noise setting, checked when the grid
    was expanded (`NoiseSpec.parse`), at the cell's level and noise seed."""

    method: str
    dataset: str
    noise: NoiseSpec
    seed: int
    profile: str | None = None  # None: chosen per dataset by `cells.resolve`
    overrides: dict = field(default_factory=dict, hash=False)
    role: str = "method"  # "method", "baseline" or "oracle" (display only, not part of the identity)

    @property
    def is_clean(self) -> bool:
        return self.noise.is_clean

    def label(self) -> str:
        return f"{self.method} {self.noise.label()} seed={self.seed} ({self.dataset})"


def _items(text: str, what: str) -> list[str]:
    parts = [p.strip() for p in str(text).split(",")]
    parts = [p for p in parts if p]
    if not parts:
        raise BenchError(f"{what}: empty list")
    return parts


def normalise_level(level: float) -> float:
    """Levels are compared and hashed after rounding, so 0.1+0.2 and 0.3 are the same level."""
    return round(float(level), 6) + 0.0


def parse_levels(text: str) -> list[float]:
    """`0.1..0.4`, `0..0.4:0.2`, `0,0.2,0.4` or a mix (the syntax of `noise.parse_levels`), sorted and unique."""
    from noise.levels import parse_levels as noise_levels

    levels = sorted({normalise_level(v) for v in noise_levels(text)})
    if any(v < 0 for v in levels):
        raise BenchError(f"--noise: noise levels must be >= 0, got {levels[0]:g}")
    return levels


MAX_SEEDS = 10_000  # seeds in one sweep: far more than any paper runs; a bigger count is a typo, not a plan
MAX_SEED = 2**32 - 1  # the largest seed every generator the suite seeds (numpy, torch, CUDA) takes as given


def _too_many(n: int, what: str) -> None:
    if n > MAX_SEEDS:
        raise BenchError(f"--seeds: {what} gives {n} seeds; at most {MAX_SEEDS} in one sweep")


def parse_seeds(text: str) -> list[int]:
    """`3` -> seeds 0, 1, 2; `0,1,2` or `5,` -> those seeds; `2..4` -> 2, 3, 4. Counts and ranges are checked
    against `MAX_SEEDS` before a list is built (`--seeds 10000000000` would run out of memory building it)."""
    text = str(text).strip()
    try:
        if text.isdigit():
            n = int(text)
            if n < 1:  # "--seeds 0" usually means seed 0, but a lone number is a count
                raise BenchError("--seeds 0: a single number is a count of seeds (3 -> 0, 1, 2); for seed 0 alone "
                                 "write --seeds 1 or --seeds 0,")
            _too_many(n, f"the count {n}")
            return list(range(n))
        seeds: list[int] = []
        for part in _items(text, "--seeds"):
            if ".." in part:
                lo, hi = (int(p) for p in part.split("..", 1))
                if hi < lo:
                    raise BenchError(f"--seeds: range {part!r} goes backwards (write {hi}..{lo})")
                _too_many(len(seeds) + hi - lo + 1, f"the range {part}")
                seeds += list(range(lo, hi + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise BenchError(f"--seeds: expected a count (3), a list (0,1,2) or a range (0..2), got {text!r}") from None
    if any(s < 0 for s in seeds):
        raise BenchError("--seeds: seeds must be non-negative")
    if max(seeds, default=0) > MAX_SEED:
        raise BenchError(f"--seeds: seed {max(seeds)} is too large (at most {MAX_SEED}: 32-bit seeds, which every "
                         "generator the suite seeds accepts)")
    _too_many(len(seeds), "the list")
    if not seeds:
        raise BenchError("--seeds: need at least one seed (e.g. --seeds 3 or --seeds 0,1,2)")
    return sorted(set(seeds))


def parse_methods(text: str) -> list[str]:
    """`faster_rcnn,oa_mil,ssd_det` -> names in the given order, duplicates dropped."""
    return list(dict.fromkeys(_items(text, "--method")))


def expand_grid(methods: list[str], levels: list[float], seeds: list[int], datasets: list[str] = ("shapes",), *,
                noise_model: str = "uniform", noise_params: dict | None = None, noise_seed: int | str | None = None,
                noise_rng: str = "numpy", profile: str | None = None, overrides: dict | None = None,
                baselines: bool = True) -> list[CellSpec]:
    """Every (dataset, seed, level, method) cell, plus the reference rows unless `baselines=False`.

    References: `faster_rcnn` at every level of the sweep and the `clean` oracle once per seed and dataset (level 0).
    `noise_seed` is a fixed integer (the same noisy file for every training seed, as the papers do), `"seed"`
    (the training seed, so seed spread includes the noise draw) or None: 0, or OA-MIL's 45 with `oamil-legacy`.
    `overrides` maps config keys to values for all
    methods; `{"ssd_det": {...}}` entries apply to one method only.
    """
    if not methods:
        raise BenchError("--method: at least one method is needed")
    if not levels:
        raise BenchError("--noise: at least one noise level is needed")
    if noise_seed is None:
        noise_seed = default_seed(noise_rng)
    if noise_seed != "seed" and not (isinstance(noise_seed, int) and noise_seed >= 0):
        raise BenchError(f"--noise-seed must be a non-negative integer or 'seed', got {noise_seed!r}")
    overrides = dict(overrides or {})
    levels = sorted({normalise_level(v) for v in levels})
    noisy = [lv for lv in levels if lv > 0]
    # the one place the sweep's noise is parsed and checked: a typo fails the command, not every cell of the sweep
    noise = NoiseSpec.parse(noise_model, noise_params, rng=noise_rng, seed=0 if noise_seed == "seed" else noise_seed,
                            levels=noisy) if noisy else CLEAN
    plan: list[tuple[str, float, str]] = []  # (method, level, role)
    if baselines:
        plan.append((ORACLE_METHOD, 0.0, "oracle"))
        plan += [(m, lv, "baseline") for lv in levels for m in BASELINE_METHODS]
    # the oracle trains on the clean boxes whatever the level: one cell (level 0) per seed and dataset
    plan += [(m, 0.0 if m in ORACLE_METHODS else lv, "method") for lv in levels for m in methods]
    _check_scoped(overrides, {m for m, _, _ in plan})

    out: list[CellSpec] = []
    seen: set[tuple] = set()
    for ds in datasets:
        for seed in seeds:
            for method, level, role in sorted(plan, key=lambda p: (p[1], p[2] != "oracle", p[2] != "baseline")):
                key = (ds, seed, method, level)
                if key in seen:
                    continue
                seen.add(key)
                out.append(CellSpec(
                    method=method, dataset=ds, noise=noise.at(level, seed if noise_seed == "seed" else None),
                    seed=seed, profile=profile, overrides=_overrides_for(method, overrides), role=role,
                ))
    return out


_SECTIONS = ("model", "train", "method")  # config sections: an override keyed by one of them is global


def _check_scoped(overrides: dict[str, Any], methods: set[str]) -> None:
    """`--set NAME:KEY=V` for no method of the sweep (a typo such as `ssd-det:`, or a method left out) would be
    dropped without a word, and the cells would run an experiment other than the one asked for."""
    for name, value in overrides.items():
        if _is_scope(name, value) and name not in methods:
            raise BenchError(f"--set {name}:...: {name!r} is not a method of this sweep (its methods: "
                             f"{', '.join(sorted(methods))})")


def _overrides_for(method: str, overrides: dict[str, Any]) -> dict:
    """Global `section.key` overrides plus the ones scoped to `method` (scoped win)."""
    glob = {k: v for k, v in overrides.items() if not _is_scope(k, v)}
    scoped = overrides.get(method, {}) if _is_scope(method, overrides.get(method)) else {}
    return {**glob, **scoped}


def _is_scope(name: str, value: Any) -> bool:
    """A method's own overrides (`{"ssd_det": {...}}`): a dict under a dotless name that is no config section.
    `section.key` always has a dot, so `--set model.extra={...}` stays a global value, whatever its type."""
    return isinstance(value, dict) and "." not in name and name not in _SECTIONS


def parse_set_options(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """`--set train.lr=0.01 --set ssd_det:method.alpha=2` -> {"train.lr": 0.01, "ssd_det": {"method.alpha": 2}}."""
    from benchmark.config import parse_overrides

    out: dict[str, Any] = {}
    for item in items:
        key = item.partition("=")[0]
        if ":" in key:
            method, _, rest = item.partition(":")
            out.setdefault(method.strip(), {}).update(parse_overrides([rest]))
        else:
            out.update(parse_overrides([item]))
    return out
