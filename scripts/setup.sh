#!/usr/bin/env bash
# One-step install of pe_dense and everything its tests and demos need, into the current Python.
# Idempotent: what is already installed at the pinned version is not installed again.
#   bash scripts/setup.sh            # torch + pe_dense[dev] + the MMSeg stack (mmcv built from source once)
#   PE_DENSE_NO_MMSEG=1 bash scripts/setup.sh   # skip the MMSeg stack
#   PE_DENSE_NO_DETECTRON2=1 bash scripts/setup.sh   # skip Detectron2
# Detectron2 (commit 02b5c4e, built with its C++ ops) comes from ../shared/vendor/detectron2-02b5c4e.tar.gz when that
# snapshot is there, otherwise from the official repository at the same commit. Its source (with its own tools/,
# e.g. tools/lazyconfig_train_net.py) is kept in $PE_DENSE_HOME/src/detectron2-02b5c4e (default ~/.cache/pe_dense).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
TORCH=2.9.1
TORCHVISION=0.24.1

have() { "$PY" - "$@" <<'PYEOF' 2>/dev/null
import importlib.metadata as md, sys
for spec in sys.argv[1:]:
    name, _, ver = spec.partition("==")
    got = md.version(name)
    if ver and got.split("+")[0] != ver:
        sys.exit(1)
PYEOF
}

if ! have "torch==$TORCH" "torchvision==$TORCHVISION"; then
  echo "[setup] installing torch==$TORCH torchvision==$TORCHVISION"
  "$PY" -m pip install "torch==$TORCH" "torchvision==$TORCHVISION"
fi

# pe_dense itself, editable, from this checkout (reinstalled when another checkout was installed before)
here_ok() { local d="$PWD"; (cd /tmp && "$PY" -c "import os, sys, pe_dense; sys.exit(not os.path.realpath(pe_dense.__file__).startswith(os.path.realpath(sys.argv[1])))" "$d") 2>/dev/null; }
if ! have pe-dense timm fvcore pycocotools safetensors opencv-python-headless onnx onnxscript onnxruntime pytest-xdist \
    ruff open-clip-torch || ! here_ok; then
  echo "[setup] installing pe_dense (editable, from $PWD) with its dev extra"
  "$PY" -m pip install -e ".[dev]" "torch==$TORCH" "torchvision==$TORCHVISION"
fi

if [ -z "${PE_DENSE_NO_DETECTRON2:-}" ]; then
  D2_COMMIT=02b5c4e
  D2_SRC="${PE_DENSE_HOME:-$HOME/.cache/pe_dense}/src/detectron2-$D2_COMMIT"
  D2_TARBALL="$(cd .. && pwd)/shared/vendor/detectron2-$D2_COMMIT.tar.gz"
  if [ ! -f "$D2_SRC/tools/lazyconfig_train_net.py" ]; then
    rm -rf "$D2_SRC.tmp" && mkdir -p "$D2_SRC.tmp"
    if [ -f "$D2_TARBALL" ]; then
      echo "[setup] Detectron2 $D2_COMMIT source from $D2_TARBALL"
      tar xzf "$D2_TARBALL" -C "$D2_SRC.tmp" --strip-components=1
    else
      echo "[setup] Detectron2 $D2_COMMIT source from the official repository"
      git clone -q https://github.com/facebookresearch/detectron2.git "$D2_SRC.tmp"
      git -C "$D2_SRC.tmp" checkout -q "$D2_COMMIT"
    fi
    rm -rf "$D2_SRC" && mv "$D2_SRC.tmp" "$D2_SRC"
  fi
  if ! "$PY" -c "import detectron2._C, shapely, lvis" 2>/dev/null; then
    echo "[setup] building Detectron2 $D2_COMMIT with its ops (about a minute) and the detection extra's parts"
    "$PY" -m pip install "setuptools<70" wheel
    "$PY" -m pip install --no-build-isolation "$D2_SRC"
    "$PY" -m pip install -e ".[detectron2]" "torch==$TORCH"  # the extra's parts (setup.py lists them, once)
  fi
fi

if [ -z "${PE_DENSE_NO_MMSEG:-}" ]; then
  if ! "$PY" -c "import mmcv.ops" 2>/dev/null; then
    echo "[setup] building mmcv==2.1.0 with its ops from source (about 8 min on 2 cores, once; pip caches the wheel)"
    "$PY" -m pip install "setuptools<70" wheel "mmengine==0.10.7"
    MMCV_WITH_OPS=1 "$PY" -m pip install --no-build-isolation "mmcv==2.1.0"
  fi
  if ! have "mmsegmentation==1.2.2" "mmengine==0.10.7" ftfy regex albumentations; then
    echo "[setup] installing mmsegmentation==1.2.2"
    "$PY" -m pip install -e ".[mmseg]" "torch==$TORCH"  # the extra's parts (setup.py lists them, once)
  fi
fi
echo "[setup] ready: $("$PY" -c 'import torch, pe_dense; print("torch", torch.__version__, "pe_dense", pe_dense.__version__)')"
