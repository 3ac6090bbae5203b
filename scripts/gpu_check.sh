#!/usr/bin/env bash
# The GPU half of the mixed-precision / compile issue as one prepared run (about 8 minutes on an H100/H200).
# Each measurement compares against a reference measured in the same process (timm's same PE model with the same
# weights, or the same tower with global attention), and is written to $OUT (default out/) as soon as it is done,
# so a run cut short still returns what it finished. The steps, most wanted first (STEPS="1 2 3 4 5" by default):
#   1  PE-Spatial-L at 1022x1022, batch 8, bf16 autocast, eager: pe_dense vs timm, forward and forward+backward
#   2  the ViTDet setting: PE-Spatial-L, patch 16 at 1024, windows of 16, global blocks 5,11,17,23, bf16 autocast,
#      every attention under the flash kernel alone (--sdpa flash: PyTorch raises if one cannot use it), forward,
#      vs the same tower with global attention
#   3  the released PE-Spatial-G Mask R-CNN recipe (activation checkpointing), one Detectron2 training step at 1024,
#      batch 1, fp16 AMP as AMPTrainer: time and peak memory (weights, gradients, AdamW state and activations)
#   4  CUDA parity: PE-Spatial-B taps under bf16 autocast and torch.compile(fullgraph=True) vs fp32 eager
#   5  PE-Spatial-L at 1022, batch 8, pure bf16, eager and torch.compile: pe_dense vs timm (the longest: compiles)
# Then scripts/gpu_report.py prints the issue's goals against what was measured (and $OUT/report.md).
# $OUT gets 7 files (the device tool brings back 8 at most): run.log (everything printed), report.md and one JSON
# per step.
#
# What the device machine lacks travels in .gpu/ (ignored by git; name it in the device tool's carry): run
# `bash scripts/gpu_bundle.sh` on a machine with PyPI first. It holds wheels (timm, Detectron2's pure-Python needs)
# and Detectron2's source; Detectron2 is used from its source without building its C++ ops (Mask R-CNN runs on
# torchvision's ROIAlign and NMS).
# GPU_CHECK_SMOKE=1 runs the same steps at toy sizes on CPU (tests/test_gpu_check.py), so that a device run does not
# fail on a typo.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out}; mkdir -p "$OUT"
STEPS=${STEPS:-1 2 3 4 5}
export PYTHONUNBUFFERED=1
have_stack() {  # timm with the PE models and Detectron2's pure-Python needs already importable
  python3 -c "import fvcore, iopath, yacs, termcolor, omegaconf, pycocotools, timm
from timm.models import is_model; assert is_model('vit_pe_spatial_large_patch14_448')" 2>/dev/null
}
if [ -d .gpu ]; then
  if ls .gpu/*.whl >/dev/null 2>&1 && ! have_stack; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/pe_dense_site \
      .gpu/*.whl || exit 1
    export PYTHONPATH=/tmp/pe_dense_site${PYTHONPATH:+:$PYTHONPATH}
  fi
  if [ -f .gpu/detectron2.tar.gz ] && ! python3 -c "import detectron2" 2>/dev/null; then
    mkdir -p /tmp/pe_dense_d2 && tar xzf .gpu/detectron2.tar.gz -C /tmp/pe_dense_d2 --strip-components=1
    ln -sfn /tmp/pe_dense_d2/configs /tmp/pe_dense_d2/detectron2/model_zoo/configs  # as its setup.py links them
    export PYTHONPATH=/tmp/pe_dense_d2:$PYTHONPATH
  fi
fi
if [ -n "${GPU_CHECK_SMOKE:-}" ]; then  # toy sizes on CPU: same commands, same code paths (no flash kernel on CPU)
  L=PE-Spatial-T16-512; B=PE-Spatial-T16-512; S1022=64; S1024=64; BATCH=1; WIN=2; GB=2,5,8,11; SDPA=auto
  ROUNDS="--rounds 1 --warmup 1"; DEV=cpu; G_CFG=configs/detectron2/shapes/mask_rcnn_pe_spatial_t_shapes.py; GS=128
  PSIZE=64
else
  L=PE-Spatial-L14-448; B=PE-Spatial-B16-512; S1022=1022; S1024=1024; BATCH=8; WIN=16; GB=5,11,17,23; SDPA=flash
  ROUNDS="--rounds 10 --warmup 3"; DEV=cuda; G_CFG=configs/detectron2/COCO/mask_rcnn_pe_spatial_g_36ep.py; GS=1024
  PSIZE=512
fi
BENCH="python3 tools/benchmark.py --device $DEV --model $L --batch $BATCH $ROUNDS"

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import torch, timm; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'timm', timm.__version__)"
} 2>&1 | tee -a "$OUT/run.log"

failed=""
for step in $STEPS; do
  echo "=== step $step ($(date +%T))" | tee -a "$OUT/run.log"
  ok=1
  case $step in
    1) $BENCH --size $S1022 --bf16 --json "$OUT/l1022_bf16_eager.json" 2>&1 | tee -a "$OUT/run.log" || ok=0 ;;
    2) $BENCH --patch-size 16 --size $S1024 --bf16 --window-size $WIN --global-blocks $GB --reference global \
         --sdpa $SDPA --no-backward --json "$OUT/l1024_vitdet.json" 2>&1 | tee -a "$OUT/run.log" || ok=0 ;;
    3) python3 tools/benchmark_detectron2.py --device $DEV --only $G_CFG --size $GS --batch 1 --rounds 3 --amp \
         --json "$OUT/g_detectron2_step.json" 2>&1 | tee -a "$OUT/run.log" | tail -5 || ok=0 ;;
    4) python3 - "$B" "$PSIZE" "$DEV" "$OUT/cuda_parity.json" <<'PY' 2>&1 | tee -a "$OUT/run.log" || ok=0
import json, os, sys
import torch
import torch.nn.functional as F
import pe_dense

name, size, dev, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
torch.manual_seed(0)
m = pe_dense.create_model(name, out_indices=[2, 5, 8, 11]).to(dev).eval()
x = torch.randn(2, 3, size, size, device=dev)
with torch.no_grad():
    ref = m(x)
    with torch.autocast(dev, dtype=torch.bfloat16):
        amp = m(x)
    comp = torch.compile(m, fullgraph=True)(x)
rows = []
for i, (a, c, r) in enumerate(zip(amp, comp, ref)):
    a, r = a.float().flatten(), r.flatten()
    rows.append(dict(tap=[2, 5, 8, 11][i], bf16_cosine=F.cosine_similarity(a, r, 0).item(),
                     bf16_rel=((a - r).norm() / r.norm()).item(), compiled_max_abs=(c - ref[i]).abs().max().item()))
    print(rows[-1])
json.dump(dict(model=name, size=size, device=dev, rows=rows), open(out, "w"), indent=1)
PY
       ;;
    5) $BENCH --size $S1022 --pure-bf16 --compile both --json "$OUT/l1022_pure_bf16_compiled.json" 2>&1 \
         | tee -a "$OUT/run.log" || ok=0 ;;
    *) echo "unknown step $step (steps are 1 to 5)"; exit 2 ;;
  esac
  [ $ok = 1 ] || failed="$failed $step"
done
python3 scripts/gpu_report.py "$OUT" | tee "$OUT/report.md"
if [ -n "$failed" ]; then echo "steps that failed:$failed" | tee -a "$OUT/run.log"; exit 1; fi
