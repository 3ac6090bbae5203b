"""Measurements of prediction at any size and of test-time augmentation (the README's figures; nothing here is a test):

  python tools/benchmark_predict.py modes     # trains the two embedded MMSeg defaults once (seeded), then evaluates
                                              # each way: whole, slide (blended), slide + flip, TTA; metric, s/img
  python tools/benchmark_predict.py memory    # peak RSS of `pe-dense predict --window 256` at two image sizes
                                              # (--classes, default 150 as ADE20K; --sides 1000 4000)

``--work-dir`` keeps the trainings (reused when there); ``--json FILE`` also writes the figures.
"""
from __future__ import annotations

import argparse
import glob
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
EMB = os.path.join(ROOT, "configs", "mmseg", "embedded")
RUNS = {"segmentation": ("upernet_pe-spatial-t_shapes-128x128.py", "mIoU"),
        "depth": ("dpt_pe-spatial-t_nyu-planes-120x160.py", "rmse")}
WINDOW = dict(crop_size=(96, 96), stride=(64, 64), blend="ramp")  # windows smaller than the embedded images


def _trained(work_dir: str, config: str) -> str:
    from pe_dense.mmseg.train import main as train

    ckpts = sorted(glob.glob(os.path.join(work_dir, "iter_*.pth")), key=os.path.getmtime)
    if not ckpts:
        train([config, "--work-dir", work_dir, "--cfg-options", f"visualizer.name=bp_{os.path.basename(work_dir)}"])
        ckpts = sorted(glob.glob(os.path.join(work_dir, "iter_*.pth")), key=os.path.getmtime)
    return ckpts[-1]


def _evaluate(config: str, ckpt: str, work_dir: str, mode: str, depth: bool):
    from mmengine.config import Config
    from mmengine.runner import Runner

    import pe_dense.mmseg  # noqa: F401

    cfg = Config.fromfile(config)
    cfg.work_dir = work_dir
    cfg.load_from = ckpt
    cfg.visualizer.name = f"bp_eval_{os.path.basename(work_dir)}"
    cfg.default_hooks.pop("visualization", None)
    test_cfg = dict(cfg.model.test_cfg)
    if mode == "slide":
        test_cfg = dict(test_cfg, mode="slide", **WINDOW)
    elif mode == "slide + flip":
        test_cfg = dict(test_cfg, mode="slide", flip=True, **WINDOW)
    elif mode == "flip":
        test_cfg = dict(test_cfg, mode="whole", flip=True)
    else:
        test_cfg = dict(test_cfg, mode="whole")
    cfg.model.test_cfg = test_cfg
    if mode == "TTA (scales x flip)":
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    runner = Runner.from_cfg(cfg)
    n = len(runner.test_dataloader.dataset)
    t0 = time.time()
    metrics = runner.test()
    return metrics, (time.time() - t0) / n


def modes(a):
    rows = []
    for task, (name, metric) in RUNS.items():
        config = os.path.join(EMB, name)
        wd = os.path.join(a.work_dir, task)
        ckpt = _trained(wd, config)
        depth = task == "depth"
        for mode in (["whole", "slide", "slide + flip", "flip"] if depth else
                     ["whole", "slide", "slide + flip", "TTA (scales x flip)"]):
            m, spi = _evaluate(config, ckpt, os.path.join(wd, "eval_" + mode.split()[0]), mode, depth)
            value = m[metric]
            rows.append(dict(task=task, mode=mode, metric=metric, value=value, s_per_img=spi))
            print(f"{task:>12} {mode:>20}: {metric} {value:.3f}, {spi:.3f} s/img")
    return rows


def _one_memory(side: int, window: int, work: str):
    from pe_dense.cli import main as cli

    path = os.path.join(work, f"img_{side}.png")
    config = os.path.join(EMB, RUNS["segmentation"][0])
    ckpt = os.path.join(work, "model.pth")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.time()
    cli(["predict", config, ckpt, path, "--out", os.path.join(work, "out"), "--window", str(window)])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{side}x{side * 3 // 4}: peak RSS {peak / 1024:.0f} MiB (before predicting {before / 1024:.0f} MiB), "
          f"{time.time() - t0:.0f} s")


def memory(a):
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import pe_dense.mmseg  # noqa: F401
    from pe_dense.data.images import shapes_image

    os.makedirs(a.work_dir, exist_ok=True)
    cfg = Config.fromfile(os.path.join(EMB, RUNS["segmentation"][0]))
    cfg.model.backbone.pretrained = None
    cfg.model.decode_head.num_classes = cfg.model.auxiliary_head.num_classes = a.classes
    init_default_scope("mmseg")
    torch.manual_seed(0)
    meta = {"dataset_meta": {"classes": [f"class {i}" for i in range(a.classes)],
                             "palette": [[(i * 37) % 256, (i * 91) % 256, (i * 53) % 256] for i in range(a.classes)]}}
    torch.save({"state_dict": MODELS.build(cfg.model).state_dict(), "meta": meta},
               os.path.join(a.work_dir, "model.pth"))
    rows = []
    for side in a.sides:
        path = os.path.join(a.work_dir, f"img_{side}.png")
        if not os.path.exists(path):  # made here: the measured process only predicts
            shapes_image((side * 3 // 4, side)).save(path)
        out = subprocess.run([sys.executable, __file__, "_memory", str(side), str(a.window), a.work_dir],
                             capture_output=True, text=True, check=True).stdout.strip().splitlines()
        line = f"{a.classes} classes, " + next(x for x in out if "peak RSS" in x)
        print(line)
        rows.append(line)
    return rows


def main(argv=None):
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "_memory":
        return _one_memory(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["modes", "memory"])
    ap.add_argument("--work-dir", default="work_dirs/benchmark_predict")
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--classes", type=int, default=150, help="memory: classes of the random-init model (ADE20K's 150)")
    ap.add_argument("--sides", type=int, nargs="+", default=[1000, 4000], help="memory: image widths (height 3/4)")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    from benchmark_features import machine  # noqa: E402

    print(f"machine: {machine()}")
    rows = {"modes": modes, "memory": memory}[a.what](a)
    if a.json:
        from pe_dense.io import write_json

        write_json(a.json, dict(what=a.what, machine=machine(), rows=rows, args=vars(a)))
    return rows


if __name__ == "__main__":
    main()
