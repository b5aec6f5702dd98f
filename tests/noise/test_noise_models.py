"""Noise models: the OA-MIL protocol (realised IoU, factor distributions, clipping, keep-clean, ignored boxes, the
legacy generator against a per-box loop), the other models, monotonicity, calibration, composition, bad input."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from scipy import stats

from benchmark.datasets.core import DetectionDataset
from benchmark.errors import BenchError
from benchmark.io import write_json
from noise import NOISE_MODELS, calibrate, compose, get_model, make_noisy, make_noisy_levels

CATS = [{"id": 1, "name": "a"}, {"id": 3, "name": "b"}, {"id": 7, "name": "c"}]


def synthetic(n_images=300, per_image=8, size=(4000, 3000), box=(60.0, 240.0), margin=800.0, seed=1,
              decimals=2) -> DetectionDataset:
    """Boxes far from the image border (no clipping up to level 0.4 and beyond)."""
    rng = np.random.default_rng(seed)
    W, H = size
    images = [{"id": 10 + i, "file_name": f"{i}.jpg", "width": W, "height": H} for i in range(n_images)]
    anns = []
    for k in range(n_images * per_image):
        w, h = rng.uniform(*box, 2)
        x, y = rng.uniform(margin, W - margin - w), rng.uniform(margin, H - margin - h)
        anns.append({"id": k + 1, "image_id": 10 + k % n_images, "category_id": CATS[k % 3]["id"],
                     "bbox": [round(x, decimals), round(y, decimals), round(w, decimals), round(h, decimals)]})
    return DetectionDataset.from_coco({"images": images, "annotations": anns, "categories": CATS}, name="syn")


def xyxy(bbox):
    b = np.asarray(bbox, dtype=np.float64).reshape(-1, 4)
    return np.stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]], axis=1)


def boxes_of(ds):
    return xyxy([a["bbox"] for a in ds.annotations]), xyxy([a["true_bbox"] for a in ds.annotations])


def factors(noisy, clean):
    """The four protocol factors recovered from unclipped noisy boxes."""
    w, h = clean[:, 2] - clean[:, 0], clean[:, 3] - clean[:, 1]
    cx, cy = (clean[:, 0] + clean[:, 2]) / 2, (clean[:, 1] + clean[:, 3]) / 2
    ncx, ncy = (noisy[:, 0] + noisy[:, 2]) / 2, (noisy[:, 1] + noisy[:, 3]) / 2
    nw, nh = noisy[:, 2] - noisy[:, 0], noisy[:, 3] - noisy[:, 1]
    return (ncx - cx) / w, (ncy - cy) / h, nw / w - 1, nh / h - 1


@pytest.fixture(scope="module")
def big():
    return synthetic()


# ---- the OA-MIL protocol ------------------------------------------------------------------------------------
@pytest.mark.parametrize("rng_mode", ["numpy", "oamil-legacy"])
def test_uniform_realised_iou_matches_the_protocol(big, rng_mode):
    results = make_noisy_levels(big, "uniform", [0.1, 0.2, 0.3, 0.4], rng=rng_mode)
    for r, expected in zip(results, (0.81, 0.66, 0.55, 0.45)):
        assert r.manifest["counts"]["clipped"] == 0 and r.manifest["counts"]["perturbed"] == len(big.annotations)
        assert r.manifest["realised_iou"]["all"]["mean"] == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize("rng_mode", ["numpy", "oamil-legacy"])
def test_uniform_factors_are_independent_uniforms(big, rng_mode):
    gamma = 0.3
    noisy, clean = boxes_of(make_noisy(big, "uniform", gamma, seed=3, rng=rng_mode).dataset)
    fs = factors(noisy, clean)
    for f in fs:
        assert np.abs(f).max() <= gamma + 1e-3
        assert stats.kstest(f, "uniform", args=(-gamma, 2 * gamma)).pvalue > 1e-3
        # the test has power: a slightly narrower uniform is rejected
        assert stats.kstest(f, "uniform", args=(-0.85 * gamma, 1.7 * gamma)).pvalue < 1e-4
    corr = np.corrcoef(np.stack(fs))
    assert np.abs(corr - np.eye(4)).max() < 0.05


def test_gaussian_shift_scale_bias_factor_shapes(big):
    noisy, clean = boxes_of(make_noisy(big, "gaussian", 0.2, seed=1).dataset)
    fx, fy, fw, fh = factors(noisy, clean)
    assert stats.kstest(fx / 0.2, "norm").pvalue > 1e-3
    assert stats.kstest(np.log1p(fw) / 0.2, "norm").pvalue > 1e-3
    noisy, clean = boxes_of(make_noisy(big, "shift", 0.3, seed=1).dataset)
    fx, fy, fw, fh = factors(noisy, clean)
    assert np.abs(fw).max() < 1e-3 and np.abs(fh).max() < 1e-3
    assert stats.kstest(fx, "uniform", args=(-0.3, 0.6)).pvalue > 1e-3
    noisy, clean = boxes_of(make_noisy(big, "scale", 0.3, seed=1).dataset)
    fx, fy, fw, fh = factors(noisy, clean)
    assert np.abs(fx).max() < 1e-3 and np.abs(fy).max() < 1e-3
    assert stats.kstest(fh, "uniform", args=(-0.3, 0.6)).pvalue > 1e-3
    r = make_noisy(big, "bias", 0.25)
    noisy, clean = boxes_of(r.dataset)
    fx, fy, fw, fh = factors(noisy, clean)
    assert np.allclose(fw, 0.25, atol=1e-3) and np.allclose(fx, 0, atol=1e-3)
    assert r.manifest["realised_iou"]["all"]["mean"] == pytest.approx(1 / 1.25 ** 2, abs=1e-3)
    noisy, clean = boxes_of(make_noisy(big, "bias", 0.2, direction="shrink", dx=1.0).dataset)
    fx, fy, fw, fh = factors(noisy, clean)
    assert np.allclose(fw, -0.2, atol=1e-3) and np.allclose(fx, 0.2, atol=1e-3) and np.allclose(fy, 0, atol=1e-3)


def edge_dataset() -> DetectionDataset:
    """Boxes touching or crossing the border of a 100 x 80 image, one entirely outside it, crowd / difficult /
    ignore boxes, and an image without boxes."""
    images = [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
              {"id": 2, "file_name": "b.jpg", "width": 100, "height": 80}]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0.0, 0.0, 30.0, 20.0]},  # top-left corner
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [70.0, 60.0, 30.0, 20.0]},  # bottom-right, x2 = W
        {"id": 3, "image_id": 1, "category_id": 3, "bbox": [120.0, 10.0, 10.0, 10.0]},  # outside the image
        {"id": 4, "image_id": 1, "category_id": 3, "bbox": [40.0, 30.0, 20.0, 20.0], "iscrowd": 1},
        {"id": 5, "image_id": 1, "category_id": 7, "bbox": [10.0, 40.0, 20.0, 20.0], "difficult": 1},
        {"id": 6, "image_id": 1, "category_id": 7, "bbox": [50.0, 10.0, 20.0, 20.0], "ignore": 1},
    ]
    return DetectionDataset.from_coco({"images": images, "annotations": anns, "categories": CATS})


def test_clipping_and_keep_clean_rules():
    ds = edge_dataset()
    r = make_noisy(ds, "uniform", 0.4, seed=0)
    by_id = {a["id"]: a for a in r.dataset.annotations}
    for a in r.dataset.annotations:
        x1, y1, x2, y2 = xyxy(a["bbox"])[0]
        if a["id"] in (1, 2):
            assert x1 >= 0 and y1 >= 0 and x2 <= 99 and y2 <= 79  # [0, W-1] x [0, H-1]
    assert by_id[2]["bbox"][0] + by_id[2]["bbox"][2] <= 99  # the clean x2 = W always gets clipped
    assert by_id[3]["bbox"] == by_id[3]["true_bbox"] == [120.0, 10.0, 10.0, 10.0]  # collapses -> clean kept
    c = r.manifest["counts"]
    assert c["kept_clean_degenerate"] == 1 and c["clipped"] >= 1 and c["perturbed"] == 2
    assert c["untouched_ignored"] == 3
    for i in (4, 5, 6):
        assert by_id[i]["bbox"] == by_id[i]["true_bbox"] == ds.annotations[i - 1]["bbox"]
    # legacy: the outside box does not survive mmdet's filter, so it is not even drawn for
    legacy = make_noisy(ds, "uniform", 0.4, rng="oamil-legacy").manifest["counts"]
    assert legacy["untouched_filtered"] == 1 and legacy["kept_clean_degenerate"] == 0


def test_ignored_boxes_spend_no_draws_in_legacy_mode():
    ds = edge_dataset()
    without = DetectionDataset.from_coco({"images": ds.images, "categories": CATS,
                                          "annotations": [a for a in ds.annotations if not a["ignore"]]})
    a = {x["id"]: x["bbox"] for x in make_noisy(ds, "uniform", 0.3, rng="oamil-legacy").dataset.annotations}
    b = {x["id"]: x["bbox"] for x in make_noisy(without, "uniform", 0.3, rng="oamil-legacy").dataset.annotations}
    assert all(a[i] == b[i] for i in b)


def test_images_without_boxes_stay_with_an_empty_list():
    ds = edge_dataset()
    for mode in ("numpy", "oamil-legacy"):
        noisy = make_noisy(ds, "uniform", 0.2, rng=mode).dataset
        assert [im["id"] for im in noisy.images] == [1, 2]
        assert noisy.annotations_by_image()[2] == []


def test_level_zero_changes_nothing(big):
    for model in ("uniform", "gaussian", "shift", "scale", "bias", "missing", "class_flip", "bogus", "una"):
        r = make_noisy(big, model, 0.0)
        assert all(a["bbox"] == a["true_bbox"] for a in r.dataset.annotations), model
        assert len(r.dataset.annotations) == len(big.annotations), model
        assert r.manifest["counts"]["perturbed"] == 0 and r.manifest["counts"]["class_changed"] == 0


# ---- oamil-legacy against a straightforward per-box loop ---------------------------------------------------
def oamil_loop(coco: dict, gamma: float, voc: bool = False, seed: int = 45, collapsed: set | None = None) -> dict:
    """OA-MIL's generator as its description reads, box by box (image order, file order within an image), with the
    NumPy 1.x arithmetic: float32 op float32 stays float32, anything with a Python float is float64. Returns
    annotation id -> float32 xyxy in mmdet's frame. Where the perturbed box collapses the script appends the box it
    read (`noisy_bboxes.append(bbox)`): mmdet's parse, never clipped to the image; those ids go into `collapsed`."""
    rs = np.random.RandomState(seed)
    cat_ids = {c["id"] for c in coco["categories"]}
    per_image = defaultdict(list)
    for a in coco["annotations"]:
        per_image[a["image_id"]].append(a)
    out = {}
    for img in coco["images"]:
        W, H = img["width"], img["height"]
        for a in per_image[img["id"]]:
            if voc:  # mmdet 2.x VOC parser: difficult -> ignore list; int coordinates - 1
                if a["difficult"]:
                    continue
                xmin, ymin, xmax, ymax = a["voc"]
                box = [np.float32(int(float(v)) - 1) for v in (xmin, ymin, xmax, ymax)]
            else:  # mmdet 2.x COCO parser
                if a.get("ignore", False):
                    continue
                x, y, w, h = a["bbox"]
                inter_w = max(0, min(x + w, W) - max(x, 0))
                inter_h = max(0, min(y + h, H) - max(y, 0))
                if inter_w * inter_h == 0 or a["area"] <= 0 or w < 1 or h < 1 or a["category_id"] not in cat_ids:
                    continue
                if a.get("iscrowd", False):
                    continue
                box = [np.float32(v) for v in (x, y, x + w, y + h)]
            x1, y1, x2, y2 = box
            bw, bh = float(x2 - x1), float(y2 - y1)
            cx, cy = float(x1 + x2) / 2, float(y1 + y2) / 2
            ncx = cx + bw * rs.uniform(-gamma, gamma)
            ncy = cy + bh * rs.uniform(-gamma, gamma)
            nw = bw * (rs.uniform(-gamma, gamma) + 1.0)
            nh = bh * (rs.uniform(-gamma, gamma) + 1.0)
            nx1, ny1 = max(0, ncx - nw / 2), max(0, ncy - nh / 2)
            nx2, ny2 = min(ncx + nw / 2, W - 1), min(ncy + nh / 2, H - 1)
            if nx2 <= nx1 or ny2 <= ny1:
                out[a["id"]] = np.array(box, np.float32)
                if collapsed is not None:
                    collapsed.add(a["id"])
            else:
                out[a["id"]] = np.array([nx1, ny1, nx2, ny2], np.float32)
    return out


