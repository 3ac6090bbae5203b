"""Miniature datasets in the real layouts the shipped configs read (a few images each), written by the tests."""
import json
import os

import numpy as np
from PIL import Image, ImageDraw


def _image(rng, h, w):
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def _instances(rng, h, w, cat_ids, n=2):
    anns = []
    for _ in range(n):
        x0, y0 = rng.uniform(0, w * 0.5), rng.uniform(0, h * 0.5)
        bw, bh = rng.uniform(w * 0.2, w * 0.45), rng.uniform(h * 0.2, h * 0.45)
        poly = [x0, y0, x0 + bw, y0, x0 + bw, y0 + bh, x0, y0 + bh]
        anns.append(dict(category_id=int(rng.choice(cat_ids)), bbox=[x0, y0, bw, bh], area=bw * bh, iscrowd=0,
                         segmentation=[[round(v, 2) for v in poly]]))
    return anns


def write_coco(root, splits=(("train2017", 3), ("val2017", 2)), size=(120, 160), seed=0):
    """DETECTRON2_DATASETS layout: coco/{train2017,val2017}/*.jpg, coco/annotations/instances_*.json, with the 80
    COCO categories (ids as released)."""
    from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

    cats = [dict(id=c["id"], name=c["name"], supercategory="x") for c in COCO_CATEGORIES if c["isthing"]]
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "coco", "annotations"), exist_ok=True)
    for split, n in splits:
        os.makedirs(os.path.join(root, "coco", split), exist_ok=True)
        images, anns = [], []
        for i in range(n):
            iid = 1000 * (split == "val2017") + i + 1
            name = f"{iid:012d}.jpg"
            _image(rng, *size).save(os.path.join(root, "coco", split, name))
            images.append(dict(id=iid, file_name=name, height=size[0], width=size[1]))
            for a in _instances(rng, *size, [1, 18, 62]):
                anns.append(dict(a, id=len(anns) + 1 + 10000 * (split == "val2017"), image_id=iid))
        with open(os.path.join(root, "coco", "annotations", f"instances_{split}.json"), "w") as f:
            json.dump(dict(images=images, annotations=anns, categories=cats), f)
    return root


def write_lvis(root, size=(120, 160), seed=1):
    """LVIS v1 layout: lvis/lvis_v1_{train,val}.json over the COCO images (coco/train2017, coco/val2017)."""
    from detectron2.data.datasets.lvis_v1_categories import LVIS_CATEGORIES

    write_coco(root, size=size, seed=seed)
    cats = [dict(c, image_count=1, instance_count=1) for c in LVIS_CATEGORIES]
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "lvis"), exist_ok=True)
    for split, coco_split in (("train", "train2017"), ("val", "val2017")):
        images, anns = [], []
        for name in sorted(os.listdir(os.path.join(root, "coco", coco_split))):
            iid = int(name.split(".")[0])
            images.append(dict(id=iid, height=size[0], width=size[1], not_exhaustive_category_ids=[],
                               neg_category_ids=[3], coco_url=f"http://images.cocodataset.org/{coco_split}/{name}"))
            for a in _instances(rng, *size, [1, 2, 1203]):
                a.pop("iscrowd")
                anns.append(dict(a, id=len(anns) + 1, image_id=iid))
        with open(os.path.join(root, "lvis", f"lvis_v1_{split}.json"), "w") as f:
            json.dump(dict(images=images, annotations=anns, categories=cats), f)
    return root


def write_objects365(root, size=(120, 160), seed=3):
    """Objects365 v2 layout: objects365/annotations/zhiyuan_objv2_{train,val}.json, images under objects365/{train,val}
    in patch folders (as released), 365 categories (ids 1..365), boxes without masks."""
    rng = np.random.default_rng(seed)
    cats = [dict(id=i, name=f"object{i}") for i in range(1, 366)]
    base = os.path.join(root, "objects365")
    os.makedirs(os.path.join(base, "annotations"), exist_ok=True)
    for split, n in (("train", 3), ("val", 2)):
        os.makedirs(os.path.join(base, split, "patch0"), exist_ok=True)
        images, anns = [], []
        for i in range(n):
            name = f"patch0/objects365_v2_{split}_{i:08d}.jpg"
            _image(rng, *size).save(os.path.join(base, split, name))
            images.append(dict(id=i + 1, file_name=name, height=size[0], width=size[1]))
            for a in _instances(rng, *size, [1, 200, 365]):
                a.pop("segmentation")
                anns.append(dict(a, id=len(anns) + 1, image_id=i + 1))
        with open(os.path.join(base, "annotations", f"zhiyuan_objv2_{split}.json"), "w") as f:
            json.dump(dict(images=images, annotations=anns, categories=cats), f)
    return root


