"""`bench data prepare`, `bench weights fetch`, `bench run --weights` and the weights pre-flight, without the
internet: a loopback HTTP server (127.0.0.1, a free port, started and stopped here, with Range support) serves
small synthetic archives with the real layouts (VOCdevkit/VOC2007 + VOC2012 tars, COCO zips) under the real file
names; a test catalog holds their sizes, md5s and counts."""

from __future__ import annotations

import copy
import errno
import hashlib
import io
import json
import shutil
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from benchmark.datasets import prepare as prep
from benchmark.errors import BenchError

VOC_CLASSES = ["cat", "dog", "person"]


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch):
    """No test here may reach past 127.0.0.1: a connection elsewhere fails the test instead of touching the net."""
    import socket

    real = socket.create_connection

    def guarded(address, *args, **kwargs):
        assert address[0] in ("127.0.0.1", "localhost"), f"test tried to reach {address}"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)


# ---- synthetic archives ---------------------------------------------------------------------------------------
def _jpeg(w=40, h=30) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (120, 60, 30)).save(buf, "JPEG")
    return buf.getvalue()


def _voc_xml(stem: str, objects: list[tuple[str, int]]) -> str:
    objs = "".join(f"<object><name>{c}</name><difficult>{d}</difficult><bndbox><xmin>5</xmin><ymin>5</ymin>"
                   f"<xmax>20</xmax><ymax>18</ymax></bndbox></object>" for c, d in objects)
    return (f"<annotation><filename>{stem}.jpg</filename><size><width>40</width><height>30</height><depth>3</depth>"
            f"</size>{objs}</annotation>")


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def _voc_tar(path: Path, year: str, splits: dict[str, list[str]], boxes_per_image: int = 2) -> None:
    """A tar laid out like the official ones: VOCdevkit/VOC<year>/{Annotations,JPEGImages,ImageSets/Main}."""
    base = f"VOCdevkit/VOC{year}"
    jpg = _jpeg()
    with tarfile.open(path, "w") as tf:
        stems = sorted({s for ids in splits.values() for s in ids})
        for i, stem in enumerate(stems):
            objs = [(VOC_CLASSES[(i + k) % 3], int(k == 1)) for k in range(boxes_per_image)]
            _add(tf, f"{base}/Annotations/{stem}.xml", _voc_xml(stem, objs).encode())
            _add(tf, f"{base}/JPEGImages/{stem}.jpg", jpg)
        for split, ids in splits.items():
            _add(tf, f"{base}/ImageSets/Main/{split}.txt", "".join(f"{s}\n" for s in ids).encode())


def _coco_json(n_images: int, start: int, boxes_per_image: int = 3) -> dict:
    images = [{"id": start + i, "file_name": f"{start + i:012d}.jpg", "width": 40, "height": 30} for i in range(n_images)]
    anns = [{"id": start * 10 + k, "image_id": im["id"], "category_id": 1 + k % 2, "bbox": [2, 3, 10, 8],
             "area": 80.0, "iscrowd": 0} for im in images for k in range(boxes_per_image)]
    for k, a in enumerate(anns):
        a["id"] = start * 100 + k
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}


def _coco_zips(folder: Path) -> None:
    train, val = _coco_json(4, 1), _coco_json(2, 100)
    with zipfile.ZipFile(folder / "annotations_trainval2017.zip", "w") as zf:
        zf.writestr("annotations/instances_train2017.json", json.dumps(train))
        zf.writestr("annotations/instances_val2017.json", json.dumps(val))
        zf.writestr("annotations/captions_train2017.json", "{}")
    jpg = _jpeg()
    for split, data in (("train2017", train), ("val2017", val)):
        with zipfile.ZipFile(folder / f"{split}.zip", "w") as zf:
            zf.writestr(f"{split}/", "")
            for im in data["images"]:
                zf.writestr(f"{split}/{im['file_name']}", jpg)