@pytest.mark.parametrize("high", [50, 2 ** 20, 2 ** 40])
def test_legacy_image_order_is_a_stable_sort(high):
    """The radix sort behind `legacy_order` (the draw order) equals NumPy's stable sort, ties in file order, above
    16 bits and (falling back) above 32 bits."""
    from noise.legacy import stable_order

    values = np.random.default_rng(1).integers(0, high, 5000).astype(np.int64)
    assert np.array_equal(stable_order(values), np.argsort(values, kind="stable"))
    assert stable_order(np.zeros(0, np.int64)).size == 0


def legacy_coco(seed=5, n_images=60, per_image=12) -> dict:
    """Images in shuffled id order, annotations interleaved across images, every filter case and many edge boxes."""
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.arange(1, n_images + 1)).tolist()
    images = [{"id": i, "file_name": f"{i}.jpg", "width": int(rng.integers(64, 400)),
               "height": int(rng.integers(64, 400))} for i in ids]
    size = {im["id"]: (im["width"], im["height"]) for im in images}
    anns = []
    for k in range(n_images * per_image):
        img = ids[int(rng.integers(0, n_images))]
        W, H = size[img]
        w, h = float(rng.uniform(0.5, 0.6 * W)), float(rng.uniform(0.5, 0.6 * H))
        x, y = float(rng.uniform(-0.3 * w, W - 0.7 * w)), float(rng.uniform(-0.3 * h, H - 0.7 * h))
        a = {"id": 1000 + k, "image_id": img, "category_id": CATS[k % 3]["id"],
             "bbox": [round(x, 3), round(y, 3), round(w, 3), round(h, 3)], "area": round(w * h, 3), "iscrowd": 0}
        kind = k % 17
        if kind == 1:
            a["iscrowd"] = 1
        elif kind == 2:
            a["area"] = 0.0
        elif kind == 3:
            a["bbox"][0] = W + 5.0  # no overlap with the image
        elif kind == 4:
            a["category_id"] = 99  # unknown category
        elif kind == 5:
            a["ignore"] = 1
        anns.append(a)
    return {"images": images, "annotations": anns, "categories": CATS}


