"""`bench inspect`: the records behind the FiftyOne dataset (fields, IoUs, manifest flags, failure-mode tags), and
the FiftyOne samples built from them."""

import json

import pytest
from click.testing import CliRunner
from store_kit import make_store

from benchmark.io import write_json
from reports.inspect import field_name, records_from_noisy_file, records_from_store, to_sample
from reports.inspect_cli import inspect_cmd


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("inspect"), seeds=2)


def test_a_noisy_file_gives_clean_noisy_and_removed_fields_with_iou_and_flags(tmp_path):
    images = [{"id": 1, "file_name": "a.png", "width": 100, "height": 50}]
    anns = [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [15, 10, 20, 20], "true_bbox": [10, 10, 20, 20]},
            {"id": 6, "image_id": 1, "category_id": 1, "bbox": [50, 10, 10, 10], "true_bbox": None}]
    write_json(tmp_path / "train.json", {"images": images, "annotations": anns,
                                         "categories": [{"id": 1, "name": "cell"}]})
    write_json(tmp_path / "manifest.json", {"added_ids": [6], "class_changes": [{"id": 5}], "removed": [
        {"annotation": {"id": 7, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]}, "index": 2}]})
    [rec] = records_from_noisy_file(tmp_path / "train.json", image_root=tmp_path)
    assert rec["filepath"] == str(tmp_path / "a.png") and rec["split"] == "train"
    noisy = {b["annotation_id"]: b for b in rec["fields"]["noisy"]}
    assert noisy[5]["iou"] == pytest.approx(300 / 500)  # 15 x 20 overlap of two 20 x 20 boxes
    assert noisy[5]["class_changed"] and not noisy[5]["added"] and noisy[6]["added"] and "iou" not in noisy[6]
    assert noisy[5]["bounding_box"] == pytest.approx([0.15, 0.2, 0.2, 0.4])  # relative to 100 x 50
    assert [b["annotation_id"] for b in rec["fields"]["clean"]] == [5]
    assert rec["fields"]["removed"][0]["bounding_box"] == pytest.approx([0, 0, 0.1, 0.2])


def test_a_store_gives_refined_and_predicted_fields_tagged_with_failure_modes(store):
    records = records_from_store(store, echo=lambda line: None)
    train = [r for r in records if r["split"] == "train"]
    test = [r for r in records if r["split"] == "test"]
    assert len(train) == 4 and len(test) == 3  # the kit's 4 training and 3 test images
    fields = set().union(*(r["fields"] for r in records))
    assert {"clean", "noisy", "ground_truth", field_name("refined", "oa_mil_0.1_s0"),
            field_name("pred", "faster_rcnn_0.3_s1")} <= fields
    assert not any(f.startswith("refined_faster_rcnn") for f in fields)  # only methods that refine boxes
    refined = [b for r in train for b in r["fields"][field_name("refined", "oa_mil_0.1_s0")]]
    assert len(refined) == 12 and all(len(b["tags"]) == 1 for b in refined)
    assert {"group"} & {b["tags"][0] for b in refined}  # the kit's one box over two touching objects
    preds = [b for r in test for b in r["fields"][field_name("pred", "clean_0.1_s0")]]
    assert preds and all(0 <= b["confidence"] <= 1 for b in preds)
    assert {t for b in preds for t in b["tags"]} >= {"good"}


def test_cli_json_and_a_clear_error_without_fiftyone(store, tmp_path, monkeypatch):
    out = tmp_path / "records.json"
    r = CliRunner().invoke(inspect_cmd, [str(store), "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert len(json.loads(out.read_text())) == 7 and "7 samples" in r.output
    import builtins

    real = builtins.__import__

    def no_fiftyone(name, *args, **kwargs):
        if name.startswith("fiftyone"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_fiftyone)
    r = CliRunner().invoke(inspect_cmd, [str(store), "--no-launch"])
    assert "FiftyOne is not installed" in str(r.exception)


def test_fiftyone_samples_carry_every_field_and_attribute(store):
    fo = pytest.importorskip("fiftyone")
    records = records_from_store(store, echo=lambda line: None)
    rec = next(r for r in records if r["split"] == "train")
    sample = to_sample(fo, rec)
    assert sample.filepath.endswith(rec["filepath"].rsplit("/", 1)[-1]) and "train" in sample.tags
    noisy = sample["noisy"].detections
    assert len(noisy) == len(rec["fields"]["noisy"]) and all(0 <= d["iou"] <= 1 for d in noisy)
    refined = sample[field_name("refined", "oa_mil_0.1_s0")].detections
    assert refined and all(d.tags for d in refined)


def test_fiftyone_dataset_from_a_store(store):
    """Needs FiftyOne's database (MongoDB): skipped, saying so, where FiftyOne cannot start one."""
    fo = pytest.importorskip("fiftyone")
    from benchmark.errors import BenchError
    from reports.inspect import to_fiftyone

    try:
        dataset = to_fiftyone(records_from_store(store, echo=lambda line: None), "noisybox-test-inspect")
    except BenchError as exc:
        if "database" in str(exc).lower() or "mongo" in str(exc).lower():
            pytest.skip(f"FiftyOne has no database here: {exc}")
        raise
    assert len(dataset) == 7 and dataset.count("noisy.detections") == 4 * 3
    assert dataset.count_label_tags()
    dataset.delete()
    assert fo.dataset_exists("noisybox-test-inspect") is False