VOC07_TRAINVAL = ["000005", "000007", "000009"]
VOC07_TEST = ["000001", "000004"]
VOC12_TRAIN, VOC12_VAL = ["2008_000002", "2008_000003"], ["2008_000008", "2008_000015"]
COUNTS = {"voc2007-trainval": (3, 6), "voc2007-test": (2, 4), "voc2012-trainval": (4, 8),
          "coco2017-train": (4, 12), "coco2017-val": (2, 6)}


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("archives")
    _voc_tar(d / "VOCtrainval_06-Nov-2007.tar", "2007",
             {"trainval": VOC07_TRAINVAL, "train": VOC07_TRAINVAL[:2], "val": VOC07_TRAINVAL[2:]})
    _voc_tar(d / "VOCtest_06-Nov-2007.tar", "2007", {"test": VOC07_TEST})
    _voc_tar(d / "VOCtrainval_11-May-2012.tar", "2012",
             {"trainval": VOC12_TRAIN + VOC12_VAL, "train": VOC12_TRAIN, "val": VOC12_VAL})
    _coco_zips(d)
    return d


class _Handler(BaseHTTPRequestHandler):
    """Serves `server.folder` with Range support; `server.cut[name]`: send only that many bytes of the first
    response and drop the connection; `server.refuse[name]`: that HTTP status."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        name = self.path.lstrip("/")
        srv.requests.append((name, self.headers.get("Range")))
        if name in srv.refuse:
            self.send_error(srv.refuse[name])
            return
        path = srv.folder / name
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        rng = None if srv.no_range else self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = srv.cut.pop(name, None)
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)  # the peer sees a cut connection, not a slow one
            return
        self.wfile.write(body)


@pytest.fixture()
def server(archives):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.folder, srv.cut, srv.refuse, srv.requests, srv.no_range = archives, {}, {}, [], False
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture()
def catalog(archives, server) -> dict:
    """The real catalog with the synthetic archives' urls, sizes, md5s and counts."""
    cat = copy.deepcopy(prep.load_sources())
    for name, meta in cat["archives"].items():
        path = archives / name
        meta.update(url=f"{server.url}/{name}", alternates=[], size=path.stat().st_size, md5=_md5(path))
    for part, (n_img, n_box) in COUNTS.items():
        cat["parts"][part].update(images=n_img, boxes=n_box)
    return cat


@pytest.fixture()
def root(tmp_path, monkeypatch) -> Path:
    r = tmp_path / "data"
    monkeypatch.setenv("NOISYBOX_DATA", str(r))
    return r