@pytest.mark.parametrize("gamma,from_file", [(0.1, False), (0.4, False), (0.9, False), (0.4, True)])
def test_legacy_coco_equals_the_per_box_loop(gamma, from_file, tmp_path):
    """From a file, the loader clips the boxes crossing the border (and drops those outside): legacy mode must still
    perturb what mmdet 2.x read, the boxes as the file had them."""
    from benchmark.datasets import load_coco

    coco = legacy_coco()
    if from_file:
        ds = load_coco(write_json(tmp_path / "train.json", coco))
        assert ds.info["fixed"]["box_clipped_to_image"] > 20 and ds.info["skipped"]["box_outside_image"] > 5
    else:
        ds = DetectionDataset.from_coco(coco)
    r = make_noisy(ds, "uniform", gamma, rng="oamil-legacy")
    collapsed = set()
    expected = oamil_loop(coco, gamma, collapsed=collapsed)
    got = {a["id"]: a for a in r.dataset.annotations}
    assert r.manifest["seed"] == 45 and r.manifest["layout"] == "coco"
    for aid, want in expected.items():
        a = got[aid]
        x, y, w, h = a["bbox"]
        assert np.array_equal(np.array([x, y, x + w, y + h], np.float32), want), aid
        assert np.float32(x) == want[0] and np.float32(x + w) == want[2]  # lossless float32
    untouched = set(got) - set(expected)
    assert all(got[i]["bbox"] == got[i]["true_bbox"] for i in untouched)
    c = r.manifest["counts"]
    assert c["perturbed"] + c["kept_clean_degenerate"] == len(expected)
    assert c["untouched_ignored"] + c["untouched_filtered"] == len(untouched)
    if gamma == 0.9:
        assert c["kept_clean_degenerate"] > 0 and collapsed


