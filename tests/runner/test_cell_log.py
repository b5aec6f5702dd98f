"""The engine logs through `logging` ("noisybox.train"): train.log keeps its lines, and a cell's cell.log (the
runner's handler) gets the same training lines, so one file tells a cell's whole story."""

import logging
import re

from benchmark.engine import _train_log
from benchmark.runner import store as st
from benchmark.runner.api import SweepOptions, grid
from benchmark.runner.run_cell import run_cell
from benchmark.runner.sweep import plan

TINY_SETS = ["train.epochs=2", "train.iters_per_epoch=2", "train.batch_size=2", "train.steps=[1]",
             "train.warmup_iters=1", "train.log_every=1", "model.widths=[8,8,16,16]", "model.pretrained=false",
             "model.fpn_channels=16", "model.representation_size=32", "model.box_batch_size_per_image=16"]
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


def test_a_cells_training_lines_reach_train_log_and_cell_log(tmp_path):
    o = SweepOptions("faster_rcnn", noise="0.2", seeds="1", datasets=["shapes:train=4,val=2,size=64,seed=0"],
                     baselines=False, sets=TINY_SETS, store=tmp_path / "store", report=False, progress=False)
    store = st.Store(o.store)
    (p,) = plan(grid(o), store)
    cell_dir = store.write_config(p.cell.config)
    before = (logging.getLogger("noisybox.train").level, list(logging.getLogger("noisybox.train").handlers))
    assert run_cell(cell_dir, progress=False)["status"] == "done"

    train_lines = (cell_dir / st.TRAIN_DIR / "train.log").read_text().splitlines()
    assert all(re.fullmatch(STAMP + " .+", line) for line in train_lines)  # the format `_Log` wrote
    messages = [line[20:] for line in train_lines]
    assert messages[0].startswith("start method=faster_rcnn images=4 epochs=2 iters/epoch=2 batch=2 ")
    assert messages[1].startswith("config {")
    assert [m.split(" lr=")[0] for m in messages if " iter " in m] == [
        "epoch 1/2 iter 1/4", "epoch 1/2 iter 2/4", "epoch 2/2 iter 3/4", "epoch 2/2 iter 4/4"]
    assert messages[-1].startswith("done: 4 iterations in ")

    cell_log = (cell_dir / st.LOG).read_text()
    from_engine = [m.group(1) for m in re.finditer(STAMP + r",\d+ INFO noisybox\.train: (.*)", cell_log)]
    assert from_engine == messages, "cell.log must hold every train.log line, in order"
    # the run's handler is gone and the logger's level is back, so a second run does not double the lines
    assert (logging.getLogger("noisybox.train").level, logging.getLogger("noisybox.train").handlers) == before


def test_train_log_gets_the_lines_whatever_the_root_level_and_other_processes_log_nothing(tmp_path, caplog):
    log = logging.getLogger("noisybox.train")
    root = logging.getLogger()
    old = root.level
    root.setLevel(logging.ERROR)  # an application that silenced INFO: train.log is an output, it still gets them
    try:
        with _train_log(tmp_path / "train.log"):
            log.info("epoch 1/1 iter 1/1 lr=1.000e-02 loss=1.0000")
        with caplog.at_level(logging.INFO), _train_log(None):  # a DDP process other than the main one
            log.info("from rank 1")
    finally:
        root.setLevel(old)
    (line,) = (tmp_path / "train.log").read_text().splitlines()
    assert re.fullmatch(STAMP + " epoch 1/1 iter 1/1 lr=1.000e-02 loss=1.0000", line)
    assert "from rank 1" not in caplog.text
    assert not log.handlers and not log.filters and log.level == logging.NOTSET