def _prepare(name, root, catalog, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("backoff", 0.0)
    lines = []
    stamp = prep.prepare(name, root=root, sources=catalog, echo=lines.append, **kw)
    return stamp, lines


# ---- datasets ---------------------------------------------------------------------------------------------------
def test_voc0712_download_union_and_second_call_is_a_no_op(root, catalog, server):
    from benchmark.datasets import load
    from benchmark.runner.cells import dataset_name

    stamp, _ = _prepare("voc0712", root, catalog)
    assert sorted(stamp["parts"]) == ["voc2007-test", "voc2007-trainval", "voc2012-trainval"]
    assert stamp["parts"]["voc2012-trainval"]["images"] == 4
    assert not (root / "downloads" / "VOCtest_06-Nov-2007.tar").exists()  # ours, extracted and checked: removed
    splits = load("voc0712")
    train, test = splits["train"], splits["test"]
    assert len(train.images) == 3 + 4 and len(test.images) == 2
    assert len(train.annotations) == 2 * 7 and len({a["id"] for a in train.annotations}) == 14
    assert len({im["id"] for im in train.images}) == 7
    assert {Path(im["file_name"]).parts[0] for im in train.images} == {"VOC2007", "VOC2012"}
    assert all(train.image_path(im).is_file() for im in train.images)
    assert train.categories == test.categories == [{"id": i + 1, "name": n} for i, n in enumerate(VOC_CLASSES)]
    # a VOCdevkit given as a path is the same dataset, under the same name
    devkit = load(str(root / "VOCdevkit"))
    assert devkit["train"].fingerprint() == train.fingerprint()
    assert devkit["test"].fingerprint() == test.fingerprint()
    assert dataset_name(str(root / "VOCdevkit")) == "voc0712"
    assert dataset_name(str(root / "VOCdevkit" / "VOC2007")) == "voc2007"
    assert load(str(root / "VOCdevkit" / "VOC2007"))["train"].fingerprint() == load("voc2007")["train"].fingerprint()
    server.requests.clear()
    _, lines = _prepare("voc0712", root, catalog)
    assert server.requests == [] and "already prepared" in lines[-1]
    _, lines = _prepare("voc2007", root, catalog)  # its parts came with the union
    assert server.requests == [] and "already prepared" in lines[-1]


def test_voc2012_splits_are_train_and_val(root, catalog):
    from benchmark.datasets import load

    _prepare("voc2012", root, catalog)
    splits = load("voc2012")
    assert [len(splits[k].images) for k in ("train", "test")] == [len(VOC12_TRAIN), len(VOC12_VAL)]


def test_resume_after_a_cut_connection(root, catalog, server, archives):
    name = "VOCtest_06-Nov-2007.tar"
    server.cut[name] = 5000
    with pytest.raises(BenchError, match=f"cannot download {name}.*--mirror"):
        _prepare("voc2007", root, catalog, only="test", retries=0)
    part = root / "downloads" / f"{name}.part"
    assert part.stat().st_size == 5000  # kept for the next call
    server.requests.clear()
    _prepare("voc2007", root, catalog, only="test")
    assert server.requests == [(name, "bytes=5000-")]  # continued, not fetched again
    assert prep.status("voc2007", root)["prepared"] == ["test"]


def test_retry_resumes_within_one_call(root, catalog, server):
    name = "VOCtrainval_06-Nov-2007.tar"
    server.cut[name] = 1234
    _prepare("voc2007", root, catalog, only="train", retries=2)
    assert [r for r in server.requests if r[0] == name] == [(name, None), (name, "bytes=1234-")]


def test_server_ignoring_range_restarts_from_zero(root, catalog, server):
    name = "VOCtrainval_06-Nov-2007.tar"
    server.cut[name], server.no_range = 1234, True
    _prepare("voc2007", root, catalog, only="train", retries=1)  # the md5 check passes: no doubled bytes
    assert [r for r in server.requests if r[0] == name] == [(name, None), (name, "bytes=1234-")]


def test_bad_checksum_is_refused_and_not_kept(root, catalog):
    catalog["archives"]["VOCtest_06-Nov-2007.tar"]["md5"] = "0" * 32
    with pytest.raises(BenchError, match="VOCtest_06-Nov-2007.tar: md5 .* does not match"):
        _prepare("voc2007", root, catalog, only="test")
    assert not list((root / "downloads").glob("VOCtest*"))
    assert "voc2007-test" not in prep.read_stamp(root)["parts"]


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed): connecting to it is refused."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("how", ["403", "connection refused"])
def test_host_that_refuses_names_archive_and_mirror(root, catalog, server, how):
    name = "VOCtest_06-Nov-2007.tar"
    if how == "403":
        server.refuse[name] = 403
    else:
        catalog["archives"][name]["url"] = f"http://127.0.0.1:{_closed_port()}/{name}"
    with pytest.raises(BenchError) as exc:
        _prepare("voc2007", root, catalog, only="test", retries=1)
    msg = str(exc.value)
    assert name in msg and "--mirror" in msg and "--from" in msg and "\n" not in msg
    if how == "403":
        assert "HTTP 403" in msg and server.requests == [(name, None)]  # a refusal is not retried


