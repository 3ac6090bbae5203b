#!/usr/bin/env python
"""MMSegmentation training / evaluation with PE backbones (mmengine Runner: logs, checkpoints, resume, evaluation,
pictures of predictions under WORK_DIR/TIMESTAMP/vis_data).

  python tools/train_mmseg.py configs/mmseg/embedded/upernet_pe-spatial-t_shapes-128x128.py
  python tools/train_mmseg.py configs/mmseg/ade20k/upernet_pe-spatial-b_8xb2-160k_ade20k-512x512.py \
      --cfg-options model.backbone.pretrained=/weights/PE-Spatial-B16-512.pt
  python tools/train_mmseg.py CONFIG --resume          # continue from the work dir's last checkpoint
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pe_dense.mmseg.train import main  # noqa: E402

if __name__ == "__main__":
    main()
