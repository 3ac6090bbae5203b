#!/usr/bin/env bash
# Packs into .gpu/ what scripts/gpu_check.sh needs on a GPU machine that reaches no package index (Python 3.12,
# x86-64, PyTorch and its usual companions already there): wheels of timm and of Detectron2's pure-Python needs, and
# Detectron2's source (used from source there, without its C++ ops). Run it on a machine with PyPI, from anywhere;
# .gpu/ is ignored by git (about 5 MB): carry it to the GPU machine with the checkout.
#   PY_VERSION=3.12 bash scripts/gpu_bundle.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
PYV=${PY_VERSION:-3.12}
D2_COMMIT=02b5c4e
rm -rf .gpu.tmp && mkdir -p .gpu.tmp
# pure-Python wheels (two of them are sdists on PyPI: pip builds the wheel here)
"$PY" -m pip wheel -q --no-deps -w .gpu.tmp "timm==1.0.31" "fvcore==0.1.5.post20221221" "iopath==0.1.9" "yacs==0.1.8" \
  "termcolor==2.5.0" "omegaconf==2.3.0" "antlr4-python3-runtime==4.9.3"
# compiled: pycocotools for the device's Python
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .gpu.tmp "pycocotools==2.0.10"
# the wheel set installs for that Python (as gpu_check.sh installs it)
"$PY" -m pip install -q --no-index --no-deps --dry-run --only-binary=:all: --python-version "$PYV" \
  --implementation cp --platform manylinux_2_17_x86_64 --target "$(mktemp -d)" .gpu.tmp/*.whl
D2_TARBALL="$(cd .. && pwd)/shared/vendor/detectron2-$D2_COMMIT.tar.gz"
D2_SRC="${PE_DENSE_HOME:-$HOME/.cache/pe_dense}/src/detectron2-$D2_COMMIT"
if [ -f "$D2_TARBALL" ]; then
  cp "$D2_TARBALL" .gpu.tmp/detectron2.tar.gz
elif [ -f "$D2_SRC/setup.py" ]; then  # the source scripts/setup.sh keeps
  tar czf .gpu.tmp/detectron2.tar.gz -C "$(dirname "$D2_SRC")" --exclude=build --exclude='*.so' "$(basename "$D2_SRC")"
else
  echo "no Detectron2 source: run scripts/setup.sh first (it fetches Detectron2 $D2_COMMIT)" >&2
  exit 1
fi
rm -rf .gpu && mv .gpu.tmp .gpu
echo "[gpu_bundle] .gpu/ ready ($(du -sh .gpu | cut -f1)): $(ls .gpu | tr '\n' ' ')"
