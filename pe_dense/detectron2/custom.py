"""A user's own COCO-format dataset in Detectron2, from the command line.

The ``configs/detectron2/custom/`` files point their loaders, evaluator and heads at these functions with the
``dataset.*`` keys as arguments, so ``dataset.train_json=A.json dataset.train_images=DIR ...`` given to
``tools/train_net.py`` (or Detectron2's own ``lazyconfig_train_net.py``) is all a user sets: the datasets are
checked and registered when the config is instantiated, the number of classes and their names come from the
train file, and the mask format (polygons, RLE, or boxes only) from its annotations.
"""
from __future__ import annotations

import functools
import json
import os
from typing import List, Optional

from ..errors import PEDenseError
from ..io import listed
from .data import check_coco

TRAIN, VAL = "pe_custom_train", "pe_custom_val"


def _need(value, key: str) -> str:
    if not value or str(value) == "???":
        raise PEDenseError(f"{key} is not set: pass {key}=PATH on the command line (the custom configs take "
                           f"dataset.train_json, dataset.train_images, dataset.val_json, dataset.val_images)")
    return os.path.expanduser(str(value))


@functools.lru_cache(maxsize=16)
def _read(json_file: str, mtime: float) -> dict:
    with open(json_file) as f:
        return json.load(f)


def read_coco(json_file: str) -> dict:
    """The file, parsed once per modification (the config's callables each ask for it)."""
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"COCO annotation file not found: {json_file}")
    try:
        return _read(os.path.abspath(json_file), os.path.getmtime(json_file))
    except json.JSONDecodeError as e:
        raise PEDenseError(f"{json_file} is not valid JSON ({e})") from None


def categories(json_file: str) -> List[dict]:
    """The file's categories sorted by id, checked: integer ids, no id or name twice, at least one."""
    cats = read_coco(json_file).get("categories")
    if not cats:
        raise PEDenseError(f"{json_file}: 'categories' is empty or missing: list the classes as "
                           f"{{\"id\": 1, \"name\": \"...\"}} entries")
    bad = [c for c in cats if not isinstance(c.get("id"), int) or isinstance(c.get("id"), bool) or not c.get("name")]
    if bad:
        raise PEDenseError(f"{json_file}: each category needs an integer 'id' and a 'name'; offending entries: "
                           f"{listed(bad, 3)}")
    for key in ("id", "name"):
        values = [c[key] for c in cats]
        twice = sorted({v for v in values if values.count(v) > 1}, key=str)
        if twice:
            raise PEDenseError(f"{json_file}: category {key}(s) listed twice: {listed(twice)}; each class once")
    return sorted(cats, key=lambda c: c["id"])


def class_names(json_file: str) -> List[str]:
    """Class names in the order of Detectron2's contiguous ids (sorted category ids)."""
    return [c["name"] for c in categories(_need(json_file, "dataset.train_json"))]


def num_classes(json_file: str) -> int:
    """``model.roi_heads.num_classes`` of the custom configs: the number of categories of the train file."""
    return len(class_names(json_file))


def _segmentations(json_file: str):
    return [a.get("segmentation") for a in read_coco(json_file)["annotations"]]


def has_masks(json_file: str) -> bool:
    """True when the annotations carry masks (polygons or RLE), False for boxes only; a mix is refused, since Mask
    R-CNN needs a mask for every instance."""
    segs = _segmentations(_need(json_file, "dataset.train_json"))
    without = [a.get("id") for a, s in zip(read_coco(json_file)["annotations"], segs) if not s]
    if without and len(without) < len(segs):
        raise PEDenseError(f"{json_file}: {len(without)} of {len(segs)} annotations have no 'segmentation' (ids "
                           f"{listed(without)}): give every instance a polygon or RLE mask, or none of them (the "
                           f"config then trains boxes only)")
    return not without


def mask_format(json_file: str) -> str:
    """``"polygon"`` when every mask is a polygon list, ``"bitmask"`` when any is RLE (Detectron2's polygon path
    cannot read RLE; its bitmask path reads both)."""
    return "bitmask" if any(isinstance(s, dict) for s in _segmentations(_need(json_file, "dataset.train_json"))) \
        else "polygon"


def mask_in_features(json_file: str, features=("p2", "p3", "p4", "p5")) -> Optional[list]:
    """The ROI heads' mask features, or None (no mask head) for a boxes-only dataset."""
    return list(features) if has_masks(json_file) else None


