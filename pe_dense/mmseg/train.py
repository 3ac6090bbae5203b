"""``tools/train_mmseg.py``: mmengine's Runner with pre-flight checks of the data and the work dir.

Checks before anything is written: dataset folders exist, every image has its label, label values are within the
classes (or the ignore index), the work dir holds no checkpoints of an earlier run unless ``--resume`` (nothing
is overwritten). ``--resume`` continues from the work dir's last checkpoint (mmengine's checkpoints load with
``weights_only=True`` and the allow-list of ``pe_dense.mmseg.checkpoint``).
"""
from __future__ import annotations

import argparse
import glob
import os
import os.path as osp
import sys
from typing import List, Optional

import numpy as np

# DataError: imported for callers of this module (API)
from .datasets import MAX_LABEL_SCAN, DataError, check_depth_array, check_depth_maps, check_label_modes  # noqa: F401
from .segmentors import is_depth


def _dataset_cfgs(cfg):
    out = []
    for key in ("train_dataloader", "val_dataloader", "test_dataloader"):
        dl = cfg.get(key)
        if dl and dl.get("dataset"):
            ds = dl["dataset"]
            while "dataset" in ds:  # wrappers (RepeatDataset, ...)
                ds = ds["dataset"]
            out.append((key, ds))
    return out


def prepare_embedded(cfg):
    """Embedded datasets write themselves on first use: do it now (once) so that the checks see them."""
    from pe_dense.mmseg.datasets import EMBEDDED, embedded_root

    for _, ds in _dataset_cfgs(cfg):
        if ds.get("generate") and ds.get("type") in EMBEDDED:
            ds["data_root"] = embedded_root(ds["type"], ds.get("data_root"))


# top-level keys of the folder configs (configs/mmseg/_base_/datasets/folder_*.py) that --cfg-options passes on
DATASET_KEYS = ("data_root", "classes", "ignore_index", "depth_scale", "max_depth")


def decode_heads(model) -> list:
    """The config's decode head and auxiliary head(s), each a dict (a list of heads counts as several)."""
    out = []
    for key in ("decode_head", "auxiliary_head"):
        head = model.get(key)
        out += [h for h in (head if isinstance(head, list) else [head]) if h]
    return out


def apply_dataset_keys(cfg, options: Optional[dict]) -> List[str]:
    """What the folder datasets need, from the one place a user sets it: a top-level key of ``DATASET_KEYS`` given in
    ``--cfg-options`` goes to every dataset that takes it; then the train set's classes and ignore index go to the
    heads and the IoU metric (``PEFolderSegDataset``), its ``max_depth`` to the depth head and metric
    (``PEFolderDepthDataset``). Returns one line per value set."""
    from pe_dense.mmseg.datasets import read_classes

    notes = []
    given = {k: v for k, v in (options or {}).items() if k in DATASET_KEYS}
    for key, ds in _dataset_cfgs(cfg):
        for k, v in given.items():
            if k in ds:
                ds[k] = v
    datasets = dict(_dataset_cfgs(cfg))
    train = datasets.get("train_dataloader", {})
    evaluators = [cfg.get(k) for k in ("val_evaluator", "test_evaluator") if isinstance(cfg.get(k), dict)]
    if train.get("type") == "PEFolderSegDataset":
        names, _ = read_classes(train.get("classes", "classes.txt"), train.get("data_root"))
        ignore = train.get("ignore_index", 255)
        for head in decode_heads(cfg.model):
            head["num_classes"], head["ignore_index"] = len(names), ignore
        for ev in evaluators:
            ev["ignore_index"] = ignore
        notes.append(f"classes: {len(names)} ({', '.join(names[:8])}{' ...' if len(names) > 8 else ''}), "
                     f"ignore index {ignore}: set in the heads and the metric")
    if train.get("type") == "PEFolderDepthDataset":
        max_depth = float(train.get("max_depth", 10.0))
        for head in decode_heads(cfg.model):
            if "max_depth" in head:
                head["max_depth"] = max_depth
        for ev in evaluators:
            ev["max_depth_eval"] = max_depth
        notes.append(f"depth: max {max_depth:g} m (head and metric), depth maps / {train.get('depth_scale', 1000.0):g}"
                     f" = metres")
    return notes


def _default(ds, key: str, fallback):
    """``ds[key]``, else the default of the dataset class's own ``__init__`` (mmseg's ADE20KDataset reduces the zero
    label, NYUDataset reads ``.jpg`` images, ...), else ``fallback``: no dataset names are hard-coded here."""
    if key in ds:
        return ds[key]
    import inspect

    from mmseg.registry import DATASETS

    cls = DATASETS.get(ds.get("type")) if isinstance(ds.get("type"), str) else ds.get("type")
    for klass in (cls.__mro__ if isinstance(cls, type) else ()):
        param = inspect.signature(klass.__init__).parameters.get(key)
        if param is not None and param.default is not inspect.Parameter.empty:
            return param.default
    return fallback


