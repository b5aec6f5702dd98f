"""Default hyper-parameters of KL-Loss: one place, with the source of every value.

Paper: He et al., "Bounding Box Regression with Uncertainty for Accurate Object Detection", CVPR 2019
(arXiv 1809.08545). Backbone, schedule and RoI sampling are the suite's shared `model`/`train` sections (the
same as the Faster R-CNN baseline row), so the only differences from the baseline are the ones listed here.
"""

DEFAULTS = {
    "common": {
        # Std of the Gaussian init of the FC layer that predicts alpha = log(sigma^2); mean 0, bias 0, so
        # alpha ~ 0 (sigma ~ 1) and KL loss starts out as plain smooth L1 (paper §3.2).
        "alpha_init_std": 1e-4,
        # Weights of the corner deltas t_x1 = w * (x1 - x1_a) / w_a, ... (order x1, y1, x2, y2). Paper §3.1
        # (Eq. 1) normalises corner offsets by the proposal's width / height; the weight 10 is this package's
        # choice, not a paper value: torchvision / Detectron give a centre offset (same scale) weight 10, so a
        # corner error of 10 % of the proposal size is one unit, where the smooth-L1 form switches branch.
        "delta_weights": [10.0, 10.0, 10.0, 10.0],
        # Switch point of the smooth-L1 form of KL loss: |x_g - x_e| > 1 linear, <= 1 quadratic (paper §3.2).
        "smooth_l1_beta": 1.0,
        # Variance voting at inference (paper §3.3, Algorithm 1); false = plain NMS (the "KL Loss only" ablation).
        "var_vote": True,
        # sigma_t of the voting weight p_i = exp(-(1 - IoU(b_i, b))^2 / sigma_t) (paper §3.3: 0.02 on COCO).
        "sigma_t": 0.02,
    },
    "cpu": {},
    "paper": {},
}