def test_alternate_host_after_a_refusal(root, catalog, server):
    name = "VOCtest_06-Nov-2007.tar"
    meta = catalog["archives"][name]
    meta["url"], meta["alternates"] = f"http://127.0.0.1:{_closed_port()}/{name}", [meta["url"]]
    _, lines = _prepare("voc2007", root, catalog, only="test", retries=0)
    assert server.requests == [(name, None)] and any("trying " + meta["alternates"][0] in line for line in lines)


def test_mirror_replaces_the_host(root, catalog, server):
    for meta in catalog["archives"].values():
        meta["url"] = f"http://127.0.0.1:{_closed_port()}/nowhere"
    _prepare("voc2007", root, catalog, only="test", mirror=server.url + "/")
    assert server.requests == [("VOCtest_06-Nov-2007.tar", None)]


def test_full_disk_keeps_the_partial_file(root, catalog, monkeypatch):
    """ENOSPC is simulated: the downloader's one write function raises it after the first chunk."""
    import benchmark.download as dl

    monkeypatch.setattr(dl, "CHUNK", 4096)
    calls = []

    def full(f, data):
        if calls:
            raise OSError(errno.ENOSPC, "No space left on device")
        calls.append(1)
        f.write(data)

    monkeypatch.setattr(dl, "_write_chunk", full)
    with pytest.raises(BenchError, match="disk full while downloading VOCtest_06-Nov-2007.tar"):
        _prepare("voc2007", root, catalog, only="test")
    assert (root / "downloads" / "VOCtest_06-Nov-2007.tar.part").stat().st_size == 4096


def test_full_disk_while_extracting_keeps_the_archive(root, catalog, monkeypatch):
    """ENOSPC is simulated in the copy of a zip member (COCO) and in a tar member's extraction (VOC)."""
    import shutil as sh

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    real_copy = sh.copyfileobj
    monkeypatch.setattr(sh, "copyfileobj", full)
    with pytest.raises(BenchError, match="cannot extract annotations_trainval2017.zip .No space left"):
        _prepare("coco2017", root, catalog, images=False)
    assert (root / "downloads" / "annotations_trainval2017.zip").is_file()  # kept for the rerun
    monkeypatch.setattr(sh, "copyfileobj", real_copy)
    monkeypatch.setattr(tarfile.TarFile, "extract", full)
    with pytest.raises(BenchError, match="cannot extract VOCtest_06-Nov-2007.tar .No space left"):
        _prepare("voc2007", root, catalog, only="test")
    assert not prep.read_stamp(root)["parts"]


def test_from_folder_of_archives_needs_no_network(root, catalog, archives, tmp_path):
    for meta in catalog["archives"].values():
        meta["url"] = f"http://127.0.0.1:{_closed_port()}/nowhere"
    _prepare("voc0712", root, catalog, source_dir=archives)
    assert (archives / "VOCtest_06-Nov-2007.tar").is_file()  # the user's archives are left alone
    assert prep.status("voc0712", root)["prepared"] == ["train", "test"]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "VOCtest_06-Nov-2007.tar").write_bytes(b"x" * catalog["archives"]["VOCtest_06-Nov-2007.tar"]["size"])
    with pytest.raises(BenchError, match="md5"):
        _prepare("voc2007", tmp_path / "other", catalog, source_dir=bad, only="test")
    with pytest.raises(BenchError, match="VOCtrainval_11-May-2012.tar is not in this folder"):
        _prepare("voc2012", tmp_path / "other", catalog, source_dir=bad)


def test_from_an_extracted_vocdevkit_is_used_in_place(root, catalog, archives, tmp_path):
    user = tmp_path / "mine"
    for name in ("VOCtrainval_06-Nov-2007.tar", "VOCtest_06-Nov-2007.tar", "VOCtrainval_11-May-2012.tar"):
        prep.extract(archives / name, user, progress=False)
    before = sorted(str(p) for p in user.rglob("*"))
    stamp, _ = _prepare("voc0712", root, catalog, source_dir=user / "VOCdevkit")
    assert stamp["parts"]["voc2012-trainval"]["location"] == str(user / "VOCdevkit" / "VOC2012")
    assert sorted(str(p) for p in user.rglob("*")) == before and not (root / "VOCdevkit").exists()


