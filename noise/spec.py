"""One noise setting as a sweep gives it: model (a name or a composition such as `uniform+missing@0.1`), level,
parameters, seed and rng mode, parsed and checked once against the registry (`NoiseSpec.parse`).

The runner carries it from the grid to the cell: `identity()` is what a cell's config.json records (the model's
defaults filled in, a parameter naming a file held as the file's sha256) plus what its locator records (the
absolute paths of those files, the model's defaults); `from_config` reads that back when the cell runs, and
`make` draws the noisy set. Readers of a results store read the recorded defaults and never import this package.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmark.errors import BenchError

CLEAN_MODEL = "none"  # the model recorded for level-0 (clean) cells: the clean training set, whatever was asked


def default_seed(rng: str) -> int:
    """The noise seed when none is given: OA-MIL's published 45 with `oamil-legacy` (their files), else 0."""
    from noise.legacy import LEGACY_SEED
    from noise.make import DEFAULT_SEED

    return LEGACY_SEED if rng == "oamil-legacy" else DEFAULT_SEED


def _with_defaults(defaults: dict, given: dict) -> dict:
    """The model's defaults filled in and whole numbers given for float defaults as floats: `bias` with no
    parameter, `direction=grow` and `dx=0` are one experiment, so one cell."""
    out = {**defaults, **given}
    for key, default in defaults.items():
        value = out[key]
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            out[key] = float(value)
    return out


@dataclass(frozen=True)
class NoiseSpec:
    """A noise setting: `params` as given (`{key: v}` for one model, `{"step.key": v}` for a composition).

    Build one with `parse` (checked) or `from_config` (a planned cell's record); the plain constructor trusts its
    arguments. Level 0 is the clean training set (`CLEAN`), whatever model was asked for."""

    model: str = CLEAN_MODEL
    level: float = 0.0
    params: dict = field(default_factory=dict, hash=False)
    seed: int = 0
    rng: str = "numpy"

    @classmethod
    def parse(cls, model: str, params: dict | None = None, *, rng: str = "numpy", seed: int | None = None,
              levels=(), level: float = 0.0) -> NoiseSpec:
        """The setting, checked as `make_noisy` will check it (model or composition, parameter names, rng mode,
        every level of `levels` and `level`), before any data is loaded or any cell starts; seed None: the
        default (`default_seed`)."""
        from noise.make import check_levels, model_from_spec

        params = dict(params or {})
        check_levels(*model_from_spec(model, params), rng, [lv for lv in (*levels, level) if lv])
        return cls(model, level, params, default_seed(rng) if seed is None else seed, rng)

    @property
    def is_clean(self) -> bool:
        return self.level == 0

    def at(self, level: float, seed: int | None = None) -> NoiseSpec:
        """This setting at one level (and noise seed) of a sweep; level 0 is `CLEAN`."""
        if level == 0:
            return CLEAN
        return replace(self, level=level, params=dict(self.params), seed=self.seed if seed is None else seed)

    def label(self) -> str:
        return "clean" if self.is_clean else f"{self.model}={self.level:g}"

    # ---- the noise model ----------------------------------------------------------------------------------------
    def _resolved(self) -> tuple[Any, dict]:
        """(NoiseModel, keyword parameters for its function): a composition carries its steps' parameters."""
        from noise.make import model_from_spec
        from noise.registry import get_model

        model, params = model_from_spec(self.model, self.params)
        return get_model(model), params

    def defaults(self) -> dict:
        """The model's default parameters (a composition's as `step.key`)."""
        return self._resolved()[0].defaults()

    def identity(self) -> tuple[dict, dict]:
        """(config.json's `noise`, what the cell's locator records about it).

        The identity's parameters have the model's defaults filled in (`_with_defaults`). A parameter naming a file
        (the model's `file_params`, e.g. `imported`'s `file`, or `imported.file` in a composition) is held as the
        file's sha256, not the path as typed: an edited file is a new cell, the same file reached by another path
        the same one; its absolute path goes to the locator (`noise_files`), as do the model's defaults
        (`noise_defaults`, so the table's labels need no noise registry). A named file that does not exist fails
        here, before any cell starts."""
        from benchmark.io import sha256_file

        params, locator = dict(self.params), {}
        if not self.is_clean:
            model = self._resolved()[0]
            model.check_level(self.level)  # a spec built without `parse` (the API) gets the same check
            defaults = model.defaults()
            params, files = _with_defaults(defaults, params), {}
            for key in model.file_params:
                value = params.get(key)
                if not isinstance(value, str) or not value:
                    continue
                path = Path(value).expanduser().resolve()
                if not path.is_file():
                    raise BenchError(f"--noise-param {key}={value}: file not found", path)
                params[key], files[key] = f"sha256:{sha256_file(path)}", str(path)
            locator["noise_defaults"] = defaults
            if files:
                locator["noise_files"] = files
        noise = {"model": self.model, "level": self.level, "params": params, "seed": self.seed, "rng": self.rng}
        return noise, locator

    @classmethod
    def from_config(cls, noise: dict, locator: dict | None = None) -> NoiseSpec:
        """The setting a planned cell runs with (its config's `noise` and `locator`): files named by a parameter come
        from the locator, checked to hold the content the identity records."""
        from benchmark.io import sha256_file

        params = dict(noise["params"])
        for key, path in ((locator or {}).get("noise_files") or {}).items():
            want = params.get(key)
            got = f"sha256:{sha256_file(path)}" if Path(path).is_file() else None
            if got != want:
                what = "is gone" if got is None else "changed since the sweep was planned"
                raise BenchError(f"noise parameter {key}: the file {what}; rerun `bench run` to plan it again", path)
            params[key] = path
        return cls(noise["model"], noise["level"], params, noise["seed"], noise["rng"])

    # ---- drawing --------------------------------------------------------------------------------------------------
    def make(self, dataset, **kwargs):
        """`make_noisy` of `dataset` with this setting (`kwargs`: its layout / source_sha256)."""
        from noise.make import make_noisy

        model, params = self._resolved()
        return make_noisy(dataset, model, self.level, self.seed, rng=self.rng, **kwargs, **params)

    def try_on(self, dataset) -> None:
        """`noise.make.try_levels` at this level: bad parameter values fail on a few images, not in every cell."""
        from noise.make import try_levels

        model, params = self._resolved()
        try_levels(dataset, model, [self.level], seed=self.seed, rng=self.rng, **params)


CLEAN = NoiseSpec()
