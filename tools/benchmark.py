#!/usr/bin/env python
"""Speed and memory of a pe_dense backbone against timm's same PE model, same weights, same process.

Measures forward (no grad) and forward+backward images/s and peak memory, interleaving the two implementations
round by round (median of rounds), and prints the ratios. CPU and CUDA; ``--bf16`` (autocast on CUDA, pure bf16
weights with ``--pure-bf16``), ``--compile``.

MFU: model FLOPs per image = 2 x the multiply-adds that fvcore counts for one forward of the pe_dense model at
the measured size and setting (attention included: 2 x B x heads x N^2 x head_dim per q.k and per attn.v); a
training step counts 3x the forward. MFU = FLOPs x img/s / the device's peak (``--peak-tflops``, default from the
device name: H100/H200 989 TFLOP/s dense bf16, A100 312; fp32 runs use the same peak, as is usual).

Examples (the two targets of the backbone issue):
  python tools/benchmark.py --model PE-Spatial-B16-512 --size 512                       # native, global
  python tools/benchmark.py --model PE-Spatial-B16-512 --size 1024 --window-size 16 --global-blocks 2,5,8,11
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import pe_dense  # noqa: E402


class PeakRSS:
    """Peak resident memory (bytes) above the level at entry, sampled from /proc every 2 ms (CPU)."""

    def __enter__(self):
        self.base = self.peak = self._rss()
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    @staticmethod
    def _rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self):
        while not self._stop:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.002)

    def __exit__(self, *a):
        self._stop = True
        self._t.join()
        self.peak = max(self.peak, self._rss())
        self.delta = self.peak - self.base


def _peak_tflops(device) -> float:
    """Dense bf16 peak of known GPUs (vendor figures); 0 (unknown) elsewhere."""
    if device.type != "cuda":
        return 0.0
    name = torch.cuda.get_device_name(device)
    for key, tflops in (("H200", 989.4), ("H100", 989.4), ("A100", 312.0), ("L40S", 362.1), ("A10", 125.0)):
        if key in name:
            return tflops
    return 0.0


def run_once(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def peak_memory(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    with PeakRSS() as p:
        fn()
    return p.delta


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="PE-Spatial-B16-512")
    ap.add_argument("--size", type=int, default=None, help="square input side (default: native)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--window-size", type=int, default=0)
    ap.add_argument("--global-blocks", default="", help="e.g. 2,5,8,11")
    ap.add_argument("--ref-size", type=int, default=None, help="timm's input side (default: --size)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    ap.add_argument("--pure-bf16", action="store_true", help="bf16 weights and inputs")
    ap.add_argument("--compile", action="store_true", help="torch.compile both models")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--no-backward", action="store_true")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--peak-tflops", type=float, help="the device's peak dense bf16 TFLOP/s, for MFU")
    a = ap.parse_args(argv)

    import timm

    device = torch.device(a.device)
    spec = pe_dense.get_spec(a.model)
    size = a.size or spec.img_size
    ref_size = a.ref_size or size
    gb = [int(v) for v in a.global_blocks.replace(",", " ").split()]
    torch.manual_seed(0)
    ref = timm.create_model(spec.timm_name, pretrained=False, num_classes=0, dynamic_img_size=True)
    ours = pe_dense.create_model(a.model, window_size=a.window_size, global_blocks=gb,
                                 pos_embed="bicubic", rope="interpolate")
    pe_dense.load_checkpoint(ours, ref.state_dict())  # same weights
    dtype = torch.bfloat16 if a.pure_bf16 else torch.float32
    ref, ours = ref.to(device, dtype), ours.to(device, dtype)
    fwd_ref = (lambda x: ref.forward_features(x)) if not a.compile else torch.compile(ref.forward_features)
    fwd_ours = ours if not a.compile else torch.compile(ours)

    def make(fn, model, s):
        x = torch.randn(a.batch, 3, s, s, device=device, dtype=dtype)

        def autocast():
            return torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.bf16)

        def forward():
            model.eval()
            with torch.no_grad(), autocast():
                fn(x)

        def train_step():
            model.train()
            with autocast():
                out = fn(x)
                out = out[-1] if isinstance(out, list) else out
            out.float().mean().backward()
            model.zero_grad(set_to_none=True)

        return forward, train_step

    impls = {"pe_dense": make(fwd_ours, ours, size), "timm": make(fwd_ref, ref, ref_size)}
    res = {}
    modes = ["forward"] + ([] if a.no_backward else ["fwd+bwd"])
    for mi, mode in enumerate(modes):
        for name, fns in impls.items():
            for _ in range(a.warmup):
                fns[mi]()
        times = {n: [] for n in impls}
        for _ in range(a.rounds):  # interleaved rounds
            for name, fns in impls.items():
                times[name].append(run_once(fns[mi], device))
        for name, fns in impls.items():
            t = statistics.median(times[name])
            res[(name, mode)] = dict(img_s=a.batch / t, peak_mib=peak_memory(fns[mi], device) / 2**20)

    from pe_dense.analysis import count_flops

    fwd_flops = 2e9 * count_flops(pe_dense.create_model(a.model, window_size=a.window_size, global_blocks=gb,
                                                        pos_embed="bicubic", rope="interpolate"),
                                  (size, size))["gflops"]
    peak = a.peak_tflops or _peak_tflops(device)

    def mfu(mode, img_s):
        if not peak:
            return float("nan")
        return fwd_flops * (3 if mode == "fwd+bwd" else 1) * img_s / (peak * 1e12)

    setting = f"window {a.window_size}, global {gb}" if a.window_size else "global attention"
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    prec = "pure bf16" if a.pure_bf16 else ("bf16 autocast" if a.bf16 else "fp32")
    print(f"{a.model}, batch {a.batch}, {dev}, {prec}{', compiled' if a.compile else ''}, torch {torch.__version__}")
    print(f"  pe_dense at {size}x{size} ({setting}) vs timm at {ref_size}x{ref_size} (global attention)")
    print(f"  forward FLOPs {fwd_flops / 1e9:.1f} G per image (2 x fvcore multiply-adds of pe_dense's setting; "
          f"fwd+bwd 3x), peak {peak or 'unknown'} TFLOP/s")
    print(f"  {'mode':<9} {'pe_dense img/s':>15} {'timm img/s':>11} {'ratio':>6} {'MFU':>6} {'timm MFU':>9} "
          f"{'pe_dense MiB':>13} {'timm MiB':>9}")
    out = {}
    for mode in modes:
        o, r = res[("pe_dense", mode)], res[("timm", mode)]
        ratio = o["img_s"] / r["img_s"]
        o["mfu"], r["mfu"] = mfu(mode, o["img_s"]), mfu(mode, r["img_s"]) if ref_size == size else float("nan")
        out[mode] = dict(pe_dense=o, timm=r, ratio=ratio)
        print(f"  {mode:<9} {o['img_s']:>15.3f} {r['img_s']:>11.3f} {ratio:>5.2f}x {o['mfu']:>6.1%} {r['mfu']:>9.1%} "
              f"{o['peak_mib']:>13.0f} {r['peak_mib']:>9.0f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(args=vars(a), device=dev, results=out), f, indent=1)
    return out


if __name__ == "__main__":
    main()