def test_count_check(root, catalog):
    catalog["parts"]["voc2007-test"]["images"] = 3
    with pytest.raises(BenchError, match="voc2007-test: 2 images, expected 3"):
        _prepare("voc2007", root, catalog, only="test")
    catalog["parts"]["voc2007-test"].update(images=2, boxes=5)
    with pytest.raises(BenchError, match="voc2007-test: 4 boxes, expected 5"):
        _prepare("voc2007", root, catalog, only="test")
    assert "voc2007-test" not in prep.read_stamp(root)["parts"]


def test_coco_annotations_only_then_images(root, catalog, server):
    from benchmark.datasets import list_datasets, load

    _prepare("coco2017", root, catalog, images=False)
    assert [r[0] for r in server.requests] == ["annotations_trainval2017.zip"]  # one zip serves both splits
    splits = load("coco2017")
    assert [len(splits[k].images) for k in ("train", "test")] == [4, 2]
    row = next(r for r in list_datasets() if r["name"] == "coco2017")
    assert row["status"] == "prepared (annotations only, --no-images)"
    _prepare("coco2017", root, catalog)
    assert sorted(r[0] for r in server.requests) == ["annotations_trainval2017.zip", "train2017.zip", "val2017.zip"]
    splits = load("coco2017")
    assert all(splits["train"].image_path(im).is_file() for im in splits["train"].images)
    assert next(r for r in list_datasets() if r["name"] == "coco2017")["status"] == "prepared"
    with pytest.raises(BenchError, match="applies to COCO"):
        _prepare("voc2007", root, catalog, images=False)


def test_unprepared_dataset_says_how(root):
    from benchmark.datasets import list_datasets, load

    with pytest.raises(BenchError, match="not prepared .*bench data prepare voc2007"):
        load("voc2007")
    row = next(r for r in list_datasets() if r["name"] == "voc2007")
    assert row["status"].startswith("not prepared: bench data prepare voc2007") and row["location"] is None


def test_extraction_refuses_paths_outside_the_target(tmp_path):
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tf:
        _add(tf, "VOCdevkit/ok.txt", b"ok")
        _add(tf, "../escaped.txt", b"no")
    with pytest.raises(BenchError, match="outside"):
        prep.extract(evil, tmp_path / "out", progress=False)
    assert not (tmp_path / "escaped.txt").exists()
    link = tmp_path / "link.tar"
    with tarfile.open(link, "w") as tf:
        info = tarfile.TarInfo("VOCdevkit/passwd")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(BenchError, match="not a file or folder"):
        prep.extract(link, tmp_path / "out1", progress=False)
    assert not (tmp_path / "out1" / "VOCdevkit" / "passwd").is_symlink()
    evil_zip = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil_zip, "w") as zf:
        zf.writestr("/etc/passwd_copy", "no")
    with pytest.raises(BenchError, match="outside"):
        prep.extract(evil_zip, tmp_path / "out2", progress=False)


def test_cli_prepare_and_ls(root, catalog, tmp_path, capsys):
    from benchmark.cli import main

    cat = tmp_path / "catalog.json"
    cat.write_text(json.dumps(catalog))
    main(["data", "prepare", "voc2007", "--catalog", str(cat), "--no-progress"])
    assert "voc2007: prepared in" in capsys.readouterr().out
    main(["data", "ls"])
    out = capsys.readouterr().out
    assert f"prepared: {root / 'VOCdevkit' / 'VOC2007'}" in out
    with pytest.raises(SystemExit) as exc:
        main(["data", "prepare", "voc1999"])
    assert exc.value.code == 2 and "unknown dataset 'voc1999'" in capsys.readouterr().err


