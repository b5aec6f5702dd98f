"""`bench noise` on the real BCCD dataset (through the datasets loader), the level syntax, and clear CLI errors."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from benchmark.errors import BenchError
from benchmark.io import read_json
from noise import NOISE_MODELS, make_noisy, parse_levels
from noise.cli import model_from_spec, noise


# ---- levels -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,expected", [
    ("0.1..0.4", [0.1, 0.2, 0.3, 0.4]),
    ("0.1,0.3", [0.1, 0.3]),
    ("0.4", [0.4]),
    (0.2, [0.2]),
    ("0..0.3:0.15", [0.0, 0.15, 0.3]),
    ("0, 0.2..0.4, 0.3", [0.0, 0.2, 0.3, 0.4]),
    ("0.15..0.4", [0.15, 0.25, 0.35]),
])
def test_parse_levels(text, expected):
    assert parse_levels(text) == expected


@pytest.mark.parametrize("text,message", [
    ("", "give a level"), ("0.4..0.1", "backwards"), ("a..0.3", "'a' is not a number"), ("0.1,,0.2", "empty item"),
    ("0..1:0", "step must be > 0"), ("0.3:0.1", "needs a range"), ("nan", "not finite"),
])
def test_parse_levels_errors(text, message):
    with pytest.raises(BenchError, match=message):
        parse_levels(text)


def test_level_folders_name_each_level_exactly():
    from noise.cli import _tag

    assert [_tag("uniform", lv, 0) for lv in (0.0, 0.4, 1e-05)] == ["uniform-r0-s0", "uniform-r0.4-s0",
                                                                   "uniform-r1e-05-s0"]
    # close levels once shared a folder (6 significant digits), and 0.99999999 was named r1
    assert _tag("uniform", 0.1, 0) != _tag("uniform", 0.1000000001, 0)
    assert _tag("uniform", 0.99999999, 3) == "uniform-r0.99999999-s3"


# ---- model specs ------------------------------------------------------------------------------------------------
def test_model_from_spec():
    assert model_from_spec("bias", ("direction=shrink", "dx=0.5")) == ("bias", {"direction": "shrink", "dx": 0.5})
    model, params = model_from_spec("uniform+class_flip@0.2", ('class_flip.matrix={"1": {"2": 1}}',))
    assert params == {} and model.name == "uniform+class_flip@0.2"
    assert model.steps[1] == {"model": "class_flip", "level": 0.2, "params": {"matrix": {"1": {"2": 1}}}}
    with pytest.raises(BenchError, match="prefix each parameter"):
        model_from_spec("uniform+missing", ("x=1",))
    with pytest.raises(BenchError, match="not a step"):
        model_from_spec("uniform+missing", ("bogus.max_iou=0.1",))
    with pytest.raises(BenchError, match="use key=value"):
        model_from_spec("uniform", ("x",))


# ---- commands -----------------------------------------------------------------------------------------------------
def test_ls_lists_every_model():
    out = CliRunner().invoke(noise, ["ls"])
    assert out.exit_code == 0
    for name in NOISE_MODELS.names():
        assert any(line.startswith(name + " ") for line in out.output.splitlines()), name
    assert "[oamil-legacy]" in out.output


def test_make_stats_show_on_bccd(bccd_root, tmp_path):
    runner = CliRunner()
    out = runner.invoke(noise, ["make", "-d", str(bccd_root), "-m", "uniform", "-l", "0.1,0.3", "-s", "7",
                                "-o", str(tmp_path), "--emit", "mmdet-config"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    test = read_json(tmp_path / "test.json")
    assert len(test["images"]) == 72 and all("true_bbox" not in a for a in test["annotations"])
    ious = []
    for level in (0.1, 0.3):
        folder = tmp_path / f"uniform-r{level:g}-s7"
        m = read_json(folder / "manifest.json")
        data = read_json(folder / "train.json")
        assert m["level"] == level and m["seed"] == 7 and m["source"]["images"] == 292
        assert len(data["annotations"]) == m["source"]["annotations"] and m["counts"]["perturbed"] > 3000
        assert f"{m['realised_iou']['all']['mean']:.3f}" in out.output
        ious.append(m["realised_iou"]["all"]["mean"])
        ns: dict = {}
        exec((folder / "mmdet_config.py").read_text(), ns)
        assert ns["train_dataloader"]["dataset"]["ann_file"] == str((folder / "train.json").resolve())
        assert ns["classes"] == ("Platelets", "RBC", "WBC")
        assert Path(ns["train_img_prefix"], data["images"][0]["file_name"]).is_file()
    assert ious[0] > ious[1]
    # a train-only dataset made into the same folder: the earlier test.json is not its test split, and it says so
    alone = tmp_path / "other" / "train.json"
    alone.parent.mkdir()
    alone.write_bytes((tmp_path / "test.json").read_bytes())
    again = runner.invoke(noise, ["make", "-d", str(alone), "-l", "0.1", "-o", str(tmp_path)])
    assert again.exit_code == 0 and "was left by an earlier run" in again.output, again.output
    stats = runner.invoke(noise, ["stats", str(tmp_path / "uniform-r0.3-s7" / "train.json")])
    assert stats.exit_code == 0 and "mean IoU" in stats.output
    assert f"{ious[1]:.3f}" in stats.output.splitlines()[2]
    png = tmp_path / "show.png"
    shown = runner.invoke(noise, ["show", str(tmp_path / "uniform-r0.3-s7" / "train.json"), "-o", str(png),
                                  "-d", str(bccd_root), "--n", "4"])
    assert shown.exit_code == 0, shown.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "4 images" in shown.output
    assert "not found" not in shown.output
    # without -d: the image folder noise make recorded in mmdet_config.py beside the file
    alone = runner.invoke(noise, ["show", str(tmp_path / "uniform-r0.3-s7" / "train.json"), "-o", str(png), "--n", "2"])
    assert alone.exit_code == 0 and "2 images" in alone.output and "not found" not in alone.output, alone.output
    (tmp_path / "uniform-r0.3-s7" / "mmdet_config.py").unlink()
    lost = runner.invoke(noise, ["show", str(tmp_path / "uniform-r0.3-s7" / "train.json"), "-o", str(png), "--n", "2"])
    assert "2 image files not found" in lost.output and "--image-root" in lost.output, lost.output
    # the extension picks the format (a .jpg held PNG bytes); an unknown one is an error, not a misnamed file
    jpg = tmp_path / "show.jpg"
    runner.invoke(noise, ["show", str(tmp_path / "uniform-r0.3-s7" / "train.json"), "-o", str(jpg), "--n", "1"])
    assert jpg.read_bytes()[:3] == b"\xff\xd8\xff"
    gif = runner.invoke(noise, ["show", str(tmp_path / "uniform-r0.3-s7" / "train.json"), "-o",
                                str(tmp_path / "s.gif")])
    assert isinstance(gif.exception, BenchError) and "cannot write a .gif picture" in str(gif.exception)


def test_bccd_legacy_matches_the_per_box_loop_over_the_xml(bccd_root):
    """OA-MIL's VOC generator, box by box from the XML files in trainval.txt order, against `oamil-legacy` on the
    suite's loader. The loader drops BCCD's two zero-size point clicks, on which OA-MIL spends four draws each:
    the legacy mode spends them too, so every later box matches."""
    from benchmark.datasets import load

    train = load(str(bccd_root))["train"]
    r = make_noisy(train, "uniform", 0.4, rng="oamil-legacy")
    assert r.manifest["layout"] == "voc"
    by_image = r.dataset.annotations_by_image()
    noisy = {im["file_name"]: by_image[im["id"]] for im in r.dataset.images}
    rs = np.random.RandomState(45)
    compared = dropped = 0
    for stem in (bccd_root / "ImageSets" / "Main" / "trainval.txt").read_text().split():
        root = ET.parse(bccd_root / "Annotations" / f"{stem}.xml").getroot()
        W, H = int(root.findtext("size/width")), int(root.findtext("size/height"))
        ours = iter(noisy[f"{stem}.jpg"])
        for obj in root.findall("object"):
            b = [int(float(obj.findtext(f"bndbox/{k}"))) for k in ("xmin", "ymin", "xmax", "ymax")]
            if b[2] == b[0] or b[3] == b[1]:  # not in the suite's dataset; OA-MIL draws for it all the same
                if not int(obj.findtext("difficult") or 0):
                    rs.uniform(-0.4, 0.4, 4)
                    dropped += 1
                continue
            a = next(ours)
            if int(obj.findtext("difficult") or 0):
                assert a["bbox"] == a["true_bbox"]
                continue
            x1, y1, x2, y2 = (np.float32(v - 1) for v in b)
            bw, bh = float(x2 - x1), float(y2 - y1)
            cx, cy = float(x1 + x2) / 2, float(y1 + y2) / 2
            ncx, ncy = cx + bw * rs.uniform(-0.4, 0.4), cy + bh * rs.uniform(-0.4, 0.4)
            nw, nh = bw * (rs.uniform(-0.4, 0.4) + 1.0), bh * (rs.uniform(-0.4, 0.4) + 1.0)
            want = [max(0, ncx - nw / 2), max(0, ncy - nh / 2), min(ncx + nw / 2, W - 1), min(ncy + nh / 2, H - 1)]
            if want[2] <= want[0] or want[3] <= want[1]:
                assert a["bbox"] == a["true_bbox"]
                continue
            x, y, w, h = a["bbox"]
            assert np.array_equal(np.array([x, y, x + w - 1, y + h - 1], np.float32), np.array(want, np.float32))
            compared += 1
    assert compared > 3500 and dropped == 2


def _bench(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "benchmark.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_user_errors_are_one_line(tmp_path):
    done = _bench("noise", "make", "-d", "shapes-mini", "-l", "1.5", "-o", str(tmp_path / "o"))
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "error: noise level 1.5 for model 'uniform' must be in [0, 1)"]
    assert not (tmp_path / "o").exists()  # nothing written before the inputs are checked
    done = _bench("noise", "make", "-d", "shapes-mini", "-l", "0.2", "--layout", "voc", "-o", str(tmp_path / "v"))
    assert done.returncode == 2 and "applies to --rng oamil-legacy only" in done.stderr
    for params in (["-m", "bias", "-p", "direction=sideways"], ["-m", "per_class", "-p", 'strength={"ellipse": 3}']):
        done = _bench("noise", "make", "-d", "shapes-mini", "-l", "0.1..0.4", "-o", str(tmp_path / "p"), *params)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.strip().splitlines()[-1].startswith("error: ")  # after any dataset-generation progress
        assert not (tmp_path / "p").exists()  # a value failing at some level fails before any level is written
    clean = tmp_path / "clean.json"
    clean.write_text('{"images": [{"id": 1, "file_name": "a.jpg", "width": 9, "height": 9}], "annotations": '
                     '[{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]}], "categories": []}')
    done = _bench("noise", "stats", str(clean))
    assert done.returncode == 2 and "no `true_bbox` fields" in done.stderr and len(done.stderr.splitlines()) == 1
    done = _bench("noise", "stats", str(tmp_path / "missing.json"))
    assert done.returncode == 2 and "file not found" in done.stderr


def test_stats_count_relabels_and_removals_from_the_manifest_beside_the_file(tmp_path):
    """A relabel or a removal leaves no trace in the noisy json: `noise stats` counts them from the manifest that
    `noise make` wrote beside it, and never from a manifest describing another file."""
    out = tmp_path / "o"
    done = _bench("noise", "make", "-d", "shapes-mini", "-m", "class_flip+missing@0.2", "-l", "0.3", "-o", str(out))
    assert done.returncode == 0, done.stderr
    (folder,) = [p.parent for p in out.glob("*/manifest.json")]
    manifest = read_json(folder / "manifest.json")
    flips, drops = len(manifest["class_changes"]), len(manifest["removed"])
    assert flips > 0 and drops > 0
    done = _bench("noise", "stats", str(folder / "train.json"), "--json")
    assert done.returncode == 0, done.stderr
    stats = __import__("json").loads(done.stdout)
    assert (stats["class_changed"], stats["removed"]) == (flips, drops)
    assert f"relabelled: {flips}   removed: {drops}" in _bench("noise", "stats", str(folder / "train.json")).stdout
    moved = tmp_path / "alone.json"
    moved.write_bytes((folder / "train.json").read_bytes())
    done = _bench("noise", "stats", str(moved))
    assert done.returncode == 0 and "not known without the file's manifest" in done.stdout
    other = tmp_path / "other.json"
    other.write_bytes((folder / "train.json").read_bytes().replace(b'"id":1,', b'"id":1 ,', 1))
    done = _bench("noise", "stats", str(other), "--manifest", str(folder / "manifest.json"))
    assert done.returncode == 2 and "not the manifest of" in done.stderr and "Traceback" not in done.stderr


def test_calibrate_prints_the_level_that_gives_the_target_iou():
    done = _bench("noise", "calibrate", "-d", "shapes-mini", "-m", "uniform", "--target", "0.66")
    assert done.returncode == 0, done.stderr
    level = float(done.stdout.strip().splitlines()[-1])
    assert 0.15 < level < 0.25  # the protocol's gamma 0.2 gives ~0.66
    done = _bench("noise", "calibrate", "-d", "shapes-mini", "-m", "missing", "--target", "0.5")
    assert done.returncode == 2 and "does not move boxes" in done.stderr


def test_noise_imports_no_torch_or_detector_code():
    code = ("import sys, noise, noise.cli, noise.stats, noise.mmdet_config\n"
            "noise.NOISE_MODELS.names()\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'methods', 'mmdet')]\n"
            "assert not bad, bad\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_plugin_functions_become_models():
    from benchmark.datasets.core import DetectionDataset
    from noise import get_model

    def nudge(bs, level, rng, dx: float = 1.0):
        """Plug-in example: move every box right by dx * level pixels."""
        idx = bs.active_index()
        return bs.propose(idx, bs.boxes[idx] + np.array([dx, 0, dx, 0]) * level)

    NOISE_MODELS.add("nudge_test", nudge, origin="plugin:example")
    try:
        nm = get_model("nudge_test")
        assert nm.summary.startswith("Plug-in example") and nm.param_names == ["dx"]
        ds = DetectionDataset.from_coco({
            "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10.0, 10.0, 20.0, 20.0]}],
            "categories": [{"id": 1, "name": "a"}]})
        r = make_noisy(ds, "nudge_test", 0.5, dx=4.0)
        a = r.dataset.annotations[0]
        assert a["bbox"][0] == pytest.approx(a["true_bbox"][0] + 2.0)
    finally:
        NOISE_MODELS._items.pop("nudge_test", None)
        NOISE_MODELS._origin.pop("nudge_test", None)