def check_data(cfg, num_classes: Optional[int] = None) -> List[str]:
    """Raises ``DataError`` naming the problem and the fix; returns notes (e.g. partial label scans). Reads only:
    embedded sets are written by ``prepare_embedded`` first."""
    from PIL import Image

    notes = []
    for key, ds in _dataset_cfgs(cfg):
        root = osp.expanduser(ds.get("data_root") or "")
        prefix = ds.get("data_prefix", {})
        img_dir = osp.join(root, prefix.get("img_path", ""))
        lab_key = "depth_map_path" if "depth_map_path" in prefix else "seg_map_path"
        lab_dir = osp.join(root, prefix.get(lab_key, "")) if prefix.get(lab_key) else None
        if not osp.isdir(img_dir):
            raise DataError(f"{key}: image folder not found: {img_dir} (check data_root / data_prefix in the "
                            f"config, or --cfg-options {key}.dataset.data_root=/path/to/data)")
        if lab_dir is None:
            continue
        if not osp.isdir(lab_dir):
            raise DataError(f"{key}: label folder not found: {lab_dir}")
        if ds.get("type") in ("PEFolderSegDataset", "PEFolderDepthDataset"):
            try:  # the folder datasets list and check their own files (any image type, .png or .npy depth)
                labels = [lab for _, lab in _folder_pairs(ds, img_dir, lab_dir)]
            except DataError as e:
                raise DataError(f"{key}: {e}") from None
        else:
            img_suffix = _default(ds, "img_suffix", ".jpg")
            lab_suffix = (_default(ds, "depth_map_suffix", ".png") if lab_key == "depth_map_path"
                          else _default(ds, "seg_map_suffix", ".png"))
            images = sorted(f for f in os.listdir(img_dir) if f.endswith(img_suffix))
            if not images:
                raise DataError(f"{key}: no '*{img_suffix}' images in {img_dir}")
            missing = [f for f in images if not osp.isfile(osp.join(lab_dir, f[: -len(img_suffix)] + lab_suffix))]
            if missing:
                raise DataError(f"{key}: {len(missing)} image(s) without a label in {lab_dir}, e.g. "
                                f"{', '.join(missing[:3])} (each image needs NAME{lab_suffix})")
            labels = [osp.join(lab_dir, f[: -len(img_suffix)] + lab_suffix) for f in images]
        if lab_key == "depth_map_path":
            check_depth_maps(key, [p for p in labels[:MAX_LABEL_SCAN] if p.endswith(".png")])
            for p in labels[:MAX_LABEL_SCAN]:
                if p.endswith(".npy"):
                    check_depth_array(key, p)
        if lab_key == "seg_map_path":
            check_label_modes(key, labels[:MAX_LABEL_SCAN])
        if lab_key == "seg_map_path" and num_classes:
            reduce = bool(_default(ds, "reduce_zero_label", False))
            ignore = int(_default(ds, "ignore_index", 255))
            scan = labels[:MAX_LABEL_SCAN]
            if len(labels) > len(scan):
                notes.append(f"{key}: label values checked on the first {len(scan)} of {len(labels)} labels")
            for path in scan:
                vals = np.unique(np.asarray(Image.open(path))).astype(np.int64)
                # mmseg's reduce_zero_label: 0 -> ignore, v -> v - 1, 255 stays ignore
                kept = vals[~np.isin(vals, [ignore, 0] if reduce else [ignore])]
                cls = kept - 1 if reduce else kept
                bad = kept[(cls < 0) | (cls >= num_classes)]  # as stored in the file
                if bad.size:
                    stored = sorted(int(v) for v in bad)
                    raise DataError(
                        f"{key}: {path} has label value(s) outside the {num_classes} classes: {stored} "
                        f"({'reduce_zero_label: 1..' + str(num_classes) if reduce else '0..' + str(num_classes - 1)}"
                        f" and {ignore} = ignore are valid); fix the labels, the classes or the ignore index")
    return notes


def _folder_pairs(ds, img_dir: str, lab_dir: str):
    from pe_dense.mmseg.datasets import _paired

    suffixes = (".png", ".npy") if ds.get("type") == "PEFolderDepthDataset" else (ds.get("seg_map_suffix", ".png"),)
    return _paired(img_dir, lab_dir, suffixes, ds.get("img_suffix"))