def write_ade(root, n=2, size=(96, 128), seed=2):
    """ADEChallengeData2016: images/{training,validation}/*.jpg, annotations/...*.png (0 = other, 1..150)."""
    rng = np.random.default_rng(seed)
    base = os.path.join(root, "data", "ade", "ADEChallengeData2016")
    for split in ("training", "validation"):
        for d in ("images", "annotations"):
            os.makedirs(os.path.join(base, d, split), exist_ok=True)
        for i in range(n):
            name = f"ADE_{split[:5]}_{i:08d}"
            _image(rng, *size).save(os.path.join(base, "images", split, name + ".jpg"))
            lab = Image.new("L", size[::-1], 0)
            ImageDraw.Draw(lab).rectangle([10, 10, 60, 50], fill=int(rng.integers(1, 151)))
            lab.save(os.path.join(base, "annotations", split, name + ".png"))
    return root


def _depth_png(rng, size, scale):
    depth = rng.uniform(1.0, 8.0, size).astype(np.float32)
    return Image.fromarray((depth * scale).round().astype(np.uint16))


def _write_depth_set(root, name, n, size, seed, ext, scale, stem):
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for d in ("images", "annotations"):
            os.makedirs(os.path.join(root, "data", name, d, split), exist_ok=True)
        for i in range(n):
            _image(rng, *size).save(os.path.join(root, "data", name, "images", split, stem(i) + ext))
            _depth_png(rng, size, scale).save(os.path.join(root, "data", name, "annotations", split, stem(i) + ".png"))
    return root


def write_nyu(root, n=2, size=(96, 128), seed=3):
    """mmseg's NYU layout: data/nyu/images/{train,test}/SCENE_N.jpg, annotations/...png (uint16 millimetres)."""
    return _write_depth_set(root, "nyu", n, size, seed, ".jpg", 1000, lambda i: f"bedroom_{i:04d}")


def write_kitti(root, n=2, size=(375, 1242), seed=4):
    """The KITTI layout configs/mmseg/_base_/datasets/kitti.py reads: data/kitti/images/{train,test}/*.png,
    annotations/...png (uint16 depth x 256)."""
    return _write_depth_set(root, "kitti", n, size, seed, ".png", 256, lambda i: f"2011_09_26_drive_0001_{i:010d}")


def write_user_coco(root, n_train=4, n_val=2, size=(128, 160), seed=5, masks="polygon", categories=None):
    """A user's own COCO-format set, not the COCO layout: ``root/{train,val}/*.jpg`` and ``root/{train,val}.json``
    with the user's categories (non-contiguous ids by default). ``masks``: "polygon", "rle" or None (boxes only)."""
    import pycocotools.mask as mask_util

    cats = categories or [dict(id=3, name="bottle"), dict(id=7, name="can"), dict(id=12, name="carton")]
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("val", n_val)):
        os.makedirs(os.path.join(root, split), exist_ok=True)
        images, anns = [], []
        for i in range(n):
            iid = i + 1
            name = f"img_{split}_{i:03d}.jpg"
            _image(rng, *size).save(os.path.join(root, split, name))
            images.append(dict(id=iid, file_name=name, height=size[0], width=size[1]))
            for a in _instances(rng, *size, [c["id"] for c in cats]):
                if masks == "rle":
                    rle = mask_util.frPyObjects(a["segmentation"], *size)
                    rle = mask_util.merge(rle)
                    a["segmentation"] = dict(size=rle["size"], counts=rle["counts"].decode())
                elif masks is None:
                    a.pop("segmentation")
                anns.append(dict(a, id=len(anns) + 1, image_id=iid))
        path = os.path.join(root, f"{split}.json")
        with open(path, "w") as f:
            json.dump(dict(images=images, annotations=anns, categories=cats), f)
        out[split] = (path, os.path.join(root, split))
    return out


def custom_overrides(files):
    """The ``dataset.*`` command-line keys of configs/detectron2/custom/ for a ``write_user_coco`` set."""
    return [f"dataset.train_json={files['train'][0]}", f"dataset.train_images={files['train'][1]}",
            f"dataset.val_json={files['val'][0]}", f"dataset.val_images={files['val'][1]}"]


