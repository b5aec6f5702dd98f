"""`bench noise show`: which images (ids, the worst noisy boxes, one class) and what is drawn (refined, predicted)."""

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from benchmark.datasets.core import DetectionDataset
from benchmark.errors import BenchError
from benchmark.io import write_json
from noise.cli import noise
from noise.show import choose_images, noisy_ious

CATS = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]


def ann(aid, image_id, cat, bbox, true_bbox):
    return {"id": aid, "image_id": image_id, "category_id": cat, "bbox": bbox, "true_bbox": true_bbox,
            "area": bbox[2] * bbox[3], "iscrowd": 0}


def noisy_file(tmp_path):
    images = [{"id": i, "file_name": f"{i}.png", "width": 64, "height": 64} for i in (1, 2, 3, 4)]
    anns = [ann(10, 1, 1, [10, 10, 20, 20], [10, 10, 20, 20]),   # IoU 1
            ann(11, 2, 1, [15, 10, 20, 20], [10, 10, 20, 20]),   # shifted by a quarter: IoU 15*20/(2*400-300) = 0.6
            ann(12, 3, 2, [20, 10, 20, 20], [10, 10, 20, 20]),   # shifted by half: IoU 200/600 = 1/3
            ann(13, 4, 1, [10, 10, 10, 10], [10, 10, 20, 20])]   # a quarter of the area: IoU 0.25
    for im in images:
        Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(tmp_path / im["file_name"])
    path = tmp_path / "train.json"
    write_json(path, {"images": images, "annotations": anns, "categories": CATS})
    return path, images, anns


def test_ious_are_the_hand_computed_ones(tmp_path):
    _, _, anns = noisy_file(tmp_path)
    assert noisy_ious(anns) == pytest.approx({10: 1.0, 11: 0.6, 12: 1 / 3, 13: 0.25})


def test_worst_picks_the_lowest_iou_images_first(tmp_path):
    _, images, anns = noisy_file(tmp_path)
    ds = DetectionDataset(images=images, annotations=anns, categories=CATS)
    chosen = choose_images(ds, ds.annotations_by_image(), {}, n=6, seed=0, worst=2)
    assert [im["id"] for im in chosen] == [4, 3]


def test_cli_ids_worst_class_and_extra_layers(tmp_path):
    path, _, _ = noisy_file(tmp_path)
    runner = CliRunner()
    png = tmp_path / "out.png"
    by_id = runner.invoke(noise, ["show", str(path), "-o", str(png), "--image-id", "3", "--image-id", "1"])
    assert by_id.exit_code == 0, by_id.output
    assert "2 images (ids 3, 1)" in by_id.output and png.read_bytes()[:4] == b"\x89PNG"
    worst_dogs = runner.invoke(noise, ["show", str(path), "-o", str(png), "--worst", "5", "--class", "dog"])
    assert "1 images (ids 3)" in worst_dogs.output, worst_dogs.output
    write_json(tmp_path / "refined.json", [{"id": 13, "image_id": 4, "category_id": 1, "bbox": [10, 10, 19, 19]}])
    write_json(tmp_path / "preds.json", [{"image_id": 4, "category_id": 1, "bbox": [9, 9, 20, 20], "score": 0.9}])
    plain = runner.invoke(noise, ["show", str(path), "-o", str(tmp_path / "a.png"), "--image-id", "4"])
    layered = runner.invoke(noise, ["show", str(path), "-o", str(tmp_path / "b.png"), "--image-id", "4",
                                    "--refined", str(tmp_path / "refined.json"),
                                    "--predictions", str(tmp_path / "preds.json")])
    assert plain.exit_code == layered.exit_code == 0, layered.output
    a = np.asarray(Image.open(tmp_path / "a.png").convert("RGB")).astype(int)
    b = np.asarray(Image.open(tmp_path / "b.png").convert("RGB")).astype(int)
    blue = (np.abs(b - [31, 95, 209]).max(axis=2) < 30).sum() - (np.abs(a - [31, 95, 209]).max(axis=2) < 30).sum()
    assert blue > 50  # the refined box was drawn


@pytest.mark.parametrize("args, message", [(["--image-id", "99"], "no image with id 99"),
                                           (["--class", "horse"], "no category 'horse'"),
                                           (["--worst", "0"], "--worst must be at least 1")])
def test_bad_choices_are_one_line_errors(tmp_path, args, message):
    path, _, _ = noisy_file(tmp_path)
    r = CliRunner().invoke(noise, ["show", str(path), "-o", str(tmp_path / "x.png"), *args])
    assert isinstance(r.exception, BenchError) and message in str(r.exception)


def test_a_refined_file_that_is_not_boxes_is_refused(tmp_path):
    path, _, _ = noisy_file(tmp_path)
    write_json(tmp_path / "r.json", {"not": "a list"})
    r = CliRunner().invoke(noise, ["show", str(path), "-o", str(tmp_path / "x.png"),
                                   "--refined", str(tmp_path / "r.json")])
    assert isinstance(r.exception, BenchError) and "--refined must be a list" in str(r.exception)
