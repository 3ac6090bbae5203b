"""``pe-dense demo``: the embedded default. A tour on the built-in picture and a small model, seeded (random init: no
weights offline), a few lines per step: the model table, one tower's size, a PCA picture of its features, tracking on
the built-in video, and (with MMSegmentation) segmentation and depth runs whose full logs stay in files."""
from __future__ import annotations

import os

import torch

DEMO_MODEL = "PE-Spatial-T16-512"


def run_demo(out_dir: str = "pe_dense_demo", configs: str = "configs"):
    from .analysis import features_picture, print_info, print_models
    from .tracking.demo import run_demo as run_tracking_demo

    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(0)
    print("== pe-dense list")
    print_models()
    print(f"\n== pe-dense info {DEMO_MODEL} --size 512")
    print_info(DEMO_MODEL, size=512)
    print(f"\n== pe-dense features builtin:shapes --model {DEMO_MODEL} (random init: no weights offline)")
    features_picture("builtin:shapes", os.path.join(out_dir, "features_pca.png"), DEMO_MODEL, size=384)
    print("\n== tracking: DAVIS-style label propagation on the built-in video (PE-Spatial-T, random init, seed 0)")
    torch.manual_seed(0)
    run_tracking_demo(os.path.join(out_dir, "tracking"))
    try:
        import mmseg  # noqa: F401
    except ImportError:
        print("\n(mmsegmentation is not installed: the segmentation and depth demos are skipped; "
              "bash scripts/setup.sh installs it)")
        return
    embedded = os.path.join(configs, "mmseg", "embedded")
    if not os.path.isdir(embedded):
        print(f"\n(the segmentation and depth demos train the repository's configs, {embedded} is not here: run "
              f"`pe-dense demo` from the root of a pe_dense checkout, or pass --configs PATH/TO/configs)")
        return
    from .mmseg.demo import run_demo as run_mmseg_demo

    run_mmseg_demo(out_dir, embedded)