# ---- weights ----------------------------------------------------------------------------------------------------
@pytest.fixture()
def torch_home(tmp_path, monkeypatch) -> Path:
    import torch

    home = tmp_path / "torch"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    monkeypatch.delenv("NOISYBOX_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return home


def _fake_weights(folder: Path, backbone: str) -> tuple[Path, str]:
    """A small file named as torchvision names weights: `<backbone>-<first 8 hex of its sha256>.pth`."""
    data = f"weights of {backbone}".encode() * 100
    prefix = hashlib.sha256(data).hexdigest()[:8]
    path = folder / f"{backbone}-{prefix}.pth"
    path.write_bytes(data)
    return path, prefix


def test_weight_urls_are_torchvisions():
    from benchmark.weights import NAMES, file_name, sha256_prefix, weight_url

    assert weight_url("resnet50") == "https://download.pytorch.org/models/resnet50-0676ba61.pth"
    assert weight_url("resnet101") == "https://download.pytorch.org/models/resnet101-63fe2227.pth"
    assert sha256_prefix(weight_url("resnet18")) == "f37072fd"
    assert all(file_name(weight_url(n)).startswith(n + "-") for n in NAMES)


def test_weights_fetch_into_torch_cache(torch_home, server, archives, monkeypatch, capsys):
    import benchmark.weights as w
    from benchmark.cli import main

    path, _ = _fake_weights(archives, "resnet18")
    monkeypatch.setattr(w, "weight_url", lambda name, variant=None: f"{server.url}/{path.name}")
    main(["weights", "fetch", "resnet18", "--no-progress"])
    got = torch_home / "hub" / "checkpoints" / path.name
    assert got.read_bytes() == path.read_bytes()
    assert f"resnet18: {got}" in capsys.readouterr().out
    assert w.cached("resnet18") == got
    # a corrupted copy on the server: the sha256 prefix check refuses it
    got.unlink()
    bad = archives / path.name
    good = bad.read_bytes()
    try:
        bad.write_bytes(good[:-1] + b"X")
        with pytest.raises(BenchError, match="sha256 .* does not match"):
            w.fetch("resnet18", progress=False)
        assert not got.exists()
    finally:
        bad.write_bytes(good)


def test_preflight_fails_once_when_offline(torch_home, tmp_path, monkeypatch):
    import benchmark.weights as w

    cfgs = [{"backbone": "resnet50", "pretrained": True, "weights": None}] * 3 + [
        {"backbone": "tiny", "pretrained": False, "weights": None},
        {"backbone": "resnet101", "pretrained": True, "weights": "/some/file.pth"}]
    with pytest.raises(BenchError, match=r"resnet50 \(resnet50-0676ba61.pth\).*bench weights fetch resnet50"):
        w.preflight(cfgs, offline=True)
    notes = w.preflight(cfgs)
    assert len(notes) == 1 and "resnet50-0676ba61.pth" in notes[0] and "resnet101" not in notes[0]
    monkeypatch.setenv("NOISYBOX_OFFLINE", "1")
    with pytest.raises(BenchError, match="downloads are off"):
        w.preflight(cfgs)
    cache = torch_home / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "resnet50-0676ba61.pth").write_bytes(b"")
    assert w.preflight(cfgs) == []


def _voc07(root, catalog):
    _prepare("voc2007", root, catalog)


def test_catalog_matches_torchvision_and_is_complete():
    """The VOC urls and md5s are torchvision's (an outside reference); every part and archive named exists."""
    from torchvision.datasets.voc import DATASET_YEAR_DICT

    src = prep.load_sources()
    for key in ("2007", "2007-test", "2012"):
        tv = DATASET_YEAR_DICT[key]
        assert src["archives"][tv["filename"]]["md5"] == tv["md5"]
        assert src["archives"][tv["filename"]]["url"] == tv["url"]
    for part in src["parts"].values():
        assert all(a in src["archives"] for a in part["archives"] + part.get("image_archives", []))
    for entry in src["datasets"].values():
        assert all(p in src["parts"] for split in ("train", "test") for p, _ in entry[split])
    assert set(src["datasets"]) == {"voc2007", "voc2012", "voc0712", "coco2017"}
    assert {m["md5"] for m in src["archives"].values()} and all(
        len(m["md5"]) == 32 and m["size"] > 0 for m in src["archives"].values())