def test_legacy_collapsed_box_outside_its_image_is_written_unclipped(tmp_path):
    """Where a box crosses its image's border and the perturbed box collapses, the published script appends the box
    it read (unclipped); the loader's clean copy is clipped, and that clipped copy must not be written instead."""
    from benchmark.datasets import load_coco

    rng = np.random.default_rng(11)
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 80} for i in range(1, 41)]
    anns = []
    for k in range(400):  # thin boxes hanging off the right or bottom edge: at gamma 0.9 many collapse
        right = k % 2 == 0
        w, h = (float(rng.uniform(3, 12)), float(rng.uniform(20, 40))) if right else \
            (float(rng.uniform(20, 40)), float(rng.uniform(3, 12)))
        x = 100 - w / 3 if right else float(rng.uniform(0, 50))
        y = float(rng.uniform(0, 30)) if right else 80 - h / 3
        anns.append({"id": k + 1, "image_id": 1 + k % 40, "category_id": 1, "iscrowd": 0, "area": w * h,
                     "bbox": [round(x, 3), round(y, 3), round(w, 3), round(h, 3)]})
    coco = {"images": images, "annotations": anns, "categories": CATS}
    ds = load_coco(write_json(tmp_path / "train.json", coco))
    assert ds.info["fixed"]["box_clipped_to_image"] == len(anns)
    r = make_noisy(ds, "uniform", 0.9, rng="oamil-legacy")
    collapsed = set()
    expected = oamil_loop(coco, 0.9, collapsed=collapsed)
    assert len(collapsed) > 20
    got = {a["id"]: a for a in r.dataset.annotations}
    for aid in collapsed:
        x, y, w, h = got[aid]["bbox"]
        written = np.array([x, y, x + w, y + h], np.float32)
        assert np.array_equal(written, expected[aid]), aid  # the box as read, bit for bit
        assert written[2] > 99 or written[3] > 79  # ... which lies past the border (the clean copy does not)
        tx, ty, tw, th = got[aid]["true_bbox"]
        assert tx + tw <= 100 and ty + th <= 80
    assert r.manifest["notes"]["kept_unclipped_source"] == len(collapsed)


def test_legacy_voc_collapsed_box_past_the_border_is_written_unclipped(tmp_path):
    """The VOC form of the same rule: the box as mmdet's VOC parser read it (int corners - 1, past the border),
    back in the suite's frame."""
    from benchmark.datasets import load_voc

    rng = np.random.default_rng(5)
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    images, raw, stems = [], [], []
    for i in range(40):
        stem = f"im{i:03d}"
        stems.append(stem)
        images.append({"id": i + 1, "file_name": f"{stem}.jpg", "width": 100, "height": 80})
        objects = []
        for _ in range(8):  # thin boxes hanging 1/3 past the right border
            w, h = int(rng.integers(4, 12)), int(rng.integers(20, 40))
            xmin, ymin = 100 - 2 * w // 3, int(rng.integers(1, 30))
            raw.append({"id": len(raw) + 1, "image_id": i + 1, "category_id": 1, "difficult": 0,
                        "voc": (xmin, ymin, xmin + w, ymin + h)})
            objects.append(f"<object><name>cell</name><difficult>0</difficult><bndbox><xmin>{xmin}</xmin>"
                           f"<ymin>{ymin}</ymin><xmax>{xmin + w}</xmax><ymax>{ymin + h}</ymax></bndbox></object>")
        (tmp_path / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.jpg</filename><size><width>100</width><height>80</height>"
            f"<depth>3</depth></size>{''.join(objects)}</annotation>")
    (tmp_path / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(stems) + "\n")
    ds = load_voc(tmp_path, "trainval")
    r = make_noisy(ds, "uniform", 0.9, rng="oamil-legacy")
    collapsed = set()
    expected = oamil_loop({"images": images, "annotations": raw, "categories": [{"id": 1, "name": "cell"}]}, 0.9,
                          voc=True, collapsed=collapsed)
    assert len(collapsed) > 10
    got = {a["id"]: a for a in r.dataset.annotations}
    assert len(got) == len(raw)
    for aid in collapsed:
        x, y, w, h = got[aid]["bbox"]
        assert np.array_equal(np.array([x, y, x + w - 1, y + h - 1], np.float32), expected[aid]), aid
        assert x + w > 100  # past the border, as the file had it


def test_legacy_arithmetic_is_numpy1_not_nep50():
    """The float64 intermediates matter: NEP 50 float32 arithmetic gives different last bits for some boxes."""
    coco = legacy_coco(n_images=200, per_image=20)
    r = make_noisy(DetectionDataset.from_coco(coco), "uniform", 0.4, rng="oamil-legacy")
    rs = np.random.RandomState(45)
    anns = {a["id"]: a for a in r.dataset.annotations}
    collapsed = set()
    expected = oamil_loop(coco, 0.4, collapsed=collapsed)
    order = [aid for aid in expected]  # the loop's draw order
    u = rs.uniform(-0.4, 0.4, (len(order), 4))
    differ = 0
    src = {a["id"]: a for a in coco["annotations"]}
    for k, aid in enumerate(order):
        if aid in collapsed:
            continue
        x, y, w, h = src[aid]["bbox"]
        x1, x2 = np.float32(x), np.float32(x + w)
        bw = x2 - x1
        ncx = (x1 + x2) / np.float32(2) + bw * np.float32(u[k, 0])  # float32 throughout (NumPy >= 2 scalars)
        nw = bw * np.float32(u[k, 2] + 1.0)
        nx1 = max(np.float32(0), ncx - nw / np.float32(2))
        a = anns[aid]
        differ += np.float32(a["bbox"][0]) != nx1 and nx1 > 0
    assert differ > 0


