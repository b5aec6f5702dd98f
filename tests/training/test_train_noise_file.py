"""`bench train --noise-file`: the noisy file replaces the training boxes only when it was made from this split."""

from __future__ import annotations

import pytest

from benchmark.datasets import load
from benchmark.errors import BenchError
from benchmark.train_cli import apply_noise_file
from noise import make_noisy, write_noisy


def test_a_noise_file_of_another_dataset_is_refused(tmp_path):
    train = load("shapes:train=16,val=8,size=64,seed=3")["train"]
    other = load("shapes:train=16,val=8,size=64,seed=4")["train"]  # same image ids and file names, other boxes
    paths = write_noisy(make_noisy(train, "uniform", 0.3, seed=0), tmp_path)
    used = apply_noise_file(train, paths["annotations"])
    assert [a["true_bbox"] for a in used.annotations] == [a["bbox"] for a in train.annotations]
    assert [a["bbox"] for a in used.annotations] != [a["bbox"] for a in train.annotations]
    with pytest.raises(BenchError, match=r"train.json: its clean boxes are not this dataset's: \d+ of \d+ true_bbox "
                                         r"differ \(annotation \d+: true_bbox"):
        apply_noise_file(other, paths["annotations"])
