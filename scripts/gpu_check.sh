#!/usr/bin/env bash
# The GPU part of issue 10, as one prepared run (a few minutes on an H100/H200). Writes JSON and logs to ${OUT:-out}.
# Each benchmark compares against timm's same PE model with the same weights in the same process.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
B="python tools/benchmark.py --model PE-Spatial-L14-448 --batch 8 --rounds 10 --warmup 3"
# 1. PE-Spatial-L at 1022 (73x73 patches): bf16 autocast eager, then pure bf16 compiled (both models compiled)
$B --size 1022 --bf16 --json "$OUT/l1022_eager.json" 2>&1 | tee "$OUT/l1022_eager.log"
$B --size 1022 --pure-bf16 --compile --json "$OUT/l1022_compiled.json" 2>&1 | tee "$OUT/l1022_compiled.log"
# 2. ViTDet setting at 1024: windows of 16 tokens, 4 global blocks, against the same tower with global attention
$B --size 1024 --bf16 --no-backward --window-size 16 --global-blocks 5,11,17,23 --json "$OUT/l1024_vitdet.json" \
    2>&1 | tee "$OUT/l1024_vitdet.log"
$B --size 1024 --bf16 --no-backward --json "$OUT/l1024_global.json" 2>&1 | tee "$OUT/l1024_global.log"
# 3. the released PE-Spatial-G Mask R-CNN recipe, one training step at 1024, batch 1, fp16 AMP: time and peak memory
python tools/benchmark_detectron2.py --only configs/detectron2/COCO/mask_rcnn_pe_spatial_g_36ep.py --size 1024 \
    --batch 1 --rounds 3 --amp 2>&1 | tail -3 | tee "$OUT/g_step.log"
# 4. the precision tests on the GPU machine's CPU side are the CI's; here: bf16/compile parity on CUDA, quickly
python - <<'PY' 2>&1 | tee "$OUT/cuda_parity.log"
import torch, pe_dense
m = pe_dense.create_model("PE-Spatial-L14-448", out_indices=[5, 11, 17, 23]).cuda().eval()
x = torch.randn(2, 3, 448, 448, device="cuda")
with torch.no_grad():
    ref = m(x)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        amp = m(x)
    comp = torch.compile(m, fullgraph=True)(x)
for i, (a, c, r) in enumerate(zip(amp, comp, ref)):
    cos = torch.nn.functional.cosine_similarity(a.float().flatten(), r.flatten(), 0).item()
    print(f"tap {i}: bf16 autocast cosine {cos:.6f}; compiled fp32 max abs diff {(c - r).abs().max().item():.2e}")
PY
