"""The plug-in path: entry-point discovery, `bench methods ls`, config checks and the suite's contract kit."""

import pytest
from click.testing import CliRunner
from noisybox_kl_loss.adapter import KlLoss
from noisybox_kl_loss.head import KLRoIHeads

from benchmark.cli import cli
from benchmark.config import resolve_config
from benchmark.errors import BenchError
from benchmark.testing import check_adapter
from methods import METHODS, get_method


def test_kl_loss_is_discovered_through_its_entry_point():
    # Needs `pip install -e examples/kl_loss`: the suite finds the adapter only through the installed entry point.
    assert "kl_loss" in METHODS, "noisybox-kl-loss is not installed (pip install --no-deps -e examples/kl_loss)"
    assert METHODS.get("kl_loss") is KlLoss
    assert METHODS.origin("kl_loss") == "plugin:noisybox-kl-loss"
    res = CliRunner().invoke(cli, ["methods", "ls"])
    assert res.exit_code == 0, res.output
    row = next(line for line in res.output.splitlines() if line.split()[0] == "kl_loss")
    assert "plugin:noisybox-kl-loss" in row and "Bounding Box Regression with Uncertainty" in row


def test_build_model_swaps_in_the_kl_head_and_rejects_bad_settings():
    adapter = get_method("kl_loss")
    cfg = resolve_config(adapter, "cpu", "shapes", 0.2, {"model.widths": [8, 8, 16, 16], "model.pretrained": False,
                                                         "model.fpn_channels": 16, "model.representation_size": 32,
                                                         "method.sigma_t": 0.05})
    model = adapter.build_model(cfg, 3)
    heads = model.roi_heads
    assert isinstance(heads, KLRoIHeads) and heads.sigma_t == 0.05 and heads.var_vote
    assert heads.box_predictor.bbox_log_var.out_features == 4 * 4  # 4 coordinates x (3 classes + background)
    assert heads.box_predictor.bbox_log_var.weight.abs().max() < 1e-3  # alpha ~ 0 at the start
    assert heads.fg_bg_sampler.batch_size_per_image == cfg["model"]["box_batch_size_per_image"]
    cfg["method"]["delta_weights"] = [10, 10, 10]
    with pytest.raises(BenchError, match="method.delta_weights must be 4 positive numbers"):
        adapter.build_model(cfg, 3)
    with pytest.raises(BenchError, match="method.sigma_t must be of type float"):
        resolve_config(adapter, "cpu", "shapes", 0.2, {"method.sigma_t": "wide"})


def test_kl_loss_satisfies_the_adapter_contract(tmp_path):
    report = check_adapter(KlLoss, workdir=tmp_path)
    assert report.ok, report.summary()
    assert len(report.passed) >= 7