def write_user_seg(root, n_train=4, n_val=2, size=(96, 128), seed=6, classes=("background", "road", "car")):
    """A user's own segmentation folders: ``images/{train,val}/*.png`` (PNG, not the benchmarks' .jpg),
    ``labels/{train,val}/*.png`` (class index per pixel, a 255 = ignore band), ``classes.txt`` with colours.
    Each class has its own colour in the image, so that the labels are learnable."""
    rng = np.random.default_rng(seed)
    colours = [(20, 20, 20), (128, 64, 128), (0, 0, 142), (220, 220, 0)][: len(classes)]
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "classes.txt"), "w") as f:
        f.write("# name R G B\n" + "".join(f"{c} {r} {g} {b}\n" for c, (r, g, b) in zip(classes, colours)))
    for split, n in (("train", n_train), ("val", n_val)):
        for d in ("images", "labels"):
            os.makedirs(os.path.join(root, d, split), exist_ok=True)
        for i in range(n):
            lab = np.zeros(size, np.uint8)
            for c in range(1, len(classes)):
                y, x = rng.integers(0, size[0] // 2), rng.integers(0, size[1] // 2)
                lab[y: y + size[0] // 3, x: x + size[1] // 3] = c
            img = np.array(colours, np.float32)[lab] + rng.normal(0, 8, size + (3,))
            lab[:4] = 255  # an ignored band
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
                os.path.join(root, "images", split, f"s{i}.png"))
            Image.fromarray(lab).save(os.path.join(root, "labels", split, f"s{i}.png"))
    return root


def write_user_depth(root, n_train=4, n_val=2, size=(96, 128), seed=7, fmt="npy"):
    """A user's own depth folders: ``images/{train,val}/*.jpg`` and ``depth/{train,val}/NAME.npy`` (float metres) or
    ``NAME.png`` (uint16 millimetres); brighter = nearer, a 0 (no depth) corner. Returns {path: depth in metres}."""
    rng = np.random.default_rng(seed)
    truth = {}
    for split, n in (("train", n_train), ("val", n_val)):
        for d in ("images", "depth"):
            os.makedirs(os.path.join(root, d, split), exist_ok=True)
        for i in range(n):
            depth = np.full(size, rng.uniform(4, 8), np.float32)
            y, x = rng.integers(0, size[0] // 2), rng.integers(0, size[1] // 2)
            depth[y: y + size[0] // 2, x: x + size[1] // 2] = rng.uniform(1, 3)
            depth[:6, :6] = 0
            img = np.repeat((255 - depth * 25)[..., None], 3, -1) + rng.normal(0, 5, size + (3,))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
                os.path.join(root, "images", split, f"d{i}.jpg"))
            path = os.path.join(root, "depth", split, f"d{i}.{fmt}")
            if fmt == "npy":
                np.save(path, depth)
            else:
                Image.fromarray((depth * 1000).round().astype(np.uint16)).save(path)
            truth[path] = depth
    return truth


def _write_voc_like(base, seg_dir, list_dir, names, n_classes, rng, size):
    for d in ("JPEGImages", seg_dir, list_dir):
        os.makedirs(os.path.join(base, d), exist_ok=True)
    for name in names:
        _image(rng, *size).save(os.path.join(base, "JPEGImages", name + ".jpg"))
        lab = Image.new("L", size[::-1], 0)
        ImageDraw.Draw(lab).rectangle([10, 10, 60, 50], fill=int(rng.integers(1, n_classes)))
        lab.save(os.path.join(base, seg_dir, name + ".png"))
    for split in ("train", "val"):
        with open(os.path.join(base, list_dir, split + ".txt"), "w") as f:
            f.write("\n".join(names) + "\n")


def write_voc(root, n=2, size=(96, 128), seed=3):
    """VOCdevkit/VOC2012: JPEGImages/*.jpg, SegmentationClass/*.png (0 background, 1..20), ImageSets/Segmentation."""
    base = os.path.join(root, "data", "VOCdevkit", "VOC2012")
    _write_voc_like(base, "SegmentationClass", os.path.join("ImageSets", "Segmentation"),
                    [f"2007_{i:06d}" for i in range(n)], 21, np.random.default_rng(seed), size)
    return root


def write_context(root, n=2, size=(96, 128), seed=4):
    """VOCdevkit/VOC2010: JPEGImages, SegmentationClassContext/*.png (0 background, 1..59),
    ImageSets/SegmentationContext (mmseg's Pascal Context 59 layout)."""
    base = os.path.join(root, "data", "VOCdevkit", "VOC2010")
    _write_voc_like(base, "SegmentationClassContext", os.path.join("ImageSets", "SegmentationContext"),
                    [f"2008_{i:06d}" for i in range(n)], 60, np.random.default_rng(seed), size)
    return root


def write_coco_stuff(root, n=2, size=(96, 128), seed=5):
    """coco_stuff164k: images/{train2017,val2017}/*.jpg, annotations/...*_labelTrainIds.png (0..170, 255 ignored)."""
    rng = np.random.default_rng(seed)
    base = os.path.join(root, "data", "coco_stuff164k")
    for split in ("train2017", "val2017"):
        for d in ("images", "annotations"):
            os.makedirs(os.path.join(base, d, split), exist_ok=True)
        for i in range(n):
            name = f"{i:012d}"
            _image(rng, *size).save(os.path.join(base, "images", split, name + ".jpg"))
            lab = Image.new("L", size[::-1], 255)
            ImageDraw.Draw(lab).rectangle([10, 10, 60, 50], fill=int(rng.integers(0, 171)))
            lab.save(os.path.join(base, "annotations", split, name + "_labelTrainIds.png"))
    return root