def voc_like(seed=7, n_images=40) -> tuple[dict, DetectionDataset]:
    """A VOC-style set (integer corners, difficult flags) and the dataset the VOC loader makes of it."""
    rng = np.random.default_rng(seed)
    images, raw = [], []
    for i in range(n_images):
        W, H = int(rng.integers(100, 500)), int(rng.integers(100, 500))
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "width": W, "height": H})
        for _ in range(int(rng.integers(0, 6))):
            xmin, ymin = int(rng.integers(1, W - 10)), int(rng.integers(1, H - 10))
            xmax, ymax = int(rng.integers(xmin, W + 1)), int(rng.integers(ymin, H + 1))
            raw.append({"id": len(raw) + 1, "image_id": i + 1, "category_id": CATS[len(raw) % 3]["id"],
                        "voc": (xmin, ymin, xmax, ymax), "difficult": int(rng.random() < 0.15)})
    anns = [{"id": a["id"], "image_id": a["image_id"], "category_id": a["category_id"],
             "bbox": [a["voc"][0] - 1.0, a["voc"][1] - 1.0, a["voc"][2] - a["voc"][0] + 1.0,
                      a["voc"][3] - a["voc"][1] + 1.0], "difficult": a["difficult"], "iscrowd": 0} for a in raw]
    ds = DetectionDataset.from_coco({"images": images, "annotations": anns, "categories": CATS})
    ds.info["format"] = "voc"
    return {"images": images, "annotations": raw, "categories": CATS}, ds


def test_legacy_voc_equals_the_per_box_loop():
    raw, ds = voc_like()
    r = make_noisy(ds, "uniform", 0.4, rng="oamil-legacy")
    assert r.manifest["layout"] == "voc"
    expected = oamil_loop(raw, 0.4, voc=True)
    got = {a["id"]: a for a in r.dataset.annotations}
    assert len(expected) > 50
    for aid, want in expected.items():
        a = got[aid]
        x, y, w, h = a["bbox"]  # suite frame: x2 = xmax; mmdet frame: x2 = xmax - 1
        assert np.array_equal(np.array([x, y, x + w - 1, y + h - 1], np.float32), want), aid
    difficult = [a for a in raw["annotations"] if a["difficult"]]
    assert difficult and all(got[a["id"]]["bbox"] == got[a["id"]]["true_bbox"] for a in difficult)


# ---- other models -------------------------------------------------------------------------------------------
def test_per_class_strength():
    ds = synthetic(n_images=50)
    r = make_noisy(ds, "per_class", 0.3, strength={"a": 0, "3": 2.0})
    for a in r.dataset.annotations:
        if a["category_id"] == 1:
            assert a["bbox"] == a["true_bbox"]
        else:
            assert a["bbox"] != a["true_bbox"]
    noisy, clean = boxes_of(r.dataset)
    cats = np.array([a["category_id"] for a in r.dataset.annotations])
    fx = factors(noisy, clean)[0]
    assert np.abs(fx[cats == 3]).max() > 0.45 and np.abs(fx[cats == 7]).max() <= 0.3 + 1e-3


def test_missing_class_flip_bogus_una_counts():
    ds = synthetic(n_images=100, per_image=10)
    n = len(ds.annotations)
    r = make_noisy(ds, "missing", 0.3)
    assert r.manifest["counts"]["removed"] == len(r.manifest["removed"]) == int(0.3 * n)
    assert len(r.dataset.annotations) == n - int(0.3 * n)
    r = make_noisy(ds, "class_flip", 0.25)
    changed = [a for a in r.dataset.annotations if a["category_id"] != ds.annotations[a["id"] - 1]["category_id"]]
    assert len(changed) == r.manifest["counts"]["class_changed"] == int(0.25 * n)
    r = make_noisy(ds, "class_flip", 1.0, matrix={"a": {"c": 1}, "b": {"a": 1, "b": 0}, "c": {"b": 1}})
    flip = {1: 7, 3: 1, 7: 3}
    assert all(a["category_id"] == flip[ds.annotations[a["id"] - 1]["category_id"]] for a in r.dataset.annotations)
    r = make_noisy(ds, "bogus", 0.2)
    added = [a for a in r.dataset.annotations if a["true_bbox"] is None]
    assert len(added) == round(0.2 * n / 0.8) == r.manifest["counts"]["added"]
    assert len(added) / len(r.dataset.annotations) == pytest.approx(0.2, abs=1e-3)
    assert len({a["id"] for a in r.dataset.annotations}) == len(r.dataset.annotations)  # new ids are unique
    clean = xyxy([a["bbox"] for a in ds.annotations])
    img = np.array([a["image_id"] for a in ds.annotations])
    from benchmark.boxes import paired_iou

    for a in added[:200]:
        same = clean[img == a["image_id"]]
        b = np.repeat(xyxy(a["bbox"]), len(same), axis=0)
        assert (paired_iou(b, same) < 0.2).all()
        im = next(i for i in ds.images if i["id"] == a["image_id"])
        x1, y1, x2, y2 = xyxy(a["bbox"])[0]
        assert x1 >= 0 and y1 >= 0 and x2 <= im["width"] - 1 and y2 <= im["height"] - 1
    r = make_noisy(ds, "una", 0.2)
    c = r.manifest["counts"]
    k = int(0.2 * n)
    assert c["removed"] == k and c["added"] == round(0.2 * n / 0.8)
    assert c["perturbed"] == k  # the localisation stage
    assert 0.5 * k < c["class_changed"] <= k  # drawn over all classes: about 2/3 of k really change


def test_label_noise_is_nested_across_levels():
    ds = synthetic(n_images=50)
    low, high = make_noisy_levels(ds, "missing", [0.1, 0.3])
    assert {r["annotation"]["id"] for r in low.manifest["removed"]} < \
        {r["annotation"]["id"] for r in high.manifest["removed"]}


