#!/usr/bin/env python
"""Training speed of a PE Mask R-CNN against Detectron2's ViTDet Mask R-CNN (same size class), same run.

Both models are built from their LazyConfigs (ours: ``configs/detectron2/COCO/mask_rcnn_pe_spatial_b_100ep.py``;
ViTDet-B: Detectron2's ``common/models/mask_rcnn_vitdet.py``), random weights, and trained on the same synthetic
batch (AdamW step included), rounds interleaved; medians are printed with the ratio.

  python tools/benchmark_detectron2.py --size 512 --batch 1 --rounds 3

``--only CONFIG`` measures one config alone (e.g. the released PE-Spatial-G recipe at 1024 with its activation
checkpointing); ``--amp [float16|bfloat16]`` runs the step with Detectron2's own AMPTrainer on GPUs (fp16
autocast + GradScaler, the recipes' ``train.amp.enabled=True``, or bf16 without loss scaling; SimpleTrainer
otherwise); the step's peak memory is printed (on CUDA ``max_memory_allocated``; on the CPU the most the allocator
held above the weights during one more step, recorded by the profiler). DETA configs run the same way:
  python tools/benchmark_detectron2.py --only configs/detectron2/COCO/mask_rcnn_pe_spatial_g_36ep.py --size 1024 --amp
  python tools/benchmark_detectron2.py --only configs/detectron2/DETA/deta_pe_spatial_t_coco_1024_24ep.py --size 1024
"""
import argparse
import itertools
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402
from detectron2 import model_zoo  # noqa: E402
from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.structures import BitMasks, Boxes, Instances  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

from pe_dense.io import default_device, write_json  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def batch(n, size, device, num_classes=80):
    out = []
    for i in range(n):
        inst = Instances((size, size))
        inst.gt_boxes = Boxes(torch.tensor([[0.1, 0.2, 0.5, 0.6], [0.4, 0.3, 0.9, 0.8]]) * size)
        inst.gt_classes = torch.tensor([1, 7]) % num_classes
        m = torch.zeros(2, size, size, dtype=torch.bool)
        m[0, int(0.2 * size):int(0.6 * size), int(0.1 * size):int(0.5 * size)] = True
        m[1, int(0.3 * size):int(0.8 * size), int(0.4 * size):int(0.9 * size)] = True
        inst.gt_masks = BitMasks(m)
        out.append({"image": (torch.rand(3, size, size) * 255).to(device), "instances": inst.to(device),
                    "height": size, "width": size})
    return out


def build(cfg, size, device):
    cfg.model.backbone.square_pad = size
    model = instantiate(cfg.model).to(device).train()
    cfg.optimizer.params.model = model
    return model, instantiate(cfg.optimizer)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default=default_device())
    ap.add_argument("--only", help="measure this config alone")
    ap.add_argument("--amp", nargs="?", const="float16", default=None, choices=["float16", "bfloat16"],
                    help="Detectron2's AMPTrainer, as tools/train_net.py builds it (float16, the default: autocast + "
                         "GradScaler; bfloat16: autocast, no loss scaling; CUDA only)")
    ap.add_argument("--json", help="with --only: also write the result here")
    a = ap.parse_args()
    torch.manual_seed(0)
    if a.only:
        return only(a)
    pe_cfg = LazyConfig.load(os.path.join(ROOT, "configs/detectron2/COCO/mask_rcnn_pe_spatial_b_100ep.py"))
    vd_cfg = LazyConfig.load(os.path.join(ROOT, "configs/detectron2/COCO/mask_rcnn_pe_spatial_b_100ep.py"))
    vd_cfg.model = model_zoo.get_config("common/models/mask_rcnn_vitdet.py").model
    from functools import partial

    from detectron2.modeling.backbone.vit import get_vit_lr_decay_rate

    vd_cfg.optimizer.params.lr_factor_func = partial(get_vit_lr_decay_rate, num_layers=12, lr_decay_rate=0.7)
    vd_cfg.optimizer.params.overrides = {"pos_embed": {"weight_decay": 0.0}}
    models = {"PE-Spatial-B16 Mask R-CNN (pe_dense)": build(pe_cfg, a.size, a.device),
              "ViTDet-B Mask R-CNN (Detectron2)": build(vd_cfg, a.size, a.device)}
    data = batch(a.batch, a.size, a.device)

    def step(model, opt):
        with EventStorage(0):
            loss = sum(model(data).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    times = {k: [] for k in models}
    for k, (m, o) in models.items():
        step(m, o)  # warm-up
    for _ in range(a.rounds):
        for k, (m, o) in models.items():
            if a.device.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            step(m, o)
            if a.device.startswith("cuda"):
                torch.cuda.synchronize()
            times[k].append(time.perf_counter() - t)
    dev = torch.cuda.get_device_name() if a.device.startswith("cuda") else f"CPU ({torch.get_num_threads()} threads)"
    print(f"training step (fwd+bwd+AdamW), batch {a.batch} at {a.size}x{a.size}, {dev}, fp32, "
          f"torch {torch.__version__}")
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, t in med.items():
        n = sum(p.numel() for p in models[k][0].parameters()) / 1e6
        print(f"  {k:<40} {1 / t:.3f} it/s ({t:.2f} s/it, {n:.1f} M parameters)")
    a_, b_ = list(med.values())
    print(f"  ratio pe_dense / ViTDet: {b_ / a_:.2f}x the iterations per second")


def only(a):
    cfg = LazyConfig.load(a.only)
    model, opt = build(cfg, a.size, a.device)
    num_classes = cfg.model.roi_heads.num_classes if "roi_heads" in cfg.model else cfg.model.num_classes  # DETA
    data = batch(a.batch, a.size, a.device, num_classes)
    cuda = a.device.startswith("cuda")
    # Detectron2's own trainers, built as tools/train_net.py builds them: AMPTrainer (it asserts CUDA) with --amp on a
    # GPU, else SimpleTrainer
    from pe_dense.detectron2.train import build_trainer

    amp = a.amp if cuda else None
    cfg.train.amp.enabled = amp is not None
    if amp:
        cfg.train.amp.precision = amp
    trainer = build_trainer(cfg, model, itertools.repeat(data), opt)
    trainer.iter = 0

    def step():
        with EventStorage(0) as storage:
            trainer.storage = storage
            trainer.run_step()

    step()  # warm-up (optimizer state allocated)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(a.rounds):
        t = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    dev = torch.cuda.get_device_name() if cuda else f"CPU ({torch.get_num_threads()} threads)"
    n = sum(p.numel() for p in model.parameters()) / 1e6
    t = statistics.median(times)
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:  # one more step under the profiler (not timed): the most bytes the CPU allocator held above the weights
        from pe_dense.analysis import cpu_peak_bytes

        peak = cpu_peak_bytes(step) / 2**30
    mem = f", peak {peak:.2f} GiB"
    if a.json:
        write_json(a.json, dict(config=os.path.relpath(a.only, ROOT), size=a.size, batch=a.batch, device=dev, amp=amp,
                                trainer=type(trainer).__name__, s_per_it=t, peak_gib=peak if cuda else None,
                                cpu_peak_gib=None if cuda else peak, params_m=n,
                                torch=torch.__version__))
    print(f"{os.path.relpath(a.only, ROOT)}: {type(trainer).__name__} step "
          f"(fwd+bwd+AdamW{f', {amp} AMP' if amp else ''}), "
          f"batch {a.batch} at {a.size}x{a.size}, {dev}, torch {torch.__version__}: {t:.2f} s/it{mem}, "
          f"{n:.1f} M parameters")


if __name__ == "__main__":
    main()
