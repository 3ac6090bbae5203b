"""Objects365 (v2, Shao et al. 2019) as Detectron2 datasets, in its released COCO-style layout:

  $DETECTRON2_DATASETS/objects365/
    annotations/zhiyuan_objv2_train.json   annotations/zhiyuan_objv2_val.json
    train/   val/                          (the images, under the folders the json's file_name names)

``register_objects365()`` registers ``objects365_v2_train`` / ``objects365_v2_val`` lazily (nothing is read until a
loader asks; configs build without the data), as Detectron2 registers COCO; ``tools/train_net.py --check-data``
checks the files (fields, images on disk, categories) as for every COCO-format set. 365 categories (ids 1..365).
"""
from __future__ import annotations

import os
from typing import Dict, Optional, Tuple

OBJECTS365_TRAIN_IMAGES = 1742289  # images in zhiyuan_objv2_train.json (about 1.74 M; the schedule's epoch length)
SPLITS = {
    "objects365_v2_train": ("train", "annotations/zhiyuan_objv2_train.json"),
    "objects365_v2_val": ("val", "annotations/zhiyuan_objv2_val.json"),
}


def register_objects365(root: Optional[str] = None) -> Dict[str, Tuple[str, str]]:
    """Registers the two splits under ``root`` (default ``$DETECTRON2_DATASETS/objects365``, Detectron2's own
    datasets root, ``./datasets`` by default). Returns {name: (json, image root)}; already registered names are kept."""
    from detectron2.data import DatasetCatalog
    from detectron2.data.datasets import register_coco_instances

    root = root or os.path.join(os.path.expanduser(os.environ.get("DETECTRON2_DATASETS", "datasets")), "objects365")
    out = {}
    for name, (images, js) in SPLITS.items():
        out[name] = (os.path.join(root, js), os.path.join(root, images))
        if name not in DatasetCatalog.list():
            # ids 1..365 in both splits: known before the json is read (released heads map through it)
            register_coco_instances(name, {"thing_dataset_id_to_contiguous_id": {i: i - 1 for i in range(1, 366)}},
                                    *out[name])
    return out
