#!/usr/bin/env python
"""Speed, MFU and peak memory of a pe_dense backbone against a reference measured in the same run.

The reference (``--reference``) is timm's same PE model with the same weights at the same size (``timm``, the
default), or pe_dense's same tower with global attention in every block (``global``: what window attention buys).
Forward (no grad) and forward+backward images/s and peak memory are measured, the implementations interleaved round
by round (median of rounds), and the ratios printed. CPU and CUDA (``--cuda``); ``--bf16`` (autocast),
``--pure-bf16`` (bf16 weights and inputs); ``--compile`` (``on``: compiled only; ``both``: eager and compiled rows,
compiled with inductor, ``fullgraph=True`` for pe_dense, so a graph break fails the run); ``--sdpa flash`` runs every
attention under the flash kernel alone (PyTorch raises if an attention cannot use it).

FLOPs and MFU: FLOPs per image are written out from the architecture (``pe_dense.analysis.model_flops``): per block
``2 (4 N D^2 + 2 N D M) + 4 N^2 D`` (``4 N_w w^2 D`` for the attention of a windowed block), plus the patch embedding;
a training step counts 3x the forward. MFU = FLOPs x img/s / the peak of one large matrix product measured in the same
process (8192^3 in the run's precision on CUDA: the issue's H200 references used 790 TFLOP/s measured the same way;
2048^3 fp32 on CPU); ``--peak-tflops`` sets another peak (the vendor's dense bf16 figure for H100/H200 is 989).
Peak memory: the most allocated during one call above what was allocated before it (the weights), CUDA's
``max_memory_allocated``; on CPU the same figure from the allocations and frees the profiler records.

Examples:
  python tools/benchmark.py --model PE-Spatial-B16-512 --size 512                       # native, vs timm
  python tools/benchmark.py --model PE-Spatial-B16-512 --size 1024 --window-size 16 --global-blocks 2,5,8,11
  python tools/benchmark.py --cuda --model PE-Spatial-L14-448 --size 1022 --batch 8 --bf16 --compile both
  python tools/benchmark.py --cuda --model PE-Spatial-L14-448 --patch-size 16 --size 1024 --batch 8 --bf16 \\
      --window-size 16 --global-blocks 5,11,17,23 --reference global --sdpa flash --no-backward
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import pe_dense  # noqa: E402
from pe_dense.analysis import cpu_peak_bytes, model_flops  # noqa: E402
from pe_dense.io import default_device, write_json  # noqa: E402

FLOP_FORMULA = ("per block 2(4ND^2 + 2NDM) + 4N^2D (windowed: 4 N_w w^2 D for attention), + patch embedding 2ND3p^2; "
                "fwd+bwd = 3x forward")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_once(fn, device):
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def peak_memory(fn, device):
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        sync(device)
        return torch.cuda.max_memory_allocated(device) - base
    return cpu_peak_bytes(fn)


def matmul_peak(device, dtype):
    """(TFLOP/s, what was measured) of one large square matrix product on ``device``: 8192^3 in ``dtype`` on CUDA
    (mean of 10 after 3 warm-ups); on CPU 2048^3 in fp32 whatever the run's precision (CPUs without bf16 matrix
    instructions run a bf16 product of that size at under 1 GFLOP/s, a peak no model layer sees), for 1 s at most."""
    if device.type != "cuda":
        dtype = torch.float32
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3 if device.type == "cuda" else 1):
        a @ b
    sync(device)
    t = time.perf_counter()
    reps = 0
    while reps < 10:
        a @ b
        reps += 1
        if device.type != "cuda" and time.perf_counter() - t > 1.0:
            break
    sync(device)
    what = f"a {n}^3 {str(dtype).split('.')[-1]} matrix product"
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e12, what


def warm_up_inductor(device, dtype, autocast: bool):
    """Compiles and runs a small attention block once, so that the process's one-time inductor costs (imports, the
    compile workers, first lowerings) are not charged to whichever model is compiled first: measured on CPU, the
    first of two equal towers took 28-31 s to compile and the second 19-20 s, whichever came first."""
    blk = torch.nn.TransformerEncoderLayer(64, 2, 128, batch_first=True, norm_first=True).to(device, dtype).eval()
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        torch.compile(blk)(torch.randn(1, 16, 64, device=device, dtype=dtype))
    torch._dynamo.reset()


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="PE-Spatial-B16-512")
    ap.add_argument("--size", type=int, default=None, help="square input side (default: native)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--patch-size", type=int, default=None,
                    help="pe_dense's patch (e.g. 16 for a patch-14 tower, as the detection recipes)")
    ap.add_argument("--window-size", type=int, default=0)
    ap.add_argument("--global-blocks", default="", help="e.g. 2,5,8,11")
    ap.add_argument("--reference", choices=("timm", "global"), default="timm",
                    help="timm: timm's same model and weights, global attention; global: pe_dense's same tower "
                         "with global attention in every block")
    ap.add_argument("--ref-size", type=int, default=None, help="the reference's input side (default: --size)")
    ap.add_argument("--cuda", action="store_true", help="run on the GPU (same as --device cuda)")
    ap.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast")
    ap.add_argument("--pure-bf16", action="store_true", help="bf16 weights and inputs")
    ap.add_argument("--compile", nargs="?", const="on", default="off", choices=("off", "on", "both"),
                    help="torch.compile (inductor) both implementations: on = compiled only, both = eager and "
                         "compiled rows")
    ap.add_argument("--sdpa", choices=("auto", "flash"), default="auto",
                    help="flash: allow only the flash attention kernel (an attention that cannot use it fails)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--no-backward", action="store_true")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--peak-tflops", type=float,
                    help="the device's peak TFLOP/s for MFU (default: a large matrix product measured in this run)")
    a = ap.parse_args(argv)
    if a.cuda and a.device not in (None, "cuda"):
        ap.error(f"--cuda and --device {a.device} disagree")
    a.device = "cuda" if a.cuda else (a.device or default_device())
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--cuda / --device cuda: PyTorch sees no GPU here (torch.cuda.is_available() is False); "
                 "run on a GPU machine or leave --cuda out")
    if a.sdpa == "flash" and not a.device.startswith("cuda"):
        ap.error("--sdpa flash needs a GPU: the flash attention kernel is CUDA's")
    if a.window_size < 0 or a.batch < 1 or a.rounds < 1:
        ap.error("--window-size must be >= 0, --batch and --rounds >= 1")
    if a.reference == "global" and not a.window_size:
        ap.error("--reference global compares window attention with global attention: give --window-size")
    return a


def build(a, device, dtype):
    """(ours, reference model, reference's forward, reference's name, a pe_dense tower of the reference's setting
    to count its FLOPs on): same weights."""
    spec = pe_dense.get_spec(a.model)
    gb = [int(v) for v in a.global_blocks.replace(",", " ").split()]
    common = dict(pos_embed="bicubic", rope="interpolate")  # timm's table resampling and RoPE positions
    if a.patch_size:
        common["patch_size"] = a.patch_size
    torch.manual_seed(0)
    ours = pe_dense.create_model(a.model, window_size=a.window_size, global_blocks=gb, **common)
    if a.reference == "timm":
        import timm

        ref = timm.create_model(spec.timm_name, pretrained=False, num_classes=0, dynamic_img_size=True)
        pe_dense.load_checkpoint(ours, ref.state_dict())  # same weights (conv1 resampled for another patch)
        with torch.device("meta"):  # only its shape is read: no weights allocated (1.8B parameters for G)
            ref_flops_model = pe_dense.create_model(a.model, **dict(common, patch_size=spec.patch_size))
        ref_fn = ref.forward_features
        ref_name = "timm"
    else:  # the same tower, global attention everywhere, no class token (as the windowed model)
        ref = pe_dense.create_model(a.model, use_cls_token=False, **common)
        ref.load_state_dict(ours.state_dict())
        ref_flops_model, ref_fn, ref_name = ref, ref, "pe_dense global"
    ours, ref = ours.to(device, dtype), ref.to(device, dtype)
    return ours, ref, ref_fn, ref_name, ref_flops_model


def main(argv=None):
    a = parse_args(argv)
    device = torch.device(a.device)
    dtype = torch.bfloat16 if a.pure_bf16 else torch.float32
    size = a.size or pe_dense.get_spec(a.model).img_size
    ref_size = a.ref_size or size
    ours, ref, ref_fn, ref_name, ref_flops_model = build(a, device, dtype)
    flops = {"pe_dense": model_flops(ours, (size, size)), ref_name: model_flops(ref_flops_model, (ref_size, ref_size))}
    compute_dtype = torch.bfloat16 if (a.bf16 or a.pure_bf16) else torch.float32
    peak_measured, peak_what = matmul_peak(device, compute_dtype)
    peak = a.peak_tflops or peak_measured

    def sdpa_ctx():
        if a.sdpa == "flash":
            from torch.nn.attention import SDPBackend, sdpa_kernel

            return sdpa_kernel([SDPBackend.FLASH_ATTENTION])
        return contextlib.nullcontext()

    def make(fn, model, s):
        x = torch.randn(a.batch, 3, s, s, device=device, dtype=dtype)

        def autocast():
            return torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.bf16)

        def forward():
            model.eval()
            with torch.no_grad(), autocast(), sdpa_ctx():
                fn(x)

        def train_step():
            model.train()
            with autocast(), sdpa_ctx():
                out = fn(x)
                out = out[-1] if isinstance(out, list) else out
                out.float().mean().backward()
            model.zero_grad(set_to_none=True)

        return forward, train_step

    variants = {"off": [False], "on": [True], "both": [False, True]}[a.compile]
    modes = ["forward"] + ([] if a.no_backward else ["fwd+bwd"])
    rows = []
    for compiled in variants:
        if compiled:
            warm_up_inductor(device, dtype, a.bf16)
            torch._dynamo.reset()
            fns = {"pe_dense": torch.compile(ours, fullgraph=True), ref_name: torch.compile(ref_fn)}
        else:
            fns = {"pe_dense": ours, ref_name: ref_fn}
        impls = {"pe_dense": make(fns["pe_dense"], ours, size), ref_name: make(fns[ref_name], ref, ref_size)}
        for mi, mode in enumerate(modes):
            first = {}
            for name, steps in impls.items():  # warm-up; the first call of a compiled function compiles it
                first[name] = run_once(steps[mi], device)
                for _ in range(a.warmup - 1):
                    steps[mi]()
            times = {n: [] for n in impls}
            for _ in range(a.rounds):  # interleaved rounds
                for name, steps in impls.items():
                    times[name].append(run_once(steps[mi], device))
            row = dict(mode=mode, compiled=compiled)
            for name, steps in impls.items():
                img_s = a.batch / statistics.median(times[name])
                row[name] = dict(img_s=img_s, peak_mib=peak_memory(steps[mi], device) / 2**20,
                                 mfu=flops[name] * (3 if mode == "fwd+bwd" else 1) * img_s / (peak * 1e12),
                                 first_call_s=first[name])
            row["ratio"] = row["pe_dense"]["img_s"] / row[ref_name]["img_s"]
            rows.append(row)

    gb = ours.global_blocks if a.window_size else "all"
    setting = f"window {a.window_size}, global blocks {gb}" if a.window_size else "global attention"
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    prec = "pure bf16" if a.pure_bf16 else ("bf16 autocast" if a.bf16 else "fp32")
    print(f"{a.model}, batch {a.batch}, {dev}, {prec}, sdpa {a.sdpa}, torch {torch.__version__}")
    print(f"  pe_dense: patch {ours.patch_size} at {size}x{size} ({setting}); {ref_name}: patch "
          f"{ref_flops_model.patch_size} at {ref_size}x{ref_size} (global attention)")
    print(f"  forward GFLOP per image: pe_dense {flops['pe_dense'] / 1e9:.1f}, {ref_name} {flops[ref_name] / 1e9:.1f} "
          f"({FLOP_FORMULA})")
    print(f"  MFU peak: {peak:.4g} TFLOP/s ({'given' if a.peak_tflops else 'measured'}; {peak_what} ran at "
          f"{peak_measured:.4g} TFLOP/s here)")
    head = (f"  {'mode':<18} {'pe_dense img/s':>14} {ref_name + ' img/s':>{len(ref_name) + 6}} {'ratio':>6} "
            f"{'MFU':>6} {ref_name + ' MFU':>{len(ref_name) + 4}} {'pe_dense MiB':>12} "
            f"{ref_name + ' MiB':>{len(ref_name) + 4}}")
    print(head)
    for r in rows:
        o, f = r["pe_dense"], r[ref_name]
        label = f"{r['mode']}{' compiled' if r['compiled'] else ''}"
        print(f"  {label:<18} {o['img_s']:>14.3f} {f['img_s']:>{len(ref_name) + 6}.3f} {r['ratio']:>5.2f}x "
              f"{o['mfu']:>6.1%} {f['mfu']:>{len(ref_name) + 4}.1%} {o['peak_mib']:>12.0f} "
              f"{f['peak_mib']:>{len(ref_name) + 4}.0f}")
        if r["compiled"]:
            print(f"  {'':<18} first call (compiles, after a warm-up compile): pe_dense {o['first_call_s']:.1f} s, "
                  f"{ref_name} {f['first_call_s']:.1f} s")
    if len(variants) == 2:  # compiled pe_dense against the eager reference, per mode
        for mode in modes:
            e, c = (next(r for r in rows if r["mode"] == mode and r["compiled"] == v) for v in (False, True))
            speedup = c["pe_dense"]["img_s"] / e[ref_name]["img_s"]
            print(f"  {mode}: compiled pe_dense / eager {ref_name} = {speedup:.2f}x")
    result = dict(args=vars(a), device=dev, precision=prec, torch=torch.__version__, setting=setting,
                  reference=ref_name, flops=flops, flop_formula=FLOP_FORMULA, peak_tflops=peak,
                  peak_tflops_measured=peak_measured, peak_measured_on=peak_what, rows=rows)
    if a.json:
        write_json(a.json, result)
    return result


if __name__ == "__main__":
    main()
