"""faster-coco-eval run directly (the outside reference the suite's own evaluators are pinned against)."""

from __future__ import annotations

import contextlib
import io
import json


def faster_coco_eval_stats(gt: dict, dets: list[dict]) -> list[float]:
    """COCOeval's 12 `stats` (AP, AP50, AP75, APs, APm, APl, AR...) for a COCO ground-truth dict and results list."""
    from faster_coco_eval import COCO, COCOeval_faster

    coco = COCO()
    coco.dataset = json.loads(json.dumps(gt))
    coco.createIndex()
    ev = COCOeval_faster(coco, coco.loadRes(json.loads(json.dumps(dets))), "bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return list(ev.stats)
