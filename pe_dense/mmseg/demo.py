"""The MMSeg part of ``pe-dense demo``: train and evaluate the two embedded defaults, report their figures."""
import glob
import json
import os


def _final_metrics(work_dir):
    files = sorted(glob.glob(os.path.join(work_dir, "*", "vis_data", "scalars.json")))
    rows = [json.loads(line) for f in files for line in open(f)]
    evals = [r for r in rows if "mIoU" in r or "rmse" in r]
    return evals[-1] if evals else {}


def run_demo(out_dir: str, configs: str):
    """``configs``: the folder holding the embedded configs (a checkout's ``configs/mmseg/embedded``)."""
    from .train import main

    runs = [("segmentation (PE-Spatial-T + UPerNet, generated shapes, ADE20K layout)",
             "upernet_pe-spatial-t_shapes-128x128.py", "mmseg_shapes", ("mIoU", "aAcc")),
            ("depth (PE-Spatial-T + DPT, generated planes, NYUv2 layout)",
             "dpt_pe-spatial-t_nyu-planes-120x160.py", "mmseg_nyu_planes", ("rmse", "d1", "abs_rel"))]
    for title, cfg, name, keys in runs:
        wd = os.path.join(out_dir, name)
        cfg = os.path.normpath(os.path.join(configs, cfg))
        print(f"\n== mmseg {title}: python tools/train_mmseg.py {os.path.relpath(cfg)} --work-dir {wd}")
        if glob.glob(os.path.join(wd, "iter_*.pth")):
            print(f"(already trained in {wd}: showing its figures; delete the folder to train again)")
        else:
            # mmengine's visualizer is a per-process singleton found by name: a second Runner in this process
            # would reuse the first one's and write its logs and scalars into the first run's folder
            main([cfg, "--work-dir", wd, "--cfg-options", f"visualizer.name=pe_dense_demo_{name}"])
        m = _final_metrics(wd)
        print("   " + "  ".join(f"{k} {m[k]:.3f}" for k in keys if k in m))
        pics = sorted(glob.glob(os.path.join(wd, "*", "vis_data", "vis_image", "*.png")))
        if pics:
            print(f"   pictures of predictions: {os.path.dirname(pics[0])}/ ({len(pics)} files)")