def detections_file(ds, path, seed=0):
    """A fake weak detector: every clean box jittered, a score, one spurious box per image, one object missed."""
    rng = np.random.default_rng(seed)
    dets = []
    for k, a in enumerate(ds.annotations):
        if k % 10 == 0:
            continue
        x, y, w, h = a["bbox"]
        j = rng.uniform(-0.15, 0.15, 4)
        dets.append({"image_id": a["image_id"], "category_id": a["category_id"], "score": float(rng.random()),
                     "bbox": [x + j[0] * w, y + j[1] * h, w * (1 + j[2]), h * (1 + j[3])]})
    for im in ds.images:
        dets.append({"image_id": im["id"], "category_id": 1, "score": 0.9, "bbox": [1.0, 1.0, 30.0, 30.0]})
    write_json(path, dets)
    return path


def test_imported_replaces_matched_boxes(tmp_path):
    ds = synthetic(n_images=40, per_image=5)
    f = detections_file(ds, tmp_path / "dets.json")
    r = make_noisy(ds, "imported", 1.0, file=str(f))
    n = len(ds.annotations)
    notes = r.manifest["notes"]
    assert notes["imported_unmatched"] == sum(1 for k in range(n) if k % 10 == 0)
    assert r.manifest["counts"]["perturbed"] == n - notes["imported_unmatched"]
    assert 0.6 < r.manifest["realised_iou"]["all"]["mean"] < 0.95
    half = make_noisy(ds, "imported", 0.5, file=str(f)).manifest["counts"]["perturbed"]
    assert 0.3 * n < half < 0.6 * n
    with pytest.raises(BenchError, match="file=PATH"):
        make_noisy(ds, "imported", 0.5)
    with pytest.raises(BenchError, match="file not found"):
        make_noisy(ds, "imported", 0.5, file=str(tmp_path / "nope.json"))
    nulls = tmp_path / "null_score.json"  # the message named only image_id and bbox, which were fine
    write_json(nulls, [{"image_id": ds.images[0]["id"], "category_id": 1, "bbox": [1, 1, 5, 5], "score": None}])
    with pytest.raises(BenchError, match=r"entry #0 \(.*'score': None.*score a number where given"):
        make_noisy(ds, "imported", 0.5, file=str(nulls))


def test_a_parameter_file_is_recorded_by_name_and_hash_so_manifests_match_across_machines(tmp_path):
    """The same detections file in two folders (two machines) gives byte-identical manifests: the manifest holds
    the file's name and sha256, not its path; inside a composition too."""
    from benchmark.io import dumps_json, sha256_file
    from noise import compose

    ds = synthetic(n_images=20, per_image=4)
    a = detections_file(ds, tmp_path / "one" / "dets.json")
    b = tmp_path / "two" / "deeper" / "dets.json"
    b.parent.mkdir(parents=True)
    b.write_bytes(a.read_bytes())
    made = [make_noisy(ds, "imported", 0.5, file=str(f)).manifest for f in (a, b)]
    assert dumps_json(made[0]) == dumps_json(made[1])
    assert made[0]["params"]["file"] == "dets.json" and str(tmp_path) not in dumps_json(made[0]).decode()
    assert made[0]["param_files"] == {"file": {"name": "dets.json", "sha256": sha256_file(a)}}
    steps = [compose(["uniform", ("imported", 0.5, {"file": str(f)})]) for f in (a, b)]
    made = [make_noisy(ds, m, 0.2).manifest for m in steps]
    assert dumps_json(made[0]) == dumps_json(made[1])
    assert made[0]["params"]["steps"][1]["params"] == {"file": "dets.json"}
    assert made[0]["param_files"] == {"imported.file": {"name": "dets.json", "sha256": sha256_file(a)}}
    assert make_noisy(ds, "uniform", 0.2).manifest["param_files"] == {}


def _level_grid(name):
    nm = get_model(name)
    grid = [lv for lv in (0.0, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 0.95) if lv < nm.max_level]
    return grid + ([nm.max_level] if nm.max_inclusive else [])


def test_every_model_is_monotonic_in_its_level(tmp_path):
    ds = synthetic(n_images=60, per_image=6, size=(900, 700), margin=0.0, box=(20, 300))  # clipping happens
    dets = str(detections_file(ds, tmp_path / "dets.json"))
    for name in NOISE_MODELS.names():
        params = {"file": dets} if name == "imported" else {}
        results = make_noisy_levels(ds, name, _level_grid(name), seed=2, **params)
        iou = [r.manifest["realised_iou"]["all"]["mean"] for r in results]
        harm = [r.manifest["counts"]["removed"] + r.manifest["counts"]["added"]
                + r.manifest["counts"]["class_changed"] for r in results]
        kind = get_model(name).kind
        assert all(a >= b - 1e-9 for a, b in zip(iou, iou[1:])), (name, iou)
        assert all(a <= b for a, b in zip(harm, harm[1:])), (name, harm)
        if kind in ("geometry", "mixed"):
            assert iou[0] == 1.0 and iou[-1] < 0.9, (name, iou)
        if kind in ("label", "mixed"):
            assert harm[0] == 0 and harm[-1] > 0, (name, harm)
        if kind == "geometry" and name not in ("imported", "bias"):
            assert all(a > b for a, b in zip(iou, iou[1:])), (name, iou)


# ---- calibration and composition ------------------------------------------------------------------------------
def test_calibrate_finds_the_protocol_level(big):
    level = calibrate(big, "uniform", 0.66, seed=0)
    assert level == pytest.approx(0.2, abs=0.01)
    realised = make_noisy(big, "uniform", level, seed=0).manifest["realised_iou"]["all"]["mean"]
    assert realised == pytest.approx(0.66, abs=2e-3)
    assert calibrate(big, "scale", 0.8, seed=0) > calibrate(big, "uniform", 0.8, seed=0)
    with pytest.raises(BenchError, match="does not move boxes"):
        calibrate(big, "missing", 0.5)
    with pytest.raises(BenchError, match="out of reach"):
        calibrate(big, "scale", 0.05)
    with pytest.raises(BenchError, match=r"\(0, 1\)"):
        calibrate(big, "uniform", 1.5)


