#!/usr/bin/env python
"""DAVIS-2017 semi-supervised label propagation with PE features; same as ``pe-dense track``.

  python tools/eval_tracking.py --davis /data/DAVIS --model PE-Spatial-B16-512 --checkpoint PE-Spatial-B16-512.pt
  python tools/eval_tracking.py            # the built-in synthetic set
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pe_dense.tracking.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