def check_custom(json_file: str, image_root: str, split: str, train_json: Optional[str] = None):
    """``check_coco`` plus what a training set needs: annotations at all, well-formed boxes, and for the validation
    file the train file's categories (the heads predict the train file's classes)."""
    key = f"dataset.{split}_json"
    json_file, image_root = _need(json_file, key), _need(image_root, f"dataset.{split}_images")
    if not os.path.isdir(image_root):
        raise FileNotFoundError(f"dataset.{split}_images: image folder not found: {image_root}")
    check_coco(json_file, image_root)
    cats = categories(json_file)
    data = read_coco(json_file)
    if not data["images"]:
        raise PEDenseError(f"{json_file}: 'images' is empty")
    if split == "train" and not data["annotations"]:
        raise PEDenseError(f"{json_file}: no annotations: nothing to train on (each object needs an entry in "
                           f"'annotations' with image_id, category_id, bbox and, for masks, segmentation)")
    bad_box = [a.get("id") for a in data["annotations"] if not (
        isinstance(a.get("bbox"), list) and len(a["bbox"]) == 4 and a["bbox"][2] >= 0 and a["bbox"][3] >= 0)]
    if bad_box:
        raise PEDenseError(f"{json_file}: {len(bad_box)} annotation(s) without a valid 'bbox' [x, y, width, height] "
                           f"(ids {listed(bad_box)})")
    if train_json:
        train = {(c["id"], c["name"]) for c in categories(_need(train_json, "dataset.train_json"))}
        mine = {(c["id"], c["name"]) for c in cats}
        if mine != train:
            raise PEDenseError(f"{json_file}: its categories differ from the train file's {train_json} (only here: "
                               f"{listed(sorted(mine - train))}; only there: {listed(sorted(train - mine))}): "
                               f"evaluation needs the same ids and names")


def register_custom(name: str, json_file: str, image_root: str, split: str = "train",
                    train_json: Optional[str] = None) -> str:
    """Checks and registers the file as a Detectron2 COCO dataset ``name`` (again when its paths changed); returns
    the name (the custom configs pass it to ``COCOEvaluator``)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_coco_instances

    check_custom(json_file, image_root, split, train_json)
    json_file, image_root = os.path.expanduser(json_file), os.path.expanduser(image_root)
    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        if meta.get("json_file", None) == json_file and meta.get("image_root", None) == image_root:
            return name
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_coco_instances(name, {}, json_file, image_root)
    MetadataCatalog.get(name).set(thing_classes=[c["name"] for c in categories(json_file)])
    return name


def custom_dataset(names: str, json_file: str, image_root: str, split: str = "train",
                   train_json: Optional[str] = None, filter_empty: bool = True):
    """The loader's dataset: registers ``names`` from the file, then Detectron2's ``get_detection_dataset_dicts``
    (images without annotations dropped for training, as Detectron2's COCO configs do)."""
    from detectron2.data import get_detection_dataset_dicts

    register_custom(names, json_file, image_root, split, train_json)
    return get_detection_dataset_dicts(names, filter_empty=filter_empty)


def check_dataset(node) -> List[str]:
    """A config's ``dataloader.{train,test}.dataset``: a custom one (it has a ``json_file``) is checked and
    registered; otherwise its registered names are checked (``check_registered``). Returns the names checked."""
    from .data import check_registered

    if "json_file" in node:
        register_custom(node.names, node.json_file, node.image_root, node.get("split", "train"),
                        node.get("train_json", None))
        return [node.names]
    return check_registered(node.names)


def describe(cfg) -> str:
    """One line on a custom config's data and schedule, for the start of a run."""
    node = cfg.dataloader.train.dataset
    data = read_coco(os.path.expanduser(node.json_file))
    names = [c["name"] for c in categories(os.path.expanduser(node.json_file))]
    batch = cfg.dataloader.train.total_batch_size
    if "roi_heads" not in cfg.model:  # DETA: boxes
        masks = "boxes (DETA; masks in the file are not used)"
    else:
        masks = ("no masks: boxes only" if not has_masks(node.json_file)
                 else f"masks as {mask_format(node.json_file)}s")
    return (f"custom data: {len(data['images'])} train images, {len(data['annotations'])} instances, "
            f"{len(names)} classes ({listed(names, 8)}), {masks}; train.max_iter {cfg.train.max_iter} x batch "
            f"{batch} = {cfg.train.max_iter * batch / max(1, len(data['images'])):.1f} epochs")