def test_calibrate_finds_the_first_level_where_iou_turns_back_up():
    # IoU that falls, then rises again (as shrinking boxes collapse and are kept clean): `scale` at strength
    # 0.8 x min(level, 1 - level). Plain bisection from the top level saw IoU ~1 there and said "out of reach".
    from noise.registry import NoiseModel

    scale = get_model("scale").fn
    v_shaped = NoiseModel("v_shaped", lambda bs, level, rng: scale(bs, 0.8 * min(level, 1 - level), rng))
    ds = synthetic(n_images=60)
    level = calibrate(ds, v_shaped, 0.75, seed=0)
    assert level < 0.5  # the first of the two levels that give it
    realised = make_noisy(ds, v_shaped, level, seed=0).manifest["realised_iou"]["all"]["mean"]
    assert realised == pytest.approx(0.75, abs=2e-3)
    with pytest.raises(BenchError, match=r"at best \(level 0\.5,.*out of reach"):
        calibrate(ds, v_shaped, 0.2, seed=0)


def test_calibrate_says_when_iou_jumps_over_the_target():
    # boxes that end on the image border lose a pixel to clipping (to W-1) at any level above 0: IoU jumps from 1
    # to ~0.9, and bisection used to shrink onto level 0 and return it for a target of 0.95
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 100} for i in range(1, 21)]
    anns = [{"id": i, "image_id": i, "category_id": 1, "bbox": [90.0, 40.0, 10.0, 10.0], "area": 100.0,
             "iscrowd": 0, "ignore": 0} for i in range(1, 21)]
    ds = DetectionDataset(images, anns, [{"id": 1, "name": "a"}])
    with pytest.raises(BenchError, match=r"jumps from 1\.0000 to 0\.9.* so 0\.95 is out of reach"):
        calibrate(ds, "scale", 0.95, seed=0)
    assert 0 < calibrate(ds, "scale", 0.6, seed=0) < 1  # below the jump it is reachable


def test_compose_applies_steps_in_order():
    ds = synthetic(n_images=50)
    model = compose([("uniform", None), ("missing", 0.1)])
    r = make_noisy(ds, model, 0.3)
    assert r.manifest["model"] == "uniform+missing@0.1" and r.manifest["kind"] == "mixed"
    assert r.manifest["counts"]["removed"] == int(0.1 * len(ds.annotations))
    assert r.manifest["realised_iou"]["all"]["mean"] == pytest.approx(0.55, abs=0.02)
    assert r.manifest["params"]["steps"][1] == {"model": "missing", "level": 0.1, "params": {}}
    assert make_noisy(ds, model, 0.3).payload == r.payload
    with pytest.raises(BenchError, match="must be in"):
        compose([("missing", 1.5)])
    with pytest.raises(BenchError, match="at least one step"):
        compose([])
    with pytest.raises(BenchError, match="every step fixes its level"):  # the file's recorded level would lie
        compose([("uniform", 0.3), ("missing", 0.1)])


@pytest.mark.parametrize("model,params,message", [
    ("class_flip", {"matrix": [[0, 1], [1]]}, "list of numbers"),
    ("class_flip", {"matrix": {"1": {"2": "a"}}}, "must be a number"),
    ("imported", {"file": "x.json", "same_class": "no"}, "same_class must be true or false"),
    ("imported", {"file": "x.json", "min_score": "abc"}, "min_score must be a number"),
])
def test_bad_parameter_values_are_one_line_errors(model, params, message):
    with pytest.raises(BenchError, match=message):
        make_noisy(synthetic(n_images=4), model, 0.3, **params)


# ---- bad input -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("level", [-0.1, 1.0, 1.5, float("nan"), "x"])
def test_bad_levels_are_clear_errors(level):
    with pytest.raises(BenchError, match="noise level .* for model 'uniform'"):
        make_noisy(synthetic(n_images=2), "uniform", level)


def test_bad_models_params_and_datasets_are_clear_errors():
    ds = synthetic(n_images=3)
    with pytest.raises(BenchError, match="unknown noise model 'unifrom'; did you mean 'uniform'"):
        make_noisy(ds, "unifrom", 0.1)
    with pytest.raises(BenchError, match="has no parameter 'sigma'"):
        make_noisy(ds, "uniform", 0.1, sigma=2)
    with pytest.raises(BenchError, match="applies to model 'uniform' only"):
        make_noisy(ds, "gaussian", 0.1, rng="oamil-legacy")
    with pytest.raises(BenchError, match="unknown rng mode"):
        make_noisy(ds, "uniform", 0.1, rng="legacy")
    with pytest.raises(BenchError, match="seed must be an integer"):
        make_noisy(ds, "uniform", 0.1, seed=-1)
    with pytest.raises(BenchError, match="no images"):
        make_noisy(DetectionDataset([], [], CATS), "uniform", 0.1)
    with pytest.raises(BenchError, match="no annotations"):
        make_noisy(DetectionDataset(ds.images, [], CATS), "uniform", 0.1)
    with pytest.raises(BenchError, match="direction"):
        make_noisy(ds, "bias", 0.1, direction="up")
    with pytest.raises(BenchError, match="unknown category 'zebra'"):
        make_noisy(ds, "per_class", 0.1, strength={"zebra": 2})
    with pytest.raises(BenchError, match="must stay below 1"):
        make_noisy(ds, "per_class", 0.6, strength={"a": 2})
    with pytest.raises(BenchError, match="at least 2 categories"):
        make_noisy(DetectionDataset(ds.images, ds.annotations[:1], CATS[:1]), "class_flip", 0.5)
    with pytest.raises(BenchError, match="max_iou"):
        make_noisy(ds, "bogus", 0.1, max_iou=0)
    no_size = DetectionDataset([{"id": 10, "file_name": "x.jpg"}], ds.annotations[:1], CATS)
    with pytest.raises(BenchError, match="width/height"):
        make_noisy(no_size, "uniform", 0.1)
    bad_box = DetectionDataset(ds.images, [{**ds.annotations[0], "bbox": [1, 2, 3]}], CATS)
    with pytest.raises(BenchError, match="4-number bbox"):
        make_noisy(bad_box, "uniform", 0.1)