def _readable(path: str) -> bool:
    """A checkpoint whose zip directory opens (torch.save's format; a file cut short by a kill does not). Another
    file is read safely in full: a legacy checkpoint passes, a file carrying code is refused (raises)."""
    import zipfile

    from pe_dense.checkpoint import CheckpointError, RefusedFileError, safe_load

    try:
        with zipfile.ZipFile(path):
            return True
    except (zipfile.BadZipFile, OSError):
        pass
    try:
        safe_load(path)
        return True
    except RefusedFileError:
        raise
    except CheckpointError:
        return False


def resume_checkpoint(work_dir: str) -> Optional[str]:
    """The newest readable checkpoint of ``work_dir`` (``last_checkpoint``'s, then ``iter_N.pth`` / ``epoch_N.pth``
    newest first); unreadable ones are skipped with a warning, and a warning says when there is none."""
    import logging
    import re

    from mmengine.logging import print_log

    named = []
    last = osp.join(work_dir, "last_checkpoint")
    if osp.isfile(last):
        with open(last) as f:
            target = f.read().strip()
        named = [target if osp.isabs(target) else osp.join(work_dir, osp.basename(target))]
    found = sorted(glob.glob(osp.join(work_dir, "*.pth")),
                   key=lambda p: int((re.findall(r"_(\d+)\.pth$", p) or ["-1"])[0]), reverse=True)
    for path in named + [p for p in found if p not in named]:
        if osp.isfile(path) and _readable(path):
            return path
        print_log(f"--resume: skipping {path}: " + ("missing" if not osp.isfile(path) else
                  "truncated or not a checkpoint"), logger="current", level=logging.WARNING)
    print_log(f"--resume: no readable checkpoint in {work_dir}: training starts from iteration 0",
              logger="current", level=logging.WARNING)
    return None


def check_work_dir(work_dir: str, resume: bool):
    ckpts = glob.glob(osp.join(work_dir, "*.pth")) + glob.glob(osp.join(work_dir, "last_checkpoint"))
    if ckpts and not resume:
        raise DataError(f"{work_dir} holds checkpoints of an earlier run ({osp.basename(sorted(ckpts)[0])}, ...): "
                        f"continue it with --resume, or pass another --work-dir (nothing is overwritten)")


def load_one_batch(cfg):
    """Builds the train and val dataloaders as the config says and loads one batch of each (no model)."""
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner

    init_default_scope(cfg.get("default_scope", "mmseg"))
    for key in ("train_dataloader", "val_dataloader"):
        loader = Runner.build_dataloader(cfg[key])
        batch = next(iter(loader))
        shapes = sorted({tuple(x.shape) for x in batch["inputs"]})
        sample = batch["data_samples"][0]
        label = "gt_depth_map" if "gt_depth_map" in sample else "gt_sem_seg"
        print(f"check-data: {key}: a batch of {len(batch['inputs'])}, images {shapes}, "
              f"{label} {tuple(getattr(sample, label).data.shape)}")
    print("check-data: ok")


def main(argv=None, progress: str = ""):
    """``progress``: a description to show a progress bar with (``PEProgressHook``), e.g. when the logs go to a
    file."""
    from mmengine.config import Config, DictAction
    from mmengine.runner import Runner

    p = argparse.ArgumentParser("train_mmseg", description=__doc__)
    p.add_argument("config")
    p.add_argument("--work-dir")
    p.add_argument("--resume", action="store_true", help="continue from the work dir's last checkpoint")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, help="key=value overrides (mmengine syntax)")
    p.add_argument("--launcher", default="none", choices=["none", "pytorch", "slurm", "mpi"])
    p.add_argument("--skip-data-check", action="store_true")
    p.add_argument("--check-data", action="store_true",
                   help="run the checks, build the train and val dataloaders, load one batch of each, and exit")
    args = p.parse_args(argv)

    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir:
        cfg.work_dir = args.work_dir
    cfg.work_dir = cfg.get("work_dir") or osp.join("work_dirs", osp.splitext(osp.basename(args.config))[0])
    cfg.resume = args.resume
    try:
        check_work_dir(cfg.work_dir, args.resume)
        for note in apply_dataset_keys(cfg, args.cfg_options):
            print(note)
        prepare_embedded(cfg)
        if not args.skip_data_check:
            head = cfg.model.get("decode_head", {})
            num_classes = head.get("num_classes") if not is_depth(cfg.model) else None
            for note in check_data(cfg, num_classes):
                print(note)
    except DataError as e:
        print(f"train_mmseg: error: {e}", file=sys.stderr)
        sys.exit(2)
    if args.check_data:
        return load_one_batch(cfg)
    if args.resume:
        found = resume_checkpoint(cfg.work_dir)
        cfg.resume = found is not None
        if found:
            cfg.load_from = found
    if progress:
        cfg.custom_hooks = list(cfg.get("custom_hooks") or []) + [dict(type="PEProgressHook", desc=progress)]
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner
