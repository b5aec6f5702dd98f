"""The report's sections: per sweep group (tables, curves, noise, failure modes, TIDE), cells, definitions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark.datasets.core import is_ignored
from benchmark.errors import BenchError
from benchmark.evaluation import metrics as registry
from benchmark.evaluation.failure_modes import BAD_MODES, MODES, UNASSIGNED, mode_rates, pool_rates
from benchmark.evaluation.tide import ERROR_TYPES, SPECIAL_TYPES
from reports import gallery, html
from reports import plots as P
from reports.analysis import (
    NOISY_INPUT,
    Datasets,
    Skips,
    box_error_table,
    box_errors,
    detection_failure_modes,
    environment,
    noise_summary,
    refined_ious,
    tide_rows,
    training_failure_modes,
)
from reports.config import ReportConfig
from reports.curves import is_loss, pooled, training_curves
from reports.headline import group_headline
from reports.store import CellCache
from reports.tables import (
    aggregate,
    metric_table,
    oracle_methods_in,
    summary_table,
)
from reports.writer import Writer, slug

# ---- failure-mode presentation --------------------------------------------------------------------------------

def _rates_wide(fm: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Rows `by`; columns boxes, bad %, every bad mode as % of all boxes, and same-class drift %."""
    rates = mode_rates(fm, "mode", by=by)
    if rates.empty:
        return pd.DataFrame()
    wide = rates.pivot_table(index=by, columns="mode", values="pct_all", sort=False)
    first = rates.groupby(by, sort=False)[["total", "bad"]].first()
    out = pd.DataFrame({"boxes": first["total"], "bad %": 100.0 * first["bad"] / first["total"]})
    for m in BAD_MODES:
        out[f"{m} %"] = wide[m] if m in wide else 0.0
    same = mode_rates(fm, "mode_same_class", by=by).pivot_table(index=by, columns="mode", values="pct_all",
                                                                 sort=False)
    out["drift (same class) %"] = same["drift"] if "drift" in same else 0.0
    return out.reset_index()


def _by_columns(noise: pd.DataFrame) -> pd.DataFrame:
    """One column per noisy training set, one row per field: manifests have many fields, sweeps few sets."""
    labels = [f"noise {lv:g} · seed {sd}" for lv, sd in zip(noise["noise_level"], noise["noise_seed"])]
    cells = noise.drop(columns=["noise_level", "noise_seed"]).map(
        lambda v: f"{v:.3f}" if isinstance(v, float) else ("" if v is None else str(v)))
    out = cells.T
    out.columns = labels
    return out.rename_axis("field").reset_index()


