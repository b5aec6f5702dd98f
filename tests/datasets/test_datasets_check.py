"""`check`, `load(spec)` layout detection, and `bench data ls | check | convert` through the real CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
from click.testing import CliRunner
from PIL import Image

import benchmark.datasets.catalog as catalog_mod
from benchmark.cli import cli, main
from benchmark.datasets import DetectionDataset, check, load, load_coco, save_coco, validate_images
from benchmark.errors import BenchError
from noise import make_noisy


def write_image(path: Path, w: int, h: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 128, dtype=np.uint8)).save(path)


def small_ds(root: Path) -> DetectionDataset:
    """Boxes with sqrt(area) 5, 20, 40 and 100 px; one image without boxes; images written under root."""
    images = [{"id": 1, "file_name": "a.png", "width": 200, "height": 150},
              {"id": 2, "file_name": "b.png", "width": 64, "height": 64},
              {"id": 3, "file_name": "empty.png", "width": 32, "height": 32}]
    for im in images:
        write_image(root / im["file_name"], im["width"], im["height"])
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [10, 10, 100, 100], "iscrowd": 1},
            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 20, 20]},
            {"id": 4, "image_id": 2, "category_id": 1, "bbox": [20, 20, 40, 40]}]
    coco = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "x"}, {"id": 2, "name": "y"}]}
    return DetectionDataset.from_coco(coco, image_root=root, name="small")


# ---- check --------------------------------------------------------------------------------------------------
def test_check_counts_and_histograms(tmp_path):
    r = check(small_ds(tmp_path), progress=False)
    assert (r["images"], r["annotations"], r["ignored_annotations"], r["categories"]) == (3, 4, 1, 2)
    assert r["images_without_boxes"] == 1 and r["boxes_per_image"] == {"min": 0, "mean": 1.333, "max": 2}
    assert r["per_class"] == [{"id": 1, "name": "x", "boxes": 3, "ignored": 0, "images": 2},
                              {"id": 2, "name": "y", "boxes": 1, "ignored": 1, "images": 1}]
    assert r["box_sizes"]["coco_area"] == {"small": 2, "medium": 1, "large": 1}
    px = r["box_sizes"]["sqrt_area_px"]
    assert (px["<8"], px["16-32"], px["32-64"], px["64-128"], sum(px.values())) == (1, 1, 1, 1, 4)
    assert r["image_files"] == {"checked": 3, "missing": 0, "unreadable": 0, "size_mismatch": 0}
    assert r["problems"] == [] and r["ok"]


def test_check_finds_problems_in_data_and_files(tmp_path):
    ds = small_ds(tmp_path)
    ds.annotations += [{"id": 4, "image_id": 2, "category_id": 1, "bbox": [60, 60, 10, 10], "ignore": 0},
                       {"id": 9, "image_id": 2, "category_id": 42, "bbox": [1, 1, 5, 5], "ignore": 0},
                       {"id": 10, "image_id": 77, "category_id": 1, "bbox": [1, 1, 5, 5], "ignore": 0},
                       {"id": 11, "image_id": 1, "category_id": 1, "bbox": [1, 1, 0, 5], "ignore": 0}]
    (tmp_path / "a.png").unlink()  # missing
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")  # corrupt
    write_image(tmp_path / "empty.png", 31, 32)  # other size than annotated
    r = check(ds, progress=False)
    found = {p["problem"]: p for p in r["problems"]}
    assert found["duplicate_annotation_id"]["count"] == 1
    assert found["box_clipped_to_image"]["count"] == 1 and found["box_clipped_to_image"]["action"] == "found in the data"
    assert found["unknown_category"]["count"] == 1 and found["unknown_image"]["count"] == 1
    assert found["zero_size_box"]["count"] == 1
    assert found["missing_image_file"]["examples"] == ["a.png: missing"]
    assert found["unreadable_image_file"]["examples"][0].startswith("b.png: unreadable")
    assert found["image_size_mismatch"]["examples"] == ["empty.png: size mismatch (annotated 32x32, file 31x32)"]
    assert r["image_files"] == {"checked": 3, "missing": 1, "unreadable": 1, "size_mismatch": 1}
    assert not r["ok"] and "duplicate_file_name" not in found
    # one file listed twice under two ids: its boxes are split between two "images", each missing the other's
    ds.images.append({**ds.images[1], "id": 99})
    found = {p["problem"]: p for p in check(ds, images=False, progress=False)["problems"]}
    assert found["duplicate_file_name"]["examples"] == [f"image ids 2 and 99 are both {ds.images[1]['file_name']!r}"]


def test_check_says_when_no_image_is_found_at_all(tmp_path):
    """One missing file is a problem of the data; all of them missing is a wrong image folder: say so, and for a
    noisy file (which records no image folder, to stay byte-identical wherever it is written) where to look."""
    assert not [n for n in check(small_ds(tmp_path), progress=False)["notes"] if n["note"] == "no_image_found"]
    ds = small_ds(tmp_path / "imgs")
    ds.image_root = tmp_path / "elsewhere"
    note = next(n for n in check(ds, progress=False)["notes"] if n["note"] == "no_image_found")
    assert str(tmp_path / "elsewhere") in note["description"] and "info.image_root" in note["description"]
    noisy = make_noisy(small_ds(tmp_path / "src"), "uniform", 0.2).dataset  # image_root: the source's folder
    noisy.image_root = tmp_path / "out"
    note = next(n for n in check(noisy, progress=False)["notes"] if n["note"] == "no_image_found")
    assert "bench noise make" in note["description"] and "--image-root" in note["description"]


def test_check_reports_loader_skips(bccd_root):
    r = check(load("bccd")["train"], images=False)
    zero = next(p for p in r["problems"] if p["problem"] == "zero_size_box")
    assert zero["count"] == 2 and zero["action"] == "skipped by the loader"
    assert any("BloodImage_00338" in e for e in zero["examples"]) and r["image_files"] is None


def test_truncated_jpeg_is_unreadable(tmp_path):
    p = tmp_path / "t.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(p, quality=90)
    p.write_bytes(p.read_bytes()[:-600])
    ds = DetectionDataset([{"id": 1, "file_name": "t.jpg", "width": 64, "height": 64}], [], [], image_root=tmp_path)
    out = validate_images(ds, progress=False)
    assert len(out["unreadable"]) == 1 and "t.jpg: unreadable" in out["unreadable"][0]


# ---- load(spec) ---------------------------------------------------------------------------------------------
def test_load_detects_coco_layouts(tmp_path):
    ds = small_ds(tmp_path / "imgs")
    save_coco(ds, tmp_path / "d" / "train.json")
    save_coco(ds.subset([2, 3]), tmp_path / "d" / "val.json")
    splits = load(tmp_path / "d")
    assert list(splits) == ["train", "test"] and (len(splits["train"]), len(splits["test"])) == (3, 2)
    assert splits["test"].image_root.resolve() == (tmp_path / "imgs").resolve()
    one = load(tmp_path / "d" / "val.json")  # a single file finds its sibling
    assert len(one["test"]) == 2 and len(one["train"]) == 3
    save_coco(ds, tmp_path / "c" / "annotations" / "instances_train2017.json")
    save_coco(ds.subset([1]), tmp_path / "c" / "annotations" / "instances_val2017.json")
    save_coco(ds.subset([2]), tmp_path / "c" / "annotations" / "person_keypoints_val2017.json")
    (tmp_path / "c" / "annotations" / "image_info_test2017.json").write_text('{"images": []}')
    coco_dir = load(tmp_path / "c")  # instances_* chosen over keypoints and the label-less test info
    assert set(coco_dir) == {"train", "test"} and coco_dir["test"].source.endswith("instances_val2017.json")
    pair = load(f"coco:{tmp_path / 'd' / 'train.json'},{tmp_path / 'd' / 'val.json'}")
    assert len(pair["test"]) == 2
    lone = tmp_path / "lone" / "boxes.json"
    save_coco(ds, lone)
    assert list(load(lone)) == ["train"]
    save_coco(ds.subset([1]), tmp_path / "d" / "onecls_train.json")  # the file named just for its split wins
    assert len(load(tmp_path / "d")["train"]) == 3
    save_coco(ds, tmp_path / "e" / "a_train.json")
    save_coco(ds, tmp_path / "e" / "b_train.json")
    with pytest.raises(BenchError, match=r"more than one train file in this folder \(a_train.json, b_train.json\)"):
        load(tmp_path / "e")


def test_load_rejects_bad_specs(tmp_path):
    with pytest.raises(BenchError, match="unknown dataset 'nope'"):
        load("nope")
    with pytest.raises(BenchError, match="cannot tell the dataset format"):
        load(tmp_path)
    with pytest.raises(BenchError, match="use coco:TRAIN.json,TEST.json"):
        load("coco:only.json")
    ds = small_ds(tmp_path / "imgs")
    save_coco(ds, tmp_path / "train.json")
    other = DetectionDataset(ds.images, [], [{"id": 1, "name": "x"}, {"id": 2, "name": "zzz"}])
    save_coco(other, tmp_path / "test.json")
    with pytest.raises(BenchError, match=r"test.json: categories differ from the train split's"):
        load(f"coco:{tmp_path / 'train.json'},{tmp_path / 'test.json'}")


def test_bccd_location_env_and_not_found(tmp_path, monkeypatch, bccd_root):
    monkeypatch.setenv("NOISYBOX_BCCD", str(bccd_root))
    assert catalog_mod.bccd_root() == bccd_root.resolve()
    monkeypatch.setenv("NOISYBOX_BCCD", str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(catalog_mod, "REPO", tmp_path)
    assert catalog_mod.bccd_root() is None
    with pytest.raises(BenchError, match="dataset 'bccd' not found: set NOISYBOX_BCCD"):
        load("bccd")
    shared = tmp_path / "work" / "repo"
    (tmp_path / "work" / "shared" / "datasets" / "bccd" / "BCCD" / "Annotations").mkdir(parents=True)
    shared.mkdir()
    monkeypatch.chdir(shared)  # ../shared relative to the working directory
    assert catalog_mod.bccd_root() == (tmp_path / "work" / "shared" / "datasets" / "bccd" / "BCCD").resolve()


# ---- CLI ----------------------------------------------------------------------------------------------------
def test_cli_ls_lists_catalog_with_locations(monkeypatch, bccd_root):
    monkeypatch.setenv("NOISYBOX_BCCD", str(bccd_root))
    res = CliRunner().invoke(cli, ["data", "ls"])
    assert res.exit_code == 0, res.output
    assert "shapes-mini" in res.output and str(bccd_root.resolve()) in res.output
    rows = {r["name"]: r for r in orjson.loads(CliRunner().invoke(cli, ["data", "ls", "--json"]).output)}
    assert set(rows) >= {"shapes", "shapes-mini", "bccd"} and rows["bccd"]["status"] == "found"
    assert rows["shapes"]["location"].endswith(catalog_mod.ShapesConfig().key())


def test_cli_check_bccd_prints_counts_and_problems(bccd_root):
    res = CliRunner().invoke(cli, ["data", "check", "bccd", "--split", "train", "--no-images"])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "images 292" in out and "boxes 3941" in out and "RBC" in out and "Platelets" in out
    assert "zero_size_box: 2 (skipped by the loader)" in out and "BloodImage_00343.xml" in out
    assert "box size (COCO area): small 27" in out
    strict = CliRunner().invoke(cli, ["data", "check", "bccd", "--split", "train", "--no-images", "--strict"])
    assert strict.exit_code == 1


def test_the_bench_entry_point_passes_exit_codes_on(bccd_root, capsys):
    """`bench` (benchmark.cli.main, not click's test runner) must exit 1 where a command asks for it: scripts and CI
    read the code of `data check --strict` and of a sweep with failed cells."""
    with pytest.raises(SystemExit) as exc:
        main(["data", "check", "bccd", "--split", "train", "--no-images", "--strict"])
    assert exc.value.code == 1
    capsys.readouterr()
    main(["data", "check", "bccd", "--split", "train", "--no-images"])  # no --strict: returns normally


def test_cli_check_json_and_strict_clean(tmp_path):
    save_coco(small_ds(tmp_path / "imgs"), tmp_path / "train.json")
    res = CliRunner().invoke(cli, ["data", "check", str(tmp_path / "train.json"), "--json", "--strict"])
    assert res.exit_code == 0, res.output
    report = orjson.loads(res.output)["train"]
    assert report["ok"] and report["image_files"]["checked"] == 3 and report["annotations"] == 4


def _boxes_by_image_name(ds: DetectionDataset) -> dict[str, list]:
    names = {im["id"]: Path(im["file_name"]).name for im in ds.images}
    out: dict[str, list] = {n: [] for n in names.values()}
    for a in ds.annotations:
        out[names[a["image_id"]]].append([a["category_id"], *a["bbox"]])
    return {k: sorted(np.round(v, 0).tolist()) for k, v in out.items()}


@pytest.mark.parametrize("fmt, splits", [("coco", ()), ("voc", ("--split", "test")), ("yolo", ("--split", "test"))])
def test_cli_convert_round_trips(tmp_path, fmt, splits, bccd_root):
    dst = tmp_path / fmt
    res = CliRunner().invoke(cli, ["data", "convert", "bccd", str(dst), "--to", fmt, *splits])
    assert res.exit_code == 0, res.output
    wanted = ["test"] if splits else ["train", "test"]
    assert all(f"{s} ->" in res.output for s in wanted) and ("train ->" in res.output) == ("train" in wanted)
    src, back = load("bccd"), load(dst)
    assert sorted(back) == sorted(wanted)
    for split in wanted:
        a, b = src[split], back[split]
        assert len(a) == len(b) and len(a.annotations) == len(b.annotations)
        assert [c["name"] for c in a.categories] == [c["name"] for c in b.categories]
        ba, bb = _boxes_by_image_name(a), _boxes_by_image_name(b)
        assert ba.keys() == bb.keys()
        for name in ba:  # BCCD boxes are integers: rounding orders both sides alike
            assert len(ba[name]) == len(bb[name]) and np.allclose(ba[name], bb[name], atol=1e-3 * 640), name
        assert all(Path(b.image_path(im)).is_file() for im in b.images[:3])


def test_cli_convert_single_json_and_split_errors(tmp_path):
    save_coco(small_ds(tmp_path / "imgs"), tmp_path / "train.json")
    out = tmp_path / "one.json"
    res = CliRunner().invoke(cli, ["data", "convert", str(tmp_path / "train.json"), str(out), "--to", "coco",
                                   "--split", "train"])
    assert res.exit_code == 0, res.output and out.is_file()
    assert len(load_coco(out).annotations) == 4
    res = CliRunner().invoke(cli, ["data", "convert", str(tmp_path / "train.json"), str(out), "--to", "coco",
                                   "--split", "test"])
    assert isinstance(res.exception, BenchError) and "has no split test" in str(res.exception)


def test_cli_convert_to_voc_says_which_classes_it_cannot_keep(tmp_path):
    ds = small_ds(tmp_path / "imgs")
    ds.categories.append({"id": 7, "name": "unused"})
    save_coco(ds, tmp_path / "train.json")
    res = CliRunner().invoke(cli, ["data", "convert", str(tmp_path / "train.json"), str(tmp_path / "voc"), "--to",
                                   "voc", "--split", "train"])
    assert res.exit_code == 0, res.output
    assert "classes without boxes (VOC cannot record them) unused" in res.output


def test_cli_user_errors_are_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [')
    for argv, needle in ((["data", "check", str(bad)], f"error: {bad}: malformed JSON"),
                         (["data", "check", str(tmp_path / "nope")], "error: unknown dataset")):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(needle) and "\n" not in err and "Traceback" not in err


def test_yolo_polygons_are_a_note_not_a_problem(tmp_path):
    from benchmark.datasets import load_yolo

    write_image(tmp_path / "images" / "train" / "s.png", 50, 50)
    (tmp_path / "labels" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train" / "s.txt").write_text("0 0.1 0.1 0.5 0.1 0.3 0.4\n")
    (tmp_path / "classes.txt").write_text("blob\n")
    ds = load_yolo(tmp_path, "train")
    assert np.allclose(ds.annotations[0]["bbox"], [5, 5, 20, 15])
    r = check(ds, progress=False)
    assert r["ok"] and r["problems"] == [] and r["notes"][0]["note"] == "polygon_label" and r["notes"][0]["count"] == 1
    from benchmark.datasets import format_report

    assert "note: polygon_label: 1" in format_report(r)


def test_empty_and_typo_looking_classes_are_notes():
    """A misspelt VOC class name becomes a class of its own with a box or two: say so, without failing --strict."""
    images = [{"id": i, "file_name": f"{i}.png", "width": 100, "height": 100} for i in range(1, 31)]
    anns = [{"id": k, "image_id": 1 + k % 30, "category_id": 1 + k % 2, "bbox": [10, 10, 20, 20]} for k in range(60)]
    anns.append({"id": 99, "image_id": 1, "category_id": 3, "bbox": [50, 50, 10, 10]})
    cats = [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}, {"id": 3, "name": "sqaure"},
            {"id": 4, "name": "hexagon"}]
    r = check(DetectionDataset.from_coco({"images": images, "annotations": anns, "categories": cats}), images=False)
    notes = {n["note"]: n for n in r["notes"]}
    assert r["ok"] and notes["empty_class"]["examples"] == ["hexagon"]
    assert notes["rare_class"]["examples"] == ["sqaure (1 box)"]
    few = [a for a in anns if a["category_id"] != 3][:8]  # a small dataset: a few boxes per class is normal there
    r = check(DetectionDataset.from_coco({"images": images, "annotations": few + [anns[-1]], "categories": cats[:3]}),
              images=False)
    assert not any(n["note"] == "rare_class" for n in r["notes"])
