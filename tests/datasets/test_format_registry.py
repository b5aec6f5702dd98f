"""A dataset format is one module plus its registration: a toy CSV format defined here, registered in `FORMATS`,
is found by `benchmark.datasets.load`, carries the kind it declares into the recipe, and is written and read back
by `bench data convert`."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import formats_kit as fk
import pytest

from benchmark.cli import main
from benchmark.config import DATASET_KINDS, dataset_kind
from benchmark.datasets import FORMATS, DatasetFormat, DetectionDataset, load
from benchmark.datasets.formats import RANK, writable
from benchmark.errors import BenchError
from benchmark.io import atomic_write_text

# ---- the toy format: `boxes.csv`, one row per box (an image without boxes: a row with an empty class) ----------
HEADER = ["split", "file_name", "width", "height", "class", "x", "y", "w", "h"]


def _is_boxes_csv(path: Path) -> bool:
    return path.is_file() and path.name.endswith(".boxes.csv")


def _read(path: Path, name: str, keep_columns: bool = False) -> dict[str, DetectionDataset]:
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    names = sorted({r["class"] for r in rows if r["class"]})
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(names)]
    out = {}
    for split in sorted({r["split"] for r in rows}):
        images: dict[str, dict] = {}
        anns = []
        for r in (r for r in rows if r["split"] == split):
            im = images.setdefault(r["file_name"], {"id": len(images) + 1, "file_name": r["file_name"],
                                                    "width": int(r["width"]), "height": int(r["height"])})
            if r["class"]:
                box = [float(r[k]) for k in "xywh"]
                anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": names.index(r["class"]) + 1,
                             "bbox": box, "area": box[2] * box[3], "iscrowd": 0, "ignore": 0})
        out[split] = DetectionDataset(list(images.values()), anns, cats, path.parent, f"{name}/{split}", str(path))
    return out


def _save(ds: DetectionDataset, dst: Path, split_name: str, images: str, files: list, state: dict):
    names = ds.category_names()
    by_image = ds.annotations_by_image()
    rows = state.setdefault("rows", [])
    for im in ds.images:
        for a in by_image[im["id"]] or [None]:
            box = a["bbox"] if a else ["", "", "", ""]
            rows.append([split_name, im["file_name"], im["width"], im["height"],
                         names[a["category_id"]] if a else "", *box])
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([HEADER, *rows])
    out = dst / "toy.boxes.csv"
    atomic_write_text(out, text.getvalue())
    if out not in files:
        files.append(out)
    return out, {"images": len(ds.images), "boxes": len(ds.annotations)}


def toy(kind: str = "coco") -> DatasetFormat:
    return DatasetFormat("boxcsv", kind=kind, read=_read, probes=((RANK["file"], _is_boxes_csv),), save=_save,
                         expects="a .boxes.csv file", split_map={"train": "train", "test": "test"})


@pytest.fixture
def register(monkeypatch):
    def add(fmt: DatasetFormat) -> DatasetFormat:
        FORMATS.names()  # the built-ins first, as in a real session
        monkeypatch.setitem(FORMATS._items, fmt.name, fmt)  # removed again after the test
        monkeypatch.setitem(FORMATS._origin, fmt.name, "builtin")
        return fmt
    return add


def _csv(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("split,file_name,width,height,class,x,y,w,h\n"
                    "train,a.png,40,30,cell,1,2,10,8\n"
                    "train,a.png,40,30,dot,5,5,4,4\n"
                    "train,b.png,40,30,,,,,\n"
                    "test,c.png,50,20,dot,0,0,3,3\n")
    return path


@pytest.mark.parametrize("kind", ["coco", "voc"])
def test_a_registered_format_loads_through_load_with_its_declared_kind(register, tmp_path, kind):
    register(toy(kind))
    splits = load(_csv(tmp_path / "voc_shapes_like" / "d.boxes.csv"))  # the folder name says nothing
    assert sorted(splits) == ["test", "train"]
    train, test = splits["train"], splits["test"]
    assert [im["file_name"] for im in train.images] == ["a.png", "b.png"]
    assert [(a["category_id"], a["bbox"]) for a in train.annotations] == [(1, [1.0, 2.0, 10.0, 8.0]),
                                                                          (2, [5.0, 5.0, 4.0, 4.0])]
    assert [(a["category_id"], a["bbox"]) for a in test.annotations] == [(2, [0.0, 0.0, 3.0, 3.0])]
    assert dataset_kind(train) == dataset_kind(test) == kind


def test_bench_data_convert_writes_and_reads_back_a_registered_format(register, tmp_path, capsys):
    register(toy())
    src = fk.coco_folder(tmp_path / "src")
    main(["data", "convert", str(src), str(tmp_path / "out"), "--to", "boxcsv"])
    assert "train -> " in capsys.readouterr().out
    back = load(tmp_path / "out" / "toy.boxes.csv")
    orig = load(src)
    for split in ("train", "test"):
        assert [im["file_name"] for im in back[split].images] == [im["file_name"] for im in orig[split].images]
        assert [a["bbox"] for a in back[split].annotations] == [a["bbox"] for a in orig[split].annotations]
    main(["data", "convert", str(tmp_path / "out" / "toy.boxes.csv"), str(tmp_path / "coco"), "--to", "coco"])
    assert [a["bbox"] for a in load(tmp_path / "coco")["test"].annotations] == \
        [a["bbox"] for a in orig["test"].annotations]


def test_an_unrecognised_path_names_what_every_format_expects(register, tmp_path):
    register(toy())
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(BenchError, match="cannot tell the dataset format: expected .*a .boxes.csv file") as exc:
        load(tmp_path / "notes.txt")
    assert "a COCO .json file" in str(exc.value) and "a VOC folder" in str(exc.value)


def test_builtin_formats_declare_a_recipe_kind_and_the_split_names_they_write():
    assert {name: FORMATS.get(name).kind for name in FORMATS.names()} == {
        "coco": "coco", "voc": "voc", "yolo": "yolo", "shapes": "shapes"}
    assert all(FORMATS.get(n).kind in DATASET_KINDS for n in FORMATS.names())
    assert writable() == ["coco", "voc", "yolo"]
    # the split names each writer uses (VOC's trainval/test, YOLO's train/val), as the formats' own tools name them
    assert {n: FORMATS.get(n).split_map for n in writable()} == {
        "coco": {"train": "train", "test": "test"}, "voc": {"train": "trainval", "test": "test"},
        "yolo": {"train": "train", "test": "val"}}


def test_probes_run_surest_first_across_formats(tmp_path):
    """A VOC marker folder beats a YOLO images/ + labels/ layout, which beats a folder of COCO jsons, which beats a
    data.yaml merely listing its splits (the order `load` has always followed)."""
    from benchmark.datasets.formats import detect_format

    everything = fk.coco_folder(fk.yolo_folder(fk.voc_root(tmp_path / "a")))
    yolo_and_coco = fk.coco_folder(fk.yolo_folder(tmp_path / "b"))
    listing = tmp_path / "c"
    (listing / "pics").mkdir(parents=True)
    (listing / "data.yaml").write_text("names: [cell, dot]\ntrain: pics\nval: pics\n")
    coco_and_listing = fk.coco_folder(tmp_path / "d")
    (coco_and_listing / "pics").mkdir()
    (coco_and_listing / "data.yaml").write_text("names: [cell, dot]\ntrain: pics\nval: pics\n")
    assert [detect_format(p).name for p in (everything, yolo_and_coco, listing, coco_and_listing)] == \
        ["voc", "yolo", "yolo", "coco"]
