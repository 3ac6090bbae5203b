"""The MMSeg part of ``pe-dense demo``: train and evaluate the two embedded defaults quietly (mmengine's full log in
``WORK_DIR/train.log``, a progress bar on the terminal), then report their figures beside the trivial baseline's
(``baselines.py``: what a model that learned nothing scores) and where the pictures are."""
import contextlib
import glob
import json
import os


def _final_metrics(work_dir):
    files = sorted(glob.glob(os.path.join(work_dir, "*", "vis_data", "scalars.json")))
    rows = [json.loads(line) for f in files for line in open(f)]
    evals = [r for r in rows if "mIoU" in r or "rmse" in r]
    return evals[-1] if evals else {}


RUNS = [("segmentation", "PE-Spatial-T + UPerNet, generated shapes in the ADE20K layout",
         "upernet_pe-spatial-t_shapes-128x128.py", "mmseg_shapes", ("mIoU", "aAcc"), "all-background"),
        ("depth", "PE-Spatial-T + DPT, generated planes in the NYUv2 layout",
         "dpt_pe-spatial-t_nyu-planes-120x160.py", "mmseg_nyu_planes", ("rmse", "d1", "abs_rel"),
         "mean training depth")]


def _figures(m, keys):
    return "  ".join(f"{k} {m[k]:.{1 if k in ('mIoU', 'aAcc') else 3}f}" for k in keys if k in m)


def baseline(cfg_path: str) -> dict:
    """The config's trivial baseline (``baselines.trivial_baseline``) on its embedded validation set."""
    from mmengine.config import Config

    from .baselines import trivial_baseline
    from .train import prepare_embedded

    cfg = Config.fromfile(cfg_path)
    prepare_embedded(cfg)
    return trivial_baseline(cfg)


def run_demo(out_dir: str, configs: str) -> dict:
    """``configs``: the folder holding the embedded configs (a checkout's ``configs/mmseg/embedded``). Returns
    {step: final metrics}."""
    from .train import main

    figures = {}
    for step, title, cfg, name, keys, trivial in RUNS:
        wd = os.path.join(out_dir, name)
        cfg = os.path.normpath(os.path.join(configs, cfg))
        log = os.path.join(wd, "train.log")
        print(f"\n== mmseg {step} ({title}): python tools/train_mmseg.py {os.path.relpath(cfg)} --work-dir {wd}")
        if glob.glob(os.path.join(wd, "iter_*.pth")):
            print(f"   (already trained in {wd}: its figures; delete the folder to train again)")
        else:
            os.makedirs(wd, exist_ok=True)
            with open(log, "w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
                # mmengine's visualizer is a per-process singleton found by name: a second Runner in this process
                # would reuse the first one's and write its logs and scalars into the first run's folder
                main([cfg, "--work-dir", wd, "--cfg-options", f"visualizer.name=pe_dense_demo_{name}"],
                     progress=f"   {step}")
        m = _final_metrics(wd)
        with open(log, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
            base = baseline(cfg)
        figures[step] = dict({k: m[k] for k in keys if k in m}, baseline={k: base[k] for k in keys})
        print(f"   {_figures(m, keys)}   ({trivial}: {_figures(base, keys)}; random init, seed 0; full log: {log})")
        pics = sorted(glob.glob(os.path.join(wd, "*", "vis_data", "vis_image", "*.png")))
        if pics:
            print(f"   pictures of predictions: {os.path.dirname(pics[0])}/ ({len(pics)} files)")
    return figures
