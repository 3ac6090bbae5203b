"""Dataset registration for Detectron2: COCO-format files checked before training, and the embedded default."""
from __future__ import annotations

import json
import os
from typing import Optional

from detectron2.data import DatasetCatalog
from detectron2.data.datasets import register_coco_instances

from ..data.shapes_coco import make_shapes_coco

SHAPES = "pe_shapes"


def check_coco(json_file: str, image_root: str):
    """Every image the JSON names must exist; a clear error names the missing ones."""
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"COCO annotation file not found: {json_file}")
    with open(json_file) as f:
        data = json.load(f)
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise ValueError(f"{json_file} is not a COCO instances file: no '{key}' entry")
    missing = [im["file_name"] for im in data["images"]
               if not os.path.isfile(os.path.join(image_root, im["file_name"]))]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} image(s) named in {json_file} are missing under {image_root}: "
            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")


def register_coco_checked(name: str, json_file: str, image_root: str):
    check_coco(json_file, image_root)
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        from detectron2.data import MetadataCatalog

        MetadataCatalog.remove(name)
    register_coco_instances(name, {}, json_file, image_root)


def register_shapes_coco(root: Optional[str] = None) -> dict:
    """Generates (once) and registers ``pe_shapes_train`` / ``pe_shapes_val``; returns {name: (json, images)}."""
    root = root or os.environ.get("PE_DENSE_DATA", os.path.join(os.path.expanduser("~"), ".cache", "pe_dense",
                                                                  "shapes_coco"))
    files = make_shapes_coco(root)
    out = {}
    for split, (js, imgs) in files.items():
        name = f"{SHAPES}_{split}"
        register_coco_checked(name, js, imgs)
        out[name] = (js, imgs)
    return out