def test_string_image_ids_and_unknown_images():
    images = [{"id": "b", "file_name": "b.jpg", "width": 500, "height": 400},
              {"id": "a", "file_name": "a.jpg", "width": 500, "height": 400}]
    anns = [{"id": 1, "image_id": "a", "category_id": 1, "bbox": [100.0, 100.0, 50.0, 40.0]},
            {"id": 2, "image_id": "zz", "category_id": 1, "bbox": [100.0, 100.0, 50.0, 40.0]},
            {"id": 3, "image_id": "b", "category_id": 3, "bbox": [10.0, 20.0, 30.0, 40.0]}]
    ds = DetectionDataset.from_coco({"images": images, "annotations": anns, "categories": CATS})
    r = make_noisy(ds, "uniform", 0.3)
    got = {a["id"]: a for a in r.dataset.annotations}
    assert got[2]["bbox"] == got[2]["true_bbox"] and got[1]["bbox"] != got[1]["true_bbox"]
    assert r.manifest["counts"]["untouched_filtered"] == 1 and r.manifest["counts"]["perturbed"] == 2
    legacy = make_noisy(ds, "uniform", 0.3, rng="oamil-legacy")  # image order b, a: box 3 draws first
    rs = np.random.RandomState(45)
    first = rs.uniform(-0.3, 0.3, 4)
    x, y, w, h = next(a for a in legacy.dataset.annotations if a["id"] == 3)["bbox"]
    assert np.float32(x + w / 2) == pytest.approx(25.0 + 30.0 * first[0], abs=1e-3)


def test_legacy_voc_spends_draws_on_boxes_the_loader_drops(tmp_path):
    """OA-MIL's VOC parser keeps zero-size, inverted and outside boxes (BCCD has two point boxes), so its generator
    draws for them; the loader drops them but records where they were, and `oamil-legacy` spends the same draws,
    so every later box gets the published value."""
    from benchmark.datasets import load_voc

    rng = np.random.default_rng(3)
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    images, raw, stems = [], [], []
    for i in range(30):
        W, H = int(rng.integers(120, 400)), int(rng.integers(120, 400))
        stem = f"img{i:03d}"
        stems.append(stem)
        images.append({"id": i + 1, "file_name": f"{stem}.jpg", "width": W, "height": H})
        objects = []
        for _ in range(int(rng.integers(1, 6))):
            xmin, ymin = int(rng.integers(1, W - 20)), int(rng.integers(1, H - 20))
            xmax, ymax = xmin + int(rng.integers(2, 20)), ymin + int(rng.integers(2, 20))
            kind = rng.random()
            if kind < 0.12:
                xmax, ymax = xmin, ymin  # point box: dropped by the loader, drawn for by OA-MIL
            elif kind < 0.18:
                xmax = xmin - 3  # inverted
            elif kind < 0.3:
                xmax = W + 7  # past the border: the loader clips it, OA-MIL perturbs it as written
            difficult = int(rng.random() < 0.15)
            raw.append({"id": len(raw) + 1, "image_id": i + 1, "category_id": 1, "voc": (xmin, ymin, xmax, ymax),
                        "difficult": difficult, "valid": xmax > xmin and ymax > ymin})
            objects.append(f"<object><name>cell</name><difficult>{difficult}</difficult><bndbox><xmin>{xmin}</xmin>"
                           f"<ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>")
        (tmp_path / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.jpg</filename><size><width>{W}</width><height>{H}</height>"
            f"<depth>3</depth></size>{''.join(objects)}</annotation>")
    (tmp_path / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(stems) + "\n")
    ds = load_voc(tmp_path, "trainval")
    dropped = [a for a in raw if not a["valid"]]
    assert len(dropped) >= 5 and sum(not a["difficult"] for a in dropped) >= 3
    assert len(ds.info["legacy_draw_slots"]) == sum(not a["difficult"] for a in dropped)
    assert ds.info["fixed"]["box_clipped_to_image"] >= 3 and len(ds.info["unclipped_boxes"]) >= 3

    expected = oamil_loop({"images": images, "annotations": raw, "categories": [{"id": 1, "name": "cell"}]}, 0.4,
                          voc=True)
    r = make_noisy(ds, "uniform", 0.4, rng="oamil-legacy")
    kept = [a for a in raw if a["valid"]]
    assert len(kept) == len(r.dataset.annotations)
    checked = 0
    for src, a in zip(kept, r.dataset.annotations):
        want = expected.get(src["id"])
        if src["difficult"]:
            assert a["bbox"] == a["true_bbox"]
            continue
        x, y, w, h = a["bbox"]
        assert np.array_equal(np.array([x, y, x + w - 1, y + h - 1], np.float32), want), src["id"]
        checked += 1
    assert checked > 40
    # without the recorded slots the stream shifts: the boxes after the first dropped one differ
    ds.info.pop("legacy_draw_slots")
    shifted = make_noisy(ds, "uniform", 0.4, rng="oamil-legacy")
    assert shifted.payload != r.payload
