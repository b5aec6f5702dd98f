"""Outputs never destroy what the suite did not write, never mix two datasets, never lose a box silently: `bench
report --out`, `bench leaderboard render`, `bench data convert` and `bench noise make` (issue 25, classes 1, 3, 5
and the convert half of 7)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.cli import main
from benchmark.datasets import load, load_voc, load_yolo
from benchmark.datasets.voc import unwritable_class_names
from benchmark.datasets.yolo import unwritable_yolo_names
from benchmark.errors import BenchError
from benchmark.io import read_json, write_json
from benchmark.owned import RECORD
from reports import build_report


def _image(path: Path, w: int, h: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(path)
    return path


def _coco(path: Path, images: list[tuple[str, int, int]], boxes: list[tuple[int, list[float]]],
          names=("cat", "dog")) -> Path:
    """A COCO json: `images` (file_name, w, h) in `path.parent/img`, `boxes` (image index, bbox), class 1."""
    for name, w, h in images:
        _image(path.parent / "img" / name, w, h)
    write_json(path, {
        "images": [{"id": i + 1, "file_name": n, "width": w, "height": h} for i, (n, w, h) in enumerate(images)],
        "annotations": [{"id": k + 1, "image_id": i + 1, "category_id": 1, "bbox": b, "area": b[2] * b[3],
                         "iscrowd": 0} for k, (i, b) in enumerate(boxes)],
        "categories": [{"id": k + 1, "name": n} for k, n in enumerate(names)],
        "info": {"image_root": "img"}})
    return path


def _main(capsys, *argv) -> tuple[int, str, str]:
    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---- class 1: bench report --out, bench leaderboard render -------------------------------------------------------
@pytest.fixture
def store(tmp_path):
    from store_kit import make_store

    return make_store(tmp_path, with_images=False, seeds=1)


FAST_CFG = {"gallery_per_mode": 2, "tide_styles": ["coco"], "tide_sizes": ["all"], "sensitivity": {"bad_iou": [0.5]}}


def test_report_refuses_a_folder_it_did_not_write_and_touches_nothing(tmp_path, store, capsys):
    """It used to delete the user's plots/, tables/, galleries/ files and index.html (html not even asked for)."""
    out = tmp_path / "paper"
    mine = {"plots/fig1.png": b"fig", "tables/t1.csv": b"a,b", "galleries/g.png": b"g", "index.html": b"<p>mine"}
    for rel, data in mine.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    cfg = tmp_path / "cfg.json"
    write_json(cfg, FAST_CFG)
    code, _, err = _main(capsys, "report", str(store), "--out", str(out), "--format", "md", "--config", str(cfg),
                         "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "not empty and was not written by `bench report`" in err and str(out) in err
    assert _tree(out) == mine  # nothing removed, nothing added


def test_report_rebuild_removes_only_its_own_files(tmp_path, store):
    from store_kit import FAST

    out = tmp_path / "r"
    build_report(store, out, formats=("md", "html", "csv"), config=FAST, progress=False)
    assert (out / RECORD).is_file() and (out / "index.html").is_file()
    mine = {"plots/mine.png": b"fig", "tables/mine.csv": b"a,b", "galleries/mine.png": b"g", "notes.txt": b"n"}
    for rel, data in mine.items():
        (out / rel).write_bytes(data)
    build_report(store, out, formats=("md",), config=FAST, progress=False)  # html and csv no longer asked for
    assert not (out / "index.html").exists() and not list((out / "tables").glob("t*.csv"))  # the report's own
    assert {rel: (out / rel).read_bytes() for rel in mine} == mine  # the user's, kept
    # a report file the user edited since is neither overwritten nor deleted
    (out / "report.md").write_text("my edits")
    with pytest.raises(BenchError, match="would overwrite a file changed since `bench report`"):
        build_report(store, out, formats=("md",), config=FAST, progress=False)
    assert (out / "report.md").read_text() == "my edits"
    (out / "report.md").unlink()
    build_report(store, out, formats=("md",), config=FAST, progress=False)  # the failed run left a usable record
    assert (out / "report.md").read_text() != "my edits"


def test_leaderboard_render_never_overwrites_a_readme_it_did_not_write(tmp_path, capsys):
    from leaderboard_kit import _row

    from leaderboard.rows import write_row

    project = tmp_path / "project"
    write_row(_row(reported=30.0), project / "entries")
    readme = project / "README.md"
    readme.write_text("# my project\n")
    code, _, err = _main(capsys, "leaderboard", "render", "--entries", str(project / "entries"), "--latex")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "README.md" in err, err
    assert readme.read_text() == "# my project\n" and not (project / "index.html").exists()  # nothing written
    readme.unlink()
    (project / "leaderboard.tex").write_text("\\section{mine}\n")
    code, _, err = _main(capsys, "leaderboard", "render", "--entries", str(project / "entries"), "--latex")
    assert code == 2 and "leaderboard.tex" in err and (project / "leaderboard.tex").read_text() == "\\section{mine}\n"
    for _ in range(2):  # its own views it replaces
        code, out, err = _main(capsys, "leaderboard", "render", "--entries", str(project / "entries"), "--out",
                               str(tmp_path / "views"), "--latex")
        assert code == 0, err
    assert "30.0" in (tmp_path / "views" / "README.md").read_text()


# ---- class 3: bench data convert ------------------------------------------------------------------------------
def _two_splits(root: Path) -> str:
    _coco(root / "train.json", [("a.jpg", 60, 40), ("b.jpg", 60, 40)], [(0, [5, 5, 20, 10]), (1, [10, 8, 30, 20])])
    _coco(root / "test.json", [("t.jpg", 50, 50)], [(0, [1, 1, 10, 10])])
    return f"coco:{root / 'train.json'},{root / 'test.json'}"


@pytest.mark.parametrize("fmt", ["voc", "coco", "yolo"])
def test_convert_into_an_earlier_export_is_refused_and_overwrite_replaces_the_whole_dataset(tmp_path, fmt, capsys):
    """The earlier export's test split stayed: D loaded as B's train + A's test, 'problems: none'."""
    a = _two_splits(tmp_path / "a")
    b = _coco(tmp_path / "b" / "train.json", [("z.jpg", 70, 50)], [(0, [3, 3, 30, 30]), (0, [40, 10, 20, 20])])
    dst = tmp_path / "d"
    assert _main(capsys, "data", "convert", a, str(dst), "--to", fmt)[0] == 0
    first = _tree(dst)
    code, _, err = _main(capsys, "data", "convert", str(b), str(dst), "--to", fmt)
    assert code == 2 and "DST is not empty" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert _tree(dst) == first
    code, _, err = _main(capsys, "data", "convert", str(b), str(dst), "--to", fmt, "--overwrite")
    assert code == 0, err
    back = load(str(dst))
    assert sorted(back) == ["train"]  # A's test split is gone with the rest of A
    assert len(back["train"].images) == 1 and len(back["train"].annotations) == 2
    # a file the user put there: --overwrite refuses, deletes nothing
    (dst / "notes.txt").write_text("mine")
    before = _tree(dst)
    code, _, err = _main(capsys, "data", "convert", a, str(dst), "--to", fmt, "--overwrite")
    assert code == 2 and "did not write" in err and "notes.txt" in err
    assert _tree(dst) == before


def test_convert_to_one_json_file_needs_overwrite(tmp_path, capsys):
    b = _coco(tmp_path / "b" / "train.json", [("z.jpg", 70, 50)], [(0, [3, 3, 30, 30])])
    dst = tmp_path / "mine.json"
    dst.write_text("{}")
    code, _, err = _main(capsys, "data", "convert", str(b), str(dst), "--to", "coco")
    assert code == 2 and "--overwrite" in err and dst.read_text() == "{}"
    assert _main(capsys, "data", "convert", str(b), str(dst), "--to", "coco", "--overwrite")[0] == 0
    assert len(read_json(dst)["annotations"]) == 1


def test_yolo_export_of_images_sharing_a_stem_keeps_every_box_on_its_image(tmp_path, capsys):
    """`a.jpg` and `a.png` shared labels/train/a.txt: one image's boxes lost, or moved to the other."""
    src = _coco(tmp_path / "s" / "train.json", [("a.jpg", 100, 80), ("a.png", 60, 50)],
                [(0, [10, 10, 40, 30]), (0, [50, 40, 20, 20]), (1, [5, 5, 10, 10])])
    code, out, err = _main(capsys, "data", "convert", str(src), str(tmp_path / "y"), "--to", "yolo")
    assert code == 0, err
    assert "renamed images 1" in out
    back = load_yolo(tmp_path / "y", "train")
    by_size = {(im["width"], im["height"]): [a["bbox"] for a in back.annotations if a["image_id"] == im["id"]]
               for im in back.images}
    assert sorted(len(v) for v in by_size.values()) == [1, 2] and len(by_size[(100, 80)]) == 2
    assert np.allclose(by_size[(60, 50)][0], [5, 5, 10, 10], atol=1e-3)
    # without images to rename, the clash is refused, naming both
    code, _, err = _main(capsys, "data", "convert", str(src), str(tmp_path / "n"), "--to", "yolo", "--images", "none")
    assert code == 2 and "a.jpg and a.png would share the label file a.txt" in err
    assert not (tmp_path / "n").exists()


@pytest.mark.parametrize("fmt", ["voc", "yolo"])
@pytest.mark.parametrize("name", [" cat", "cat ", "two\nlines", "bell\x07", "tab\there", "cr\rname", "\u2028x"])
def test_voc_and_yolo_refuse_class_names_they_cannot_carry(tmp_path, fmt, name, capsys):
    src = _coco(tmp_path / "s" / "train.json", [("a.jpg", 60, 40)], [(0, [5, 5, 20, 10])], names=(name, "dog"))
    dst = tmp_path / "out"
    code, _, err = _main(capsys, "data", "convert", str(src), str(dst), "--to", fmt)
    assert code == 2 and "cannot be written as" in err and repr(name) in err, err
    assert len(err.strip().splitlines()) == 1 and not dst.exists()


@pytest.mark.parametrize("fmt", ["voc", "yolo"])
def test_class_names_the_formats_can_carry_read_back_as_themselves(tmp_path, fmt, capsys):
    names = ("traffic light", 'say "hi"', "a\\b", "café", "#1: x", "it's", "<&>")
    assert unwritable_class_names(list(names)) == [] and unwritable_yolo_names(list(names)) == []
    src = _coco(tmp_path / "s" / "train.json", [("a.jpg", 60, 40)],
                [(0, [5, 5, 20, 10])], names=names)
    src_data = read_json(src)  # every class used once, so VOC (no class list) keeps them all
    src_data["annotations"] = [{"id": k + 1, "image_id": 1, "category_id": k + 1, "bbox": [5, 5, 20, 10],
                                "area": 200, "iscrowd": 0} for k in range(len(names))]
    write_json(src, src_data)
    code, _, err = _main(capsys, "data", "convert", str(src), str(tmp_path / "out"), "--to", fmt)
    assert code == 0, err
    back = load_voc(tmp_path / "out", "trainval") if fmt == "voc" else load_yolo(tmp_path / "out", "train")
    assert sorted(c["name"] for c in back.categories) == sorted(names)


# ---- class 7 (convert half): counted, printed skips ----------------------------------------------------------
def test_convert_prints_what_the_reader_dropped_or_clipped(tmp_path, capsys):
    src = _coco(tmp_path / "s" / "train.json", [("a.jpg", 60, 40)],
                [(0, [5, 5, 20, 10]), (0, [50, 30, 30, 30]), (0, [100, 100, 5, 5]), (0, [5, 5, 0, 4])])
    code, out, err = _main(capsys, "data", "convert", str(src), str(tmp_path / "v"), "--to", "voc")
    assert code == 0, err
    assert "train -> " in out and "2 boxes" in out
    line = next(line for line in out.splitlines() if "not converted as the source has it" in line)
    assert "1 box entirely outside its image (dropped)" in line
    assert "1 box with zero width or height (dropped)" in line
    assert "1 box extending past the image border (clipped to the image)" in line


def test_convert_counts_an_undecodable_image_and_its_boxes(tmp_path, capsys):
    root = tmp_path / "y"
    _image(root / "images" / "train" / "ok.jpg", 40, 30)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "ok.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "images" / "train" / "bad.jpg").write_bytes(b"not a jpeg")
    (root / "labels" / "train" / "bad.txt").write_text("0 0.5 0.5 0.2 0.2\n0 0.3 0.3 0.1 0.1\n")
    (root / "data.yaml").write_text("names: [cat]\n")
    code, out, err = _main(capsys, "data", "convert", str(root), str(tmp_path / "c"), "--to", "coco")
    assert code == 0, err
    assert "1 images, 1 boxes" in out
    line = next(line for line in out.splitlines() if "not converted as the source has it" in line)
    assert "1 image file missing or unreadable" in line and "2 box of an image dropped as unreadable" in line


def test_voc_export_keeps_a_tiny_box_at_the_border(tmp_path):
    """A box under 1 px at the right edge was widened past the image and dropped when read back."""
    from benchmark.datasets import load_coco, save_voc

    src = _coco(tmp_path / "s" / "train.json", [("a.jpg", 60, 40)], [(0, [59.7, 39.7, 0.3, 0.3])])
    summary = save_voc(load_coco(src), tmp_path / "v", "trainval")
    back = load_voc(tmp_path / "v", "trainval")
    assert len(back.annotations) == 1
    x, y, w, h = back.annotations[0]["bbox"]
    assert x + w <= 60 and y + h <= 40 and x <= 59.7 and y <= 39.7
    assert summary["widened_boxes"] == 1  # and said so


# ---- class 5: bench noise make ----------------------------------------------------------------------------------
def test_noise_make_never_overwrites_another_output(tmp_path, capsys):
    """Other parameters or another --rng wrote the same `bias-r0.3-s0` folder and replaced the earlier output."""
    a = _two_splits(tmp_path / "a")
    out = tmp_path / "noisy"

    def make(*extra, data=a):
        return _main(capsys, "noise", "make", "-d", data, "-m", "bias", "-l", "0.3", "-o", str(out), *extra)

    assert make()[0] == 0
    plain = out / "bias-r0.3-s0"
    first = _tree(plain)
    assert make()[0] == 0 and _tree(plain) == first  # the same run again: the same bytes
    code, stdout, err = make("-p", "direction=shrink")
    assert code == 0, err
    shrink = [p for p in out.iterdir() if p.name.startswith("bias-r0.3-s0-p")]
    assert len(shrink) == 1 and str(shrink[0]) in stdout
    assert read_json(shrink[0] / "manifest.json")["params"]["direction"] == "shrink"
    assert make("-p", "direction=grow")[0] == 0 and not (out / "bias-r0.3-s0-p").exists()  # the default's values
    assert _tree(plain) == first
    # another dataset into the same folder: its test split and its level folder would replace A's
    b = _coco(tmp_path / "b" / "train.json", [("z.jpg", 70, 50)], [(0, [3, 3, 30, 30])])
    c = _coco(tmp_path / "c" / "test.json", [("q.jpg", 50, 50)], [(0, [1, 1, 10, 10])])
    test_before = (out / "test.json").read_bytes()
    code, _, err = make(data=f"coco:{b},{c}")
    assert code == 2 and "test.json" in err and "another dataset" in err
    assert (out / "test.json").read_bytes() == test_before
    code, _, err = make(data=str(b))  # train only: no test split, but the level folder holds A's boxes
    assert code == 2 and "bias-r0.3-s0" in err and "not overwriting" in err
    assert _tree(plain) == first


def test_noise_make_names_the_generator_in_the_folder(tmp_path, capsys):
    a = _two_splits(tmp_path / "a")
    out = tmp_path / "noisy"
    for extra in ((), ("--rng", "oamil-legacy")):
        code, _, err = _main(capsys, "noise", "make", "-d", a, "-l", "0.4", "-s", "0", "-o", str(out), *extra)
        assert code == 0, err
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["uniform-r0.4-s0", "uniform-r0.4-s0-oamil-legacy"]
    assert read_json(out / "uniform-r0.4-s0-oamil-legacy" / "manifest.json")["rng"] == "oamil-legacy"


def test_a_record_never_reaches_outside_its_folder(tmp_path):
    """A record edited (or crafted) to list `../file` or a path through a linked folder deletes nothing there."""
    import os

    from benchmark.owned import OwnedFolder

    precious = tmp_path / "elsewhere" / "precious.txt"
    precious.parent.mkdir()
    precious.write_text("keep")
    root = tmp_path / "out"
    (root / "sub").mkdir(parents=True)
    os.symlink(precious.parent, root / "linked")
    st = os.lstat(precious)
    stamp = [st.st_size, st.st_mtime_ns]
    write_json(root / RECORD, {"command": "bench report", "files": {
        "../elsewhere/precious.txt": stamp, str(precious): stamp, "linked/precious.txt": stamp}})
    folder = OwnedFolder(root, "bench report").open()
    assert folder.remove_earlier() == (0, [])
    assert precious.read_text() == "keep" and (root / "linked").is_symlink()