def test_from_then_run_dry_run_lists_cells(root, catalog, archives, torch_home, tmp_path, capsys):
    """The issue's 'done when': `bench data prepare voc0712 --from DIR`, then `bench run -d voc0712 --profile
    paper --dry-run` lists the cells, with no step in between."""
    from benchmark.cli import main

    for meta in catalog["archives"].values():
        meta["url"] = f"http://127.0.0.1:{_closed_port()}/nowhere"
    cat = tmp_path / "catalog.json"
    cat.write_text(json.dumps(catalog))
    main(["data", "prepare", "voc0712", "--from", str(archives), "--catalog", str(cat), "--no-progress"])
    capsys.readouterr()
    main(["run", "-m", "oa_mil", "-n", "0.2", "-d", "voc0712", "--profile", "paper", "--dry-run",
          "-o", str(root.parent / "store"), "--no-progress"])
    out = capsys.readouterr().out
    assert out.count("voc0712") >= 2 and "oa_mil" in out
    assert "resnet50-0676ba61.pth" in out  # the weights note: nothing in this torch cache


def test_run_offline_stops_before_any_cell(root, catalog, torch_home, capsys):
    from benchmark.cli import main

    _voc07(root, catalog)
    store = root.parent / "store"
    with pytest.raises(SystemExit) as exc:
        main(["run", "-m", "faster_rcnn", "-n", "0.2", "-d", "voc2007", "--profile", "paper", "--offline",
              "--no-baselines", "-o", str(store), "--no-progress"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "resnet50-0676ba61.pth" in err and len(err.strip().splitlines()) == 1
    assert not (store / "cells").exists()


def test_run_weights_identity(root, catalog, torch_home, tmp_path, monkeypatch):
    """`--weights` with torchvision's own file keeps the cell id; another file is another cell, by content."""
    import benchmark.weights as w
    from benchmark.runner.cells import DatasetCache, resolve
    from benchmark.runner.grid import CellSpec
    from noise.spec import NoiseSpec

    _voc07(root, catalog)
    spec = CellSpec("faster_rcnn", "voc2007", NoiseSpec.parse("uniform", level=0.2), 0, profile="paper")
    cache = DatasetCache(progress=False)
    plain = resolve(spec, cache, gpu=True)
    assert plain.config["method_config"]["model"]["weights"] is None
    tv, prefix = _fake_weights(tmp_path, "resnet50")
    monkeypatch.setattr(w, "weight_url", lambda name, variant=None: f"https://x/{name}-{prefix}.pth")
    same = resolve(spec, cache, gpu=True, weights=tv)
    assert same.id == plain.id and same.config["locator"]["weights"] == str(tv)
    other = tmp_path / "caffe_r50.pth"
    other.write_bytes(b"other weights")
    diff = resolve(spec, cache, gpu=True, weights=other)
    assert diff.id != plain.id
    assert diff.config["method_config"]["model"]["weights"] == "sha256:" + hashlib.sha256(b"other weights").hexdigest()
    moved = tmp_path / "elsewhere.pth"
    shutil.copy(other, moved)
    assert resolve(spec, cache, gpu=True, weights=moved).id == diff.id  # the path is not the identity

    from benchmark.runner.run_cell import _with_weights_file

    assert _with_weights_file(diff.config)["model"]["weights"] == str(other)
    other.write_bytes(b"edited")
    w._sha256.cache_clear()
    with pytest.raises(BenchError, match="changed since the sweep was planned"):
        _with_weights_file(diff.config)
