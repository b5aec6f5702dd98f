"""Property: a malformed dataset never raises anything but `BenchError` (one line, exit 2), whatever is broken.

Each example writes a valid dataset in one format, breaks it one random way (a field set to a value of another
type, a key or element removed, bytes flipped or cut, a file replaced by a folder) and loads it through the public
loader (`benchmark.datasets.load`) and `check`, as `bench data check` does. Loading may succeed (the damage was a
box the loader drops and counts) or raise `BenchError`; any other exception is a bug.
"""

from __future__ import annotations

import json
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from property_strategies import SETTINGS, datasets, write_images

from benchmark.datasets import load
from benchmark.datasets.check import check
from benchmark.datasets.coco import save_coco
from benchmark.datasets.voc import save_voc
from benchmark.datasets.yolo import save_yolo
from benchmark.errors import BenchError

# JSON values of every kind, the odd ones included: bools where ids go, huge and negative numbers, empty and
# numeric strings, a NUL, nesting
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.sampled_from([0, 1, -1, 2**63, 2**64])
    | st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([1e308, -0.0, 0.5])
    | st.text(max_size=8) | st.sampled_from(["", "1", "0", "\x00", "a/b", "../x", "true"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6)
TEXT = st.text(max_size=20) | st.sampled_from(["nan", "inf", "-1", "1e400", "", " ", "0x10", "\x00", "1 2", "é"])
LINE_TOKENS = st.lists(st.sampled_from(["0", "1", "7", "-1", "0.5", "1.5", "nan", "inf", "-inf", "1e400", "x", "0.0",
                                        "2.5e-1", "\x00", ""]), max_size=9)


def _load_and_check(spec: Path) -> None:
    try:
        splits = load(spec, progress=False)
        for ds in splits.values():
            check(ds, images=True, progress=False)
    except BenchError as exc:
        assert "\n" not in str(exc), str(exc)


def _break_bytes(data, path: Path) -> None:
    """One byte-level injury to `path`: cut, flipped byte, non-UTF-8 bytes, or a folder in its place."""
    raw = path.read_bytes()
    how = data.draw(st.sampled_from(["cut", "flip", "garbage", "folder", "empty"]), label="how")
    if how == "folder":
        path.unlink()
        path.mkdir()
        return
    if how == "empty":
        path.write_bytes(b"")
        return
    pos = data.draw(st.integers(0, max(len(raw) - 1, 0)), label="pos")
    if how == "cut":
        path.write_bytes(raw[:pos])
    elif how == "flip":
        path.write_bytes(raw[:pos] + bytes([raw[pos] ^ data.draw(st.integers(1, 255), label="xor")]) + raw[pos + 1:]
                         if raw else b"\xff")
    else:
        path.write_bytes(raw[:pos] + data.draw(st.binary(min_size=1, max_size=6), label="bytes") + raw[pos:])


# ---- COCO ---------------------------------------------------------------------------------------------------------
def _json_paths(obj, prefix=()):
    """Every (container path, key) in a JSON object, for a mutation to pick from."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append((prefix, k))
            out += _json_paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.append((prefix, i))
            out += _json_paths(v, prefix + (i,))
    return out


def _at(obj, path):
    for k in path:
        obj = obj[k]
    return obj


@SETTINGS
@given(datasets(ignore=True), st.data())
def test_malformed_coco_raises_only_bench_errors(ds, data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.json"
        write_images(ds, Path(tmp))
        coco = ds.to_coco()
        how = data.draw(st.sampled_from(["set", "set", "set", "delete", "top", "bytes"]), label="mutation")
        if how == "bytes":
            save_coco(ds, path)
            _break_bytes(data, path)
        else:
            if how == "top":
                coco = data.draw(JSON_VALUES, label="file")
            else:
                container, key = data.draw(st.sampled_from(_json_paths(coco)), label="where")
                if how == "set":
                    _at(coco, container)[key] = data.draw(JSON_VALUES, label="value")
                else:
                    del _at(coco, container)[key]
            path.write_text(json.dumps(coco))
        _load_and_check(path)


# ---- VOC ----------------------------------------------------------------------------------------------------------
@SETTINGS
@given(datasets(integer=True, min_side=2, ignore=True), st.data())
def test_malformed_voc_raises_only_bench_errors(ds, data):
    with tempfile.TemporaryDirectory() as tmp:
        write_images(ds, Path(tmp) / "src")
        root = Path(tmp) / "voc"
        save_voc(ds, root, "trainval", images="copy")
        xmls = sorted((root / "Annotations").glob("*.xml"))
        target = data.draw(st.sampled_from(xmls + [root / "ImageSets" / "Main" / "trainval.txt"]), label="file")
        how = data.draw(st.sampled_from(["text", "text", "remove", "bytes", "split_line"]), label="mutation")
        if how == "split_line":
            ids = (root / "ImageSets" / "Main" / "trainval.txt").read_text()
            line = data.draw(TEXT | st.sampled_from(["a/b", "../x", ".", "..", "missing", "x y z"]), label="id")
            (root / "ImageSets" / "Main" / "trainval.txt").write_text(ids + line + "\n")
        elif how == "bytes" or target.suffix == ".txt":
            _break_bytes(data, target)
        else:
            tree = ET.parse(target)
            elems = list(tree.getroot().iter())
            el = data.draw(st.sampled_from(elems), label="element")
            if how == "text":
                el.text = data.draw(TEXT, label="text").replace("\x00", "")  # XML cannot hold NUL at all
            else:
                parent = next((p for p in elems if el in list(p)), None)
                if parent is not None:
                    parent.remove(el)
            tree.write(target)
        _load_and_check(root)


# ---- YOLO ---------------------------------------------------------------------------------------------------------
YAML_TEXT = st.sampled_from([
    "names: [a, b]\n", "names: {0: a, 2: b}\n", "names: {a: 0}\n", "names: []\n", "names: 5\n", "names: [[1, 2]]\n",
    "nc: x\nnames: [a]\n", "nc: 3\nnames: [a]\n", "train: 5\nnames: [a]\n", "train: []\nnames: [a]\n",
    "train: [images/train, nowhere]\nnames: [a]\n", "train: /nonexistent\nnames: [a]\n", "path: 5\nnames: [a]\n",
    "path: ../../..\ntrain: images/train\nnames: [a]\n", "names: [a, a]\n", "names:\n  - a\n  -\n",
    "train: images/train\nval: images/train\nnames: [a]\n", "- a\n- b\n", "just text\n", "names: {0: a, 1: [x]}\n",
    "train: images/train\nnames: [a]\n: bad\n  - x\n", "names: !!binary aGVsbG8=\n", "names: [a]\ntrain: ''\n",
    "names: [a]\ntrain: list.txt\n", "names: {-1: a}\n", "names: {0.5: a}\n", "names: {true: a}\n", "",
])


@SETTINGS
@given(datasets(ignore=False), st.data())
def test_malformed_yolo_raises_only_bench_errors(ds, data):
    with tempfile.TemporaryDirectory() as tmp:
        write_images(ds, Path(tmp) / "src")
        root = Path(tmp) / "yolo"
        save_yolo(ds, root, "train", images="copy")
        labels = sorted((root / "labels" / "train").glob("*.txt"))
        images = sorted((root / "images" / "train").glob("*.png"))
        how = data.draw(st.sampled_from(["line", "line", "yaml", "yaml_values", "yaml_bytes", "label_bytes",
                                         "image_bytes", "list"]), label="mutation")
        if how == "line":
            label = data.draw(st.sampled_from(labels), label="label")
            tokens = data.draw(LINE_TOKENS, label="tokens")
            label.write_text(label.read_text() + " ".join(tokens) + "\n")
        elif how == "yaml":
            (root / "data.yaml").write_text(data.draw(YAML_TEXT, label="yaml"))
        elif how == "yaml_values":  # any YAML structure under the keys the loader reads
            import yaml

            doc = {"names": [c["name"] for c in sorted(ds.categories, key=lambda c: c["id"])], "train": "images/train"}
            doc.update(data.draw(st.dictionaries(st.sampled_from(["names", "nc", "train", "val", "test", "path"]),
                                                 JSON_VALUES, min_size=1, max_size=3), label="keys"))
            (root / "data.yaml").write_text(yaml.safe_dump(doc))
        elif how == "yaml_bytes":
            _break_bytes(data, root / "data.yaml")
        elif how == "label_bytes":
            _break_bytes(data, data.draw(st.sampled_from(labels), label="label"))
        elif how == "image_bytes":
            _break_bytes(data, data.draw(st.sampled_from(images), label="image"))
        else:
            lines = data.draw(st.lists(TEXT | st.sampled_from(["images/train/img0.png", "nowhere.png", "../x.png"]),
                                       max_size=4), label="list")
            (root / "list.txt").write_text("\n".join(lines) + "\n")
            (root / "data.yaml").write_text("train: list.txt\nnames: [" + ", ".join(
                json.dumps(c["name"]) for c in sorted(ds.categories, key=lambda c: c["id"])) + "]\n")
        _load_and_check(root)


def test_bench_data_check_prints_one_line_for_a_broken_dataset(tmp_path, capsys):
    """The CLI end of the same contract, once: exit 2 and a single `error:` line."""
    from benchmark.cli import main

    (tmp_path / "train.json").write_text('{"images": [], "annotations": [], "categories": [{"id": true, "name": "a"}]}')
    with pytest.raises(SystemExit) as exc:
        main(["data", "check", str(tmp_path / "train.json")])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and err.startswith("error: ")
