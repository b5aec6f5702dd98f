"""Property: whatever the dataset, model, level and seed, the manifest recovers the clean set exactly
(`noise.recover_clean(noisy, manifest)` equals the source annotation for annotation), and the noisy file itself
carries the clean box of every kept annotation in `true_bbox`."""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st
from property_strategies import SETTINGS, datasets

from noise import make_noisy, recover_clean

MODELS = {  # model -> the levels it takes
    "uniform": st.floats(0, 0.99), "gaussian": st.floats(0, 0.99), "shift": st.floats(0, 0.99),
    "scale": st.floats(0, 0.99), "bias": st.floats(0, 0.99), "missing": st.floats(0, 0.99),
    "bogus": st.floats(0, 0.99), "class_flip": st.floats(0, 1), "una": st.floats(0, 0.5),
}


def _comparable(anns: list[dict]) -> list[dict]:
    return [{k: v for k, v in a.items() if k != "segmentation"} for a in anns]


@SETTINGS
@given(datasets(max_boxes=8), st.sampled_from(sorted(MODELS)), st.data(), st.integers(0, 2**32 - 1))
def test_manifest_recovers_the_clean_set_exactly(ds, model, data, seed):
    assume(ds.annotations)  # an empty training set is refused (BenchError), not perturbed
    assume(model not in ("class_flip", "una") or len(ds.categories) > 1)  # no other class to flip to: refused
    level = data.draw(MODELS[model], label="level")
    rng = data.draw(st.sampled_from(["numpy", "oamil-legacy"]), label="rng") if model == "uniform" else "numpy"
    made = make_noisy(ds, model, level, seed=seed, rng=rng)
    noisy = made.dataset
    back = recover_clean(noisy, made.manifest)
    assert _comparable(back.annotations) == _comparable(ds.annotations)
    assert back.images == ds.images and back.categories == ds.categories
    added = set(made.manifest.get("added_ids", []))
    clean = {a["id"]: a["bbox"] for a in ds.annotations}
    for a in noisy.annotations:
        if a["id"] in added:
            assert a["true_bbox"] is None
        else:
            assert a["true_bbox"] == clean[a["id"]]


@SETTINGS
@given(datasets(max_boxes=8), st.integers(0, 2**32 - 1))
def test_level_zero_changes_nothing(ds, seed):
    """Level 0 of a geometric model is the clean set (boxes, classes, count), with the marker of a noisy file."""
    assume(ds.annotations)
    made = make_noisy(ds, "uniform", 0.0, seed=seed)
    assert [a["bbox"] for a in made.dataset.annotations] == [a["bbox"] for a in ds.annotations]
    assert "noisybox" in made.dataset.info
