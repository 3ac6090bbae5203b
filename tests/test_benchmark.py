"""The FLOP count behind MFU, and tools/benchmark.py on CPU (its figures are measured, never asserted here: speed
lives in the benchmark, not in tests)."""
import json
import os
import subprocess
import sys

import pytest
import torch

import pe_dense
from pe_dense.analysis import count_flops, model_flops

ROOT = os.path.join(os.path.dirname(__file__), "..")
BENCH = os.path.join(ROOT, "tools", "benchmark.py")


@pytest.mark.parametrize("name,kw,size", [
    ("PE-Spatial-T16-512", {}, (512, 512)),                                           # native, class token
    ("PE-Spatial-T16-512", {}, (200, 136)),                                           # padded to the patch
    ("PE-Spatial-S16-512", dict(out_indices=[3, 7]), (160, 224)),                     # blocks past the tap not run
    ("PE-Spatial-B16-512", dict(window_size=7, global_blocks=[2, 5, 8, 11]), (320, 448)),  # windows pad 20x28
    ("PE-Spatial-T16-512", dict(window_size=4, global_blocks=[0], use_cls_token=False), (128, 96)),
])
def test_model_flops_equal_twice_fvcores_multiply_adds(name, kw, size):
    """The written-out formula counts what the model executes: 2 x fvcore's multiply-adds of the traced forward,
    less what fvcore counts and the formula leaves out: LayerNorm (5 per element: 0.24% of T's total, 0.06% of L's)
    and the bilinear resize of the position table (4 per output element)."""
    model = pe_dense.create_model(name, **kw)
    fvcore = 2e9 * count_flops(model, size)["gflops"]
    p = model.patch_size
    h, w = -(-size[0] // p), -(-size[1] // p)
    tokens = h * w + int(model.use_cls_token)
    layer_norm = 5 * tokens * model.width * (1 + 2 * (max(model.out_indices) + 1))  # ln_pre, ln_1 and ln_2
    table = 4 * h * w * model.width if (h, w) != (model.pos_grid,) * 2 else 0
    assert model_flops(model, size) == pytest.approx(fvcore - 2 * (layer_norm + table), rel=1e-9)


def test_model_flops_of_the_issues_reference():
    """PE-Spatial-L at 1022: the issue's formula per block, 2 (4ND^2 + 2NDM) + 4N^2D with N = 73^2 + 1 tokens,
    24 blocks; its reference (timm eager, 47.1 img/s on an H200, 790 TFLOP/s peak) is then 36% MFU."""
    model = pe_dense.create_model("PE-Spatial-L14-448")
    n, d, m = 73 * 73 + 1, 1024, 4096
    per_block = 2 * (4 * n * d * d + 2 * n * d * m) + 4 * n * n * d
    patch = 2 * 73 * 73 * d * 3 * 14 * 14
    assert model_flops(model, (1022, 1022)) == 24 * per_block + patch
    assert round(model_flops(model, (1022, 1022)) * 47.1 / 790e12, 2) == 0.36


def _closed_form(d, m, depth, patch, grid, cls, windows=None, global_blocks=()):
    """FLOPs of a ViT forward written out by hand (independent of ``model_flops``): per block 2 (4ND^2 + 2NDM) for the
    projections and the MLP, 4 D sum(t^2) for attention over groups of t tokens (the whole image, or its windows in
    the windowed blocks), plus the patch embedding 2 P D 3 p^2 over the P patches."""
    n = grid * grid + cls
    total = 2 * grid * grid * d * 3 * patch * patch
    for i in range(depth):
        groups = [n] if windows is None or i in global_blocks else windows
        total += 2 * (4 * n * d * d + 2 * n * d * m) + 4 * d * sum(t * t for t in groups)
    return total


def _bench(*args, tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, BENCH, *args, "--json", str(out)], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


@pytest.mark.parametrize("compile_", ["off", "both"])
@pytest.mark.slow
def test_benchmark_against_timm_on_cpu(tmp_path, compile_):
    """Eager rows for forward and fwd+bwd, and (``--compile both``) inductor-compiled forward rows beside the eager
    ones, for pe_dense and timm, with MFU against a matrix product measured in the same run; pe_dense is compiled
    with fullgraph=True, so a graph break fails. (Compiling both models' training steps too takes over 10 minutes on
    this 2-core CPU; the compiled training path of the blocks is tested in test_precision.py.)"""
    args = ["--model", "PE-Spatial-T16-512", "--size", "64", "--rounds", "1", "--warmup", "1", "--compile", compile_]
    stdout, res = _bench(*args, *(["--no-backward"] if compile_ == "both" else []), tmp_path=tmp_path)
    rows = res["rows"]
    want = [("forward", False), ("fwd+bwd", False)] if compile_ == "off" else [("forward", False), ("forward", True)]
    assert [(r["mode"], r["compiled"]) for r in rows] == want
    flops = _closed_form(192, 768, 12, 16, 4, 1)  # T at 64 x 64: 4 x 4 patches and the class token
    assert res["flops"] == {"pe_dense": flops, "timm": flops}
    assert res["peak_tflops"] == res["peak_tflops_measured"] > 0
    for r in rows:
        for impl in ("pe_dense", "timm"):
            got = r[impl]
            k = 3 if r["mode"] == "fwd+bwd" else 1  # the backward pass counted as twice the forward
            assert got["img_s"] > 0
            assert got["mfu"] == pytest.approx(k * flops * got["img_s"] / (res["peak_tflops"] * 1e12))
        assert r["ratio"] == pytest.approx(r["pe_dense"]["img_s"] / r["timm"]["img_s"])
    assert "MFU peak" in stdout and ("compiled pe_dense / eager timm" in stdout) == (compile_ == "both")


def test_benchmark_windows_against_global_attention(tmp_path):
    """--reference global: the same tower (patch 16 from a patch-14 one) with global attention in every block."""
    stdout, res = _bench("--model", "PE-Core-T16-384", "--size", "96", "--window-size", "3", "--global-blocks",
                         "5,11", "--reference", "global", "--rounds", "1", "--warmup", "1", "--no-backward",
                         tmp_path=tmp_path)
    # 96 px: a 6 x 6 grid, no class token; windows of 3: four windows of 9 tokens, except in blocks 5 and 11
    assert res["reference"] == "pe_dense global"
    assert res["flops"] == {"pe_dense": _closed_form(192, 768, 12, 16, 6, 0, windows=[9] * 4, global_blocks=(5, 11)),
                            "pe_dense global": _closed_form(192, 768, 12, 16, 6, 0)}
    assert res["flops"]["pe_dense"] < res["flops"]["pe_dense global"]
    assert [r["mode"] for r in res["rows"]] == ["forward"]


@pytest.mark.parametrize("args,msg", [
    (["--reference", "global"], "give --window-size"),
    (["--sdpa", "flash", "--device", "cpu"], "needs a GPU"),
    (["--window-size", "-1"], "--window-size must be >= 0"),
] + ([(["--cuda"], "PyTorch sees no GPU")] if not torch.cuda.is_available() else []))
def test_benchmark_refuses_bad_arguments(args, msg):
    proc = subprocess.run([sys.executable, BENCH, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and msg in proc.stderr, proc.stderr
