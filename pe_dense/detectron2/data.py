"""Dataset registration for Detectron2: COCO-format files checked before training, and the embedded default."""
from __future__ import annotations

import json
import os
from typing import Optional

from detectron2.data import DatasetCatalog
from detectron2.data.datasets import register_coco_instances

from ..data.generated import data_root
from ..data.shapes_coco import make_shapes_coco
from ..errors import PEDenseError
from ..io import listed

SHAPES = "pe_shapes"


def _lvis_file_name(image_root: str, img: dict) -> str:
    """Detectron2's LVIS loader: the COCO split folder and file name from ``coco_url``."""
    split_folder, file_name = img["coco_url"].split("/")[-2:]
    return os.path.join(image_root + split_folder, file_name)


def check_coco(json_file: str, image_root: str, kind: str = "coco"):
    """Checks a COCO (or LVIS v1, ``kind="lvis"``) instances file before any training: the entries exist, every image
    it names is on disk, every annotation's category and image are defined, and every polygon is usable (an even
    number of at least 6 coordinates: pycocotools' evaluation fails on less, after all the training). Raises
    ``FileNotFoundError`` / ``ValueError`` naming the file, the offending ids and the fix."""
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"COCO annotation file not found: {json_file}")
    try:
        with open(json_file) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise PEDenseError(f"{json_file} is not valid JSON ({e})") from None
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise PEDenseError(f"{json_file} is not a COCO instances file: no '{key}' entry")
    if kind == "lvis":
        paths = [(im.get("id"), _lvis_file_name(image_root, im) if "coco_url" in im else None)
                 for im in data["images"]]
        nourl = [i for i, p in paths if p is None]
        if nourl:
            raise PEDenseError(f"{json_file}: LVIS images need 'coco_url' (Detectron2 finds the file from it); "
                               f"image id(s) without it: {listed(nourl)}")
        missing = [p for _, p in paths if not os.path.isfile(p)]
    else:
        missing = [im["file_name"] for im in data["images"]
                   if not os.path.isfile(os.path.join(image_root, im["file_name"]))]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} image(s) named in {json_file} are missing under {image_root}: {listed(missing)}")
    cat_ids = {c["id"] for c in data["categories"]}
    img_ids = {im["id"] for im in data["images"]}
    bad_cat, bad_img, bad_poly = {}, [], []
    for a in data["annotations"]:
        if a.get("category_id") not in cat_ids:
            bad_cat.setdefault(a.get("category_id"), []).append(a.get("id"))
        if a.get("image_id") not in img_ids:
            bad_img.append(a.get("id"))
        seg = a.get("segmentation")
        if isinstance(seg, list) and (not seg or any(
                not isinstance(p, list) or len(p) < 6 or len(p) % 2 for p in seg)):
            bad_poly.append(a.get("id"))
    if bad_cat:
        raise PEDenseError(f"{json_file}: annotations use category id(s) that 'categories' does not define: "
                           + "; ".join(f"{c} ({len(ids)} annotation(s), e.g. id {ids[0]})" for c, ids in
                                     list(bad_cat.items())[:5])
                         + f". Defined ids: {listed(sorted(cat_ids), 10)}. Add the categories or fix the ids.")
    if bad_img:
        raise PEDenseError(f"{json_file}: {len(bad_img)} annotation(s) name an image id that 'images' does not "
                           f"define (annotation ids {listed(bad_img)})")
    if bad_poly:
        raise PEDenseError(f"{json_file}: {len(bad_poly)} annotation(s) with an empty or degenerate polygon (each "
                           f"polygon needs an even number of at least 6 coordinates, i.e. 3 points): annotation ids "
                           f"{listed(bad_poly)}. Remove those annotations or their bad polygons (or give RLE masks).")


def check_registered(names) -> list:
    """``check_coco`` for registered datasets (``MetadataCatalog`` entries with a ``json_file``, as Detectron2's
    builtin COCO / LVIS and ``register_coco_instances`` create); returns the names checked."""
    from detectron2.data import MetadataCatalog

    checked = []
    for name in [names] if isinstance(names, str) else list(names):
        meta = MetadataCatalog.get(name)
        json_file = meta.get("json_file", None)
        if json_file is None:
            continue
        kind = "lvis" if meta.get("evaluator_type", "") == "lvis" or name.startswith("lvis") else "coco"
        check_coco(json_file, meta.get("image_root", ""), kind)
        checked.append(name)
    return checked


def register_coco_checked(name: str, json_file: str, image_root: str):
    check_coco(json_file, image_root)
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        from detectron2.data import MetadataCatalog

        MetadataCatalog.remove(name)
    register_coco_instances(name, {}, json_file, image_root)


def register_shapes_coco(root: Optional[str] = None) -> dict:
    """Generates (once) and registers ``pe_shapes_train`` / ``pe_shapes_val``; returns {name: (json, images)}."""
    root = root or data_root("shapes_coco")
    files = make_shapes_coco(root)
    out = {}
    for split, (js, imgs) in files.items():
        name = f"{SHAPES}_{split}"
        register_coco_checked(name, js, imgs)
        out[name] = (js, imgs)
    return out