def _sensitivity_wide(sens: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Pool the per-(method, level) sensitivity counts over levels: rows method x thresholds."""
    if sens.empty:
        return pd.DataFrame()
    keys = ["method", *names]
    counts = sens.groupby([*keys, "mode"], sort=False)["count"].sum().unstack("mode").fillna(0)
    total = counts.sum(axis=1)
    out = pd.DataFrame({"boxes": total, "bad %": 100.0 * (total - counts.get("good", 0)) / total})
    for m in BAD_MODES:
        out[f"{m} %"] = 100.0 * counts[m] / total if m in counts else 0.0
    return out.reset_index()


def _examples(fm: pd.DataFrame, mode: str, source: str, cache: CellCache, datasets: Datasets, k: int,
              seed: int) -> list[gallery.Example]:
    """Up to k examples of a mode, round-robin over (method, level) so every method shows; seeded choice.

    The pooled frames hold no boxes: each picked example's boxes are read back from its cell's files.
    """
    sub = fm[fm["mode"] == mode]
    if source == "training" and (sub["method"] != NOISY_INPUT).any():
        sub = sub[sub["method"] != NOISY_INPUT]
    if sub.empty:
        return []
    rng = np.random.default_rng(seed)
    queues = [list(rng.permutation(g.index.to_numpy())) for _, g in sub.groupby(["method", "noise_level"], sort=True)]
    picked = []
    while len(picked) < k and any(queues):
        for q in queues:
            if q and len(picked) < k:
                picked.append(q.pop(0))
    rows = fm.loc[picked]
    out = {}
    for path, group in rows.groupby("path", sort=False):
        cell = cache(path)
        if source == "training":
            boxes = _training_boxes(cell, group)
        else:
            boxes = _test_boxes(cell, group, datasets)
        coco, split = (cell.noisy_train, "train") if source == "training" else (datasets.test_gt(cell), "test")
        images = {im["id"]: im for im in coco["images"]}
        for idx, r in group.iterrows():
            clean, noisy, candidate, others = boxes[idx]
            image = images.get(r["image_id"], {"id": r["image_id"]})
            iou = f"IoU {r['iou']:.3f}" if np.isfinite(r["iou"]) else ""
            extra = f" · score {r['score']:.2f}" if "score" in r and pd.notna(r.get("score")) else ""
            out[idx] = gallery.Example(
                image_path=datasets.image_path(cell, split, image) if "file_name" in image else None,
                image_size=(int(image.get("width", 0) or 0), int(image.get("height", 0) or 0)),
                candidate=candidate, clean=clean, noisy=noisy, others=others,
                caption=f"{r['method']} · noise {r['noise_level']:g} · seed {r['seed']}\n"
                        f"{iou}{extra} · img {r['image_id']}")
    return [out[i] for i in picked]


def _training_boxes(cell, rows: pd.DataFrame) -> dict:
    """Per picked row: (clean, noisy, refined-or-None for the noisy input, other clean boxes of the image)."""
    anns = cell.noisy_train["annotations"]
    by_id = {int(a["id"]): a for a in anns}
    refined = {int(r["id"]): r["bbox"] for r in (cell.refined_boxes or [])}
    out = {}
    for idx, r in rows.iterrows():
        a = by_id[int(r["ann_id"])]
        others = [o.get("true_bbox", o["bbox"]) for o in anns if o["image_id"] == a["image_id"] and o is not a
                  and o.get("true_bbox", o["bbox"]) is not None and not is_ignored(o)]
        cand = None if r["method"] == NOISY_INPUT else refined.get(int(r["ann_id"]))  # noisy input: the noisy box
        out[idx] = (a.get("true_bbox", a["bbox"]), a["bbox"], cand, others)
    return out


def _test_boxes(cell, rows: pd.DataFrame, datasets: Datasets) -> dict:
    """Per picked row: (its GT object or None, no noisy box, the detection, all GT boxes of the image)."""
    preds = cell.predictions
    anns = datasets.test_gt(cell)["annotations"]
    out = {}
    for idx, r in rows.iterrows():
        owner = int(r["owner_row"])
        others = [a["bbox"] for a in anns if a["image_id"] == r["image_id"] and not is_ignored(a)]
        out[idx] = (anns[owner]["bbox"] if owner >= 0 else None, None, preds[int(r["det_index"])]["bbox"], others)
    return out


def group_section(w: Writer, key, g: pd.DataFrame, cfg: ReportConfig, cache: CellCache, datasets: Datasets,
                   skips: Skips, colors: dict, bar) -> None:
    dataset, noise_model, profile = (str(k) for k in key)
    gslug = slug(f"{dataset}-{noise_model}-{profile}")
    w.heading(2, f"{dataset} · {noise_model} · {profile}", anchor=gslug)
    oracles = oracle_methods_in(g, cfg.oracle_methods)
    n_seeds = g.groupby(["method", "noise_level"]).size()
    w.para(f"{len(g)} cell(s); methods: {', '.join(dict.fromkeys(g['method']))}; noise levels: "
           f"{', '.join(f'{v:g}' for v in sorted(g['noise_level'].unique()))}; seeds per method and level: "
           f"{n_seeds.min()}–{n_seeds.max()}")

    for line in group_headline(g, cfg.oracle_methods):
        w.para(line, css="lead")

    # 1. tables: AP by level first; the other metrics one click away
    w.heading(3, "Results")
    w.table(metric_table(g, ["AP"], "AP (COCO), points, mean ± std over seeds", cfg.oracle_methods),
            f"{gslug}_ap")
    w.table(summary_table(g, "Retention vs the clean oracle and area under the AP-vs-noise curve",
                          oracle_methods=cfg.oracle_methods), f"{gslug}_summary")
    start = len(w.html)
    more = []  # one table per report table of the metrics registry (`benchmark.evaluation.metrics`)
    for name, title, names in registry.report_tables():
        w.table(metric_table(g, names, title, cfg.oracle_methods), f"{gslug}_{name}")
        more += [registry.label(m) for m in names if m != "AP" and m in g and g[m].notna().any()]
    w.collapse(start, "more metrics: " + ", ".join(dict.fromkeys(more)))

    # 2. curves
    agg = aggregate(g, ["AP", "AP75"])
    if not agg.empty:
        w.figure(P.ap_vs_noise(agg, oracles=oracles, colors=colors), f"{gslug}_ap_vs_noise",
                 "AP and AP75 vs noise level (mean ± std over seeds; oracle dashed)")

    # 2b. training curves (train/scalars.csv): losses, then method diagnostics
    stats = pooled(training_curves(g, skips))
    if not stats.empty:
        names = list(dict.fromkeys(stats["scalar"]))
        losses = [s for s in names if is_loss(s)]
        diags = [s for s in names if not is_loss(s) and s != "lr"]
        w.heading(3, "Training curves")
        if losses:
            w.figure(P.training_curves(stats, losses, colors), f"{gslug}_loss_curves",
                     "training losses vs iteration, per method and noise level (mean ± std over seeds)")
        if diags:
            w.figure(P.training_curves(stats, diags, colors), f"{gslug}_diagnostic_curves",
                     "method diagnostics vs iteration (running means the methods report while training)")

    # 3. realised noise and refined boxes
    noise, ious = noise_summary(g, cache, skips)
    panels = _refined_panels(g, cache)
    if ious or panels:
        w.heading(3, "Training-box noise")
    if ious:
        w.figure(P.realised_iou(ious), f"{gslug}_realised_iou", "realised IoU(noisy, clean) of the training boxes")
        start = len(w.html)
        w.frame(_by_columns(noise), f"{gslug}_noise", "noisy training sets: realised IoU and the manifests' fields",
                csv=noise)
        w.collapse(start, "the noisy training sets' manifests")
    if panels:
        w.figure(P.iou_histograms(panels, colors=colors), f"{gslug}_refined_iou",
                 "IoU with the clean box: refined boxes (line) vs the noisy boxes they came from (grey)")
        axes = _box_error_table(g, cache)
        w.frame(axes, f"{gslug}_refined_axes", "refined vs noisy training boxes along each axis: centre offset (x, y) "
                "in % of the clean box's width / height, log size ratio (w, h) x 100; bias = mean, spread = std, "
                "pooled over seeds", decimals={"level": 2, "IoU": 3})

    # 4. failure modes
    fm_cfg = cfg.failure_modes
    grid = dict(cfg.sensitivity)
    fm_train, sens_train = training_failure_modes(g, cache, fm_cfg, grid, skips)
    fm_test, sens_test = detection_failure_modes(g, cache, datasets, fm_cfg, grid, skips)
    if bar is not None:
        bar.update(len(g))
    if not (fm_train.empty and fm_test.empty):
        w.heading(3, "Failure modes")
        w.para("Refined training boxes vs the clean training boxes (noisy input = the noisy boxes themselves), and "
               f"test detections with score >= {fm_cfg.min_score:g} vs the test ground truth; see Definitions.")
    for source, fm, sens, label in (("training", fm_train, sens_train, "refined"),
                                    ("test", fm_test, sens_test, "predicted")):
        if fm.empty:
            if len(fm.columns):  # cells were classified, none had a box to classify
                w.para(f"no {source} boxes to classify" + (f" (no detection scored >= {fm_cfg.min_score:g})"
                                                           if source == "test" else ""))
            continue
        w.heading(4, f"{source} boxes")
        unassigned = int((fm["mode"] == UNASSIGNED).sum())
        by = ["method", "noise_level"]
        w.frame(_rates_wide(fm, by), f"{gslug}_modes_{source}", f"{source}: failure modes, % of all boxes",
                csv=pd.concat([mode_rates(fm, "mode", by).assign(variant="any class"),
                               mode_rates(fm, "mode_same_class", by).assign(variant="same class")]))
        if unassigned:
            w.para(f"{unassigned} detection(s) had no ground-truth object of their class in the image, or lay on "
                   "a crowd / ignored box (unassigned), and are left out of the rates.")
        w.frame(_rates_wide(fm, by + ["size"]), f"{gslug}_modes_{source}_by_size",
                f"{source}: failure modes by object size (COCO s/m/l of the clean box)",
                csv=mode_rates(fm, "mode", by + ["size"]))
        fig_rates = mode_rates(fm, "mode", by)
        w.figure(P.stacked_modes(fig_rates, title=f"{source} boxes"), f"{gslug}_modes_{source}",
                 f"{source}: share of each failure mode per method and noise level")
        w.frame(_sensitivity_wide(sens, list(grid)), f"{gslug}_sensitivity_{source}",
                f"{source}: sensitivity to the thresholds (pooled over noise levels)",
                csv=pool_rates(sens, by + list(grid)))
        empty = []
        for mode in MODES:
            try:
                ex = _examples(fm, mode, source, cache, datasets, cfg.gallery_per_mode, cfg.gallery_seed)
            except BenchError as exc:
                skips.add(f"gallery skipped ({exc})", source)
                break
            if not ex:
                empty.append(mode)
                continue
            png = gallery.render(ex, f"{source} boxes · {mode}", label)
            w.picture(png, f"galleries/{gslug}_{source}_{mode}.png", f"{source} · {mode} ({len(ex)} example(s))")
        if empty:
            w.para(f"no {source} examples of: {', '.join(empty)}")

    # 5. TIDE
    tide = tide_rows(g, cache, datasets, cfg.tide, cfg.tide_sizes, cfg.tide_styles, cfg.tide_iou_range, bar)
    if not tide.empty:
        _tide_section(w, tide, gslug, oracles, colors, cfg)


def _box_error_table(g: pd.DataFrame, cache: CellCache) -> pd.DataFrame:
    frames = []
    for row in g.itertuples(index=False):
        cell = cache(row.path)
        if cell.refined_boxes is not None and cell.noisy_train is not None:
            frames.append(box_errors(cell.noisy_train, cell.refined_boxes).assign(method=row.method,
                                                                                level=float(row.noise_level)))
    if not frames:
        return pd.DataFrame()
    return box_error_table(pd.concat(frames, ignore_index=True), ["method", "level"])


def _refined_panels(g: pd.DataFrame, cache: CellCache) -> list:
    pooled: dict = {}
    for row in g.itertuples(index=False):
        cell = cache(row.path)
        refined, noisy = cell.refined_boxes, cell.noisy_train
        if refined is None or noisy is None:
            continue
        a, b = refined_ious(noisy, refined)
        n, r = pooled.setdefault((row.method, float(row.noise_level)), ([], []))
        n.append(a)
        r.append(b)
    return [(m, lv, np.concatenate(n), np.concatenate(r)) for (m, lv), (n, r) in sorted(pooled.items(),
                                                                                      key=lambda x: (str(x[0][0]),
                                                                                                     x[0][1]))]


def _tide_section(w: Writer, tide: pd.DataFrame, gslug: str, oracles, colors, cfg: ReportConfig) -> None:
    w.heading(3, "Error decomposition (TIDE axes)")
    t = cfg.tide
    w.para(f"dAP in points: the AP gained when an oracle fixes only that error type (positive IoU {t.pos_threshold:g}, "
           f"background IoU {t.bg_threshold:g}, at most {t.max_dets} detections per image); FalsePos / FalseNeg "
           "remove every false positive / every missed object. Box noise shows up as Loc.")
    value_cols = ["AP", *[f"dAP_{k}" for k in (*ERROR_TYPES, *SPECIAL_TYPES)]]
    count_cols = [f"n_{k}" for k in ERROR_TYPES]
    keys = ["style", "metric", "size", "method", "noise_level"]
    agg = tide.groupby(keys, sort=False)[value_cols + count_cols].mean()
    agg["seeds"] = tide.groupby(keys, sort=False).size()
    agg = agg.reset_index()
    pts = agg.copy()
    pts[value_cols] = pts[value_cols] * 100.0
    rename = {f"dAP_{k}": k for k in (*ERROR_TYPES, *SPECIAL_TYPES)} | {f"n_{k}": f"#{k}" for k in ERROR_TYPES}
    pos = f"AP{int(round(t.pos_threshold * 100))}"
    for style, metric, size, title in (("coco", pos, "all", f"COCO {pos}: dAP per error type"),
                                       ("coco", pos, None, f"COCO {pos} by object size"),
                                       ("voc", pos, "all", f"VOC-style {pos} (all-point AP, VOC matching)"),
                                       ("coco", "AP", "all", "COCO AP@[.5:.95]: dAP averaged over IoU thresholds")):
        sel = pts[(pts["style"] == style) & (pts["metric"] == metric)]
        sel = sel[sel["size"] == size] if size else sel[(sel["size"] != "all") & sel["AP"].notna()]
        if sel.empty:
            continue
        cols = ["method", "noise_level"] + ([] if size else ["size"]) + ["seeds", *value_cols] + \
            (count_cols if size == "all" else [])
        name = f"{gslug}_tide_{style}_{metric}_{size or 'by_size'}"
        w.frame(sel[cols].rename(columns=rename), name, title, csv=tide[(tide["style"] == style) &
                                                                        (tide["metric"] == metric)])
    main = pts[(pts["style"] == "coco") & (pts["metric"] == pos) & (pts["size"] == "all")]
    if not main.empty:
        w.figure(P.tide_lines(main, oracles=oracles, colors=colors), f"{gslug}_tide",
                 f"TIDE dAP vs noise level (COCO {pos}, mean over seeds)")


def cells_section(w: Writer, frame: pd.DataFrame, cache: CellCache) -> None:
    w.heading(2, "Cells and environments", anchor="cells")
    tables = registry.report_tables()
    shown = tables[0][2] if tables else []  # the first report table's metrics (AP, AP50, AP75, VOC AP50)
    cols = ["cell", "method", "dataset", "noise_model", "noise_level", "seed", "profile", *shown]
    view = frame[[c for c in cols if c in frame]].copy()
    for m in shown:
        if m in view:
            view[m] = view[m] * registry.scale(m)
    view = view.rename(columns={m: registry.label(m) for m in shown})
    w.frame(view, "cells", "finished cells (AP in points)", csv=frame)
    env = environment(frame, cache)
    parts = []
    for row in env.to_dict("records"):
        body = "".join(f"<tr><td>{html.esc(k)}</td><td>{html.esc(v)}</td></tr>" for k, v in row.items()
                       if k != "cell" and not (isinstance(v, float) and np.isnan(v)))
        parts.append(html.details(f"{row['cell']} · {row['method']} · noise {row['noise_level']:g} · seed "
                                  f"{row['seed']}", f"<table class='plain'><tbody>{body}</tbody></table>"))
    w.raw_html("<h3>environment of each cell</h3>" + "".join(parts))
    w.csv("environment", env)


def definitions(w: Writer, cfg: ReportConfig) -> None:
    c = cfg.failure_modes
    w.heading(2, "Definitions", anchor="definitions")
    w.para("Tables: AP points (x100) as mean ± sample std (n seeds); best non-oracle mean per column in bold; "
           "retention = AP / clean-oracle AP; AUC = trapezoid area under mean AP vs noise level divided by the "
           "level span (mean AP over the noise range); rAUC = AUC / oracle AP.")
    w.para(f"Failure modes (box D attached to object G; first match wins): good if IoU(D,G) >= {c.bad_iou:g}; "
           f"group if >= {c.group_min_objects} objects have IoG >= {c.group_cover:g} and area(D) >= "
           f"{c.group_area_ratio:g} x area(G); drift if another object has IoU(D,·) > IoU(D,G) and >= "
           f"{c.drift_iou:g} (same-class variant: only objects of G's class); part if IoD(D,G) >= {c.part_iod:g} and "
           f"area(D) <= {c.part_area_ratio:g} x area(G); oversize if IoG(D,G) >= {c.oversize_iog:g}, area(D) >= "
           f"{c.oversize_area_ratio:g} x area(G) and no other object covered; shift otherwise. Training boxes are "
           "attached by annotation id; a test detection to the same-class GT of highest IoU. Crowd / difficult / "
           "ignored boxes are neither classified nor objects (a detection whose best GT is one is unassigned).")
    w.para("TIDE axes (own implementation, COCOeval matching): per false positive, the first of Loc (best same-class "
           "IoU in [bg, pos]), Cls (other-class IoU >= pos), Dupe (matched same-class GT with IoU >= pos), Bkg "
           "(all IoU <= bg), Both; Miss = unmatched GT no Cls/Loc error targets. Sizes: GT outside the bucket "
           "ignored, as in COCOeval.")
