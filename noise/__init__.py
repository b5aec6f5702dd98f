"""Box-noise models for training sets: exact (OA-MIL's protocol, bit for bit in `oamil-legacy` mode), seeded,
recorded in a manifest, and fast (vectorised over all boxes at once). See `noise/README.md`.

    from noise import make_noisy, write_noisy
    result = make_noisy(train_split, "uniform", 0.4, seed=0)
    write_noisy(result, "out/uniform-r0.4")

This package imports no torch and no detector code.
"""

from noise.levels import parse_levels
from noise.make import (
                        NoisyResult,
                        calibrate,
                        compose,
                        iter_noisy,
                        make_noisy,
                        make_noisy_levels,
                        recover_clean,
                        write_levels,
                        write_noisy,
)
from noise.registry import NOISE_MODELS, NoiseModel, get_model, noise_model
from noise.spec import NoiseSpec
from noise.stats import noise_stats

__all__ = ["NOISE_MODELS", "NoiseModel", "NoiseSpec", "NoisyResult", "calibrate", "compose", "get_model", "iter_noisy",
           "make_noisy", "make_noisy_levels", "noise_model", "noise_stats", "parse_levels", "recover_clean",
           "write_levels", "write_noisy"]
