"""The noise-model registry: one function per model, registered by name with its level range and kind.

A model is a pure function `fn(boxes: BoxSet, level, rng, **params) -> BoxSet` (imagecorruptions style): it reads
the current boxes and returns a new `BoxSet`; it never touches the dataset's dicts and never uses global RNG state.
Third-party packages add models under the entry-point group `noisybox_bench.noise`, pointing at a `NoiseModel`
(or a plain function, which gets the default level range [0, 1)).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmark.errors import BenchError
from benchmark.registry import Registry

KINDS = ("geometry", "label", "mixed")


@dataclass(frozen=True)
class NoiseModel:
    """A registered noise model: the function plus what the CLI, the validator and calibration need to know."""

    name: str
    fn: Callable[..., Any]
    kind: str = "geometry"  # geometry: moves boxes; label: drops/adds/relabels; mixed: both
    max_level: float = 1.0
    max_inclusive: bool = False
    legacy: bool = False  # supports rng="oamil-legacy"
    summary: str = ""
    steps: tuple = field(default=(), compare=False)  # set by `compose`
    file_params: tuple = ()  # parameters that may name a file (its content, not its path, is the experiment)

    @property
    def param_names(self) -> list[str]:
        params = list(inspect.signature(self.fn).parameters.values())[3:]
        return [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]

    def defaults(self) -> dict[str, Any]:
        """Default parameter values; a composition's as `step.key`, the form `model_from_spec` takes."""
        if self.steps:
            return {f"{s['model']}.{k}": v for s in self.steps for k, v in get_model(s["model"]).defaults().items()}
        params = list(inspect.signature(self.fn).parameters.values())[3:]
        return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}

    def level_range(self) -> str:
        return f"[0, {self.max_level:g}{']' if self.max_inclusive else ')'}"

    def check_level(self, level: Any) -> float:
        try:
            value = float(level)
        except (TypeError, ValueError):
            raise BenchError(f"noise level {level!r} for model {self.name!r} is not a number") from None
        ok = math.isfinite(value) and value >= 0 and (value <= self.max_level if self.max_inclusive
                                                      else value < self.max_level)
        if not ok:
            raise BenchError(f"noise level {level!r} for model {self.name!r} must be in {self.level_range()}")
        return value

    def check_params(self, params: dict[str, Any]) -> None:
        known = self.param_names
        for key in params:
            if key not in known:
                hint = f" (known: {', '.join(known)})" if known else " (it takes none)"
                raise BenchError(f"noise model {self.name!r} has no parameter {key!r}{hint}")


def _as_model(name: str, obj: Any) -> NoiseModel:
    if isinstance(obj, NoiseModel):
        return obj
    if callable(obj):
        return NoiseModel(name=name, fn=obj, summary=_first_line(obj.__doc__))
    raise BenchError(f"noise model plugin {name!r} is neither a NoiseModel nor a function")


def _first_line(doc: str | None) -> str:
    """The docstring's first paragraph (its one-line why), joined across wrapped lines."""
    return " ".join(line.strip() for line in (doc or "").strip().split("\n\n")[0].splitlines())


NOISE_MODELS: Registry[NoiseModel] = Registry(
    "noise model",
    entry_point_group="noisybox_bench.noise",
    builtin_modules=("noise.geometric", "noise.imported", "noise.labels", "noise.una"),
)


def noise_model(name: str, kind: str = "geometry", max_level: float = 1.0, max_inclusive: bool = False,
                legacy: bool = False, file_params: tuple = ()) -> Callable[[Callable], Callable]:
    """Decorator registering `fn` as built-in noise model `name`; the docstring's first line is its one-line why.
    `file_params`: parameters whose string value is a path to a file the model reads."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")

    def deco(fn: Callable) -> Callable:
        NOISE_MODELS.add(name, NoiseModel(name, fn, kind, max_level, max_inclusive, legacy, _first_line(fn.__doc__),
                                          file_params=tuple(file_params)))
        return fn

    return deco


def get_model(model: str | NoiseModel) -> NoiseModel:
    """A model by name (or pass a `NoiseModel`, e.g. from `compose`, straight through)."""
    if isinstance(model, NoiseModel):
        return model
    if not isinstance(model, str):
        raise BenchError(f"noise model must be a name or a NoiseModel, got {type(model).__name__}")
    return _as_model(model, NOISE_MODELS.get(model))
