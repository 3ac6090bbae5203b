"""Which block? Frozen per-block probes for segmentation, depth and tracking (``pe-dense probe``), framework-free.

One forward per image taps every requested block (blocks past the deepest are not run); the features are cached to
disk, one safetensors file per image (written whole, then renamed: an interrupted run resumes where it stopped), so a
second probe or another head reuses them without running the tower. Then, per block, a frozen-feature probe:

- ``seg``: DINOv2's linear protocol, BN + 1x1 conv on the block's patch features (``LinearSegHead``), logits
  upsampled bilinearly to the label, cross-entropy; mIoU on the validation images.
- ``depth``: DINOv2's linear depth head (``LinearBinsHead``: 256 bins over [min_depth, max_depth], x4), SigLoss +
  0.5 gradient loss; RMSE (and abs_rel, d1) on the test images.
- ``track``: DAVIS label propagation (DINO's protocol, ``PropagationConfig``) on the block's features; J&F.

Every probe trains on the cached features alone: all blocks' heads together, one pass over the files per epoch,
one image's features in memory at a time. Seeded: the same numbers on every run.

Images are resized (short side ``size``) and centre-cropped to ``size`` x ``size`` for ``seg`` and ``depth`` (labels
with nearest, depth maps with nearest); frames keep their aspect for ``track`` (short side ``size``, sides floored to
the patch).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .data.images import normalize
from .errors import PEDenseError
from .io import weights_identity, write_atomic, write_csv, write_json

IMG_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
TASKS = ("seg", "depth", "track")
METRIC = {"seg": ("mIoU", True), "depth": ("rmse", False), "track": ("J&F", True)}  # name, higher is better


class ProbeError(PEDenseError):
    """A probe that cannot run as asked (data, blocks, sizes), and how to fix it."""


# ---------------------------------------------------------------------------------------------------------------
# data: the usual layouts


@dataclass
class Sample:
    image: str
    label: Optional[str]  # seg: label PNG; depth: 16-bit PNG; track: None


def _pairs(img_dir: str, lab_dir: str, suffix: str) -> List[Sample]:
    if not os.path.isdir(img_dir):
        raise ProbeError(f"image folder not found: {img_dir}")
    if not os.path.isdir(lab_dir):
        raise ProbeError(f"label folder not found: {lab_dir}")
    images = sorted(f for f in os.listdir(img_dir) if f.lower().endswith(IMG_EXTS))
    if not images:
        raise ProbeError(f"no images in {img_dir}")
    out, missing = [], []
    for f in images:
        lab = os.path.join(lab_dir, os.path.splitext(f)[0] + suffix)
        (out.append(Sample(os.path.join(img_dir, f), lab)) if os.path.isfile(lab) else missing.append(f))
    if missing:
        raise ProbeError(f"{len(missing)} image(s) in {img_dir} without a label in {lab_dir}, e.g. "
                         f"{', '.join(missing[:3])}")
    return out


def seg_splits(root: str) -> Dict[str, List[Sample]]:
    """ADE20K layout: ``images/{training,validation}/*.jpg``, ``annotations/{training,validation}/*.png`` (0 =
    other, not scored; class c is stored as c + 1)."""
    return {split: _pairs(os.path.join(root, "images", split), os.path.join(root, "annotations", split), ".png")
            for split in ("training", "validation")}


def depth_splits(root: str) -> Dict[str, List[Sample]]:
    """NYUv2 layout as mmseg reads it: ``images/{train,test}/*.jpg``, ``annotations/{train,test}/*.png`` (uint16
    millimetres)."""
    return {split: _pairs(os.path.join(root, "images", split), os.path.join(root, "annotations", split), ".png")
            for split in ("train", "test")}


def _load_rgb(path: str, size: int) -> torch.Tensor:
    from PIL import Image

    img = Image.open(path).convert("RGB")
    return normalize(_resize_crop(img, size, Image.BICUBIC))


def _stored(label: torch.Tensor) -> torch.Tensor:
    """Labels as cached: class ids as int16, depths as float32."""
    return label.to(torch.int16) if label.dtype == torch.int64 else label.float()


def _resize_crop(img, size: int, resample):
    """Short side to ``size``, then the centre ``size`` x ``size`` crop."""
    w, h = img.size
    s = size / min(w, h)
    nw, nh = max(size, round(w * s)), max(size, round(h * s))
    img = img.resize((nw, nh), resample)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def load_label(task: str, path: str, size: int, depth_scale: float = 1000.0) -> torch.Tensor:
    """seg: (size, size) int64 class ids with -1 = not scored (ADE's 0); depth: (size, size) float metres, 0 = none."""
    from PIL import Image

    img = _resize_crop(Image.open(path), size, Image.NEAREST)
    arr = np.asarray(img)
    if task == "seg":
        if arr.ndim != 2:
            raise ProbeError(f"{path}: labels must be single-channel class indices, got shape {arr.shape}")
        return torch.from_numpy(arr.astype(np.int64) - 1)
    if arr.ndim != 2 or arr.dtype != np.uint16:
        raise ProbeError(f"{path}: depth maps must be single-channel 16-bit PNGs (millimetres), got "
                         f"{arr.dtype} {arr.shape}")
    return torch.from_numpy(arr.astype(np.float32) / depth_scale)


# ---------------------------------------------------------------------------------------------------------------
# the feature cache


class FeatureCache:
    """``root/KEY/NNNNN.safetensors``: one file per image holding ``block{i}`` (C, h, w) for every cached block, and
    ``settings.json``. KEY hashes what determines the features (model and weights, size, dtype, the image list); a
    file already there is reused, so an interrupted run resumes."""

    def __init__(self, root: str, settings: dict):
        self.settings = settings
        key = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
        self.dir = os.path.join(root, f"{settings['model']}-{settings['task']}-{key}")
        write_json(os.path.join(self.dir, "settings.json"), settings, sort_keys=True)

    def path(self, i: int) -> str:
        return os.path.join(self.dir, f"{i:06d}.safetensors")

    def has(self, i: int, blocks: Sequence[int]) -> bool:
        if not os.path.isfile(self.path(i)):
            return False
        from safetensors import safe_open

        try:
            with safe_open(self.path(i), "pt") as f:
                return all(f"block{b}" in f.keys() for b in blocks)
        except Exception:  # a file cut short: written again
            return False

    def write(self, i: int, feats: Dict[int, torch.Tensor], label: Optional[torch.Tensor] = None):
        from safetensors.torch import save_file

        tensors = {f"block{b}": t.contiguous() for b, t in feats.items()}
        if label is not None:
            tensors["label"] = label.contiguous()
        write_atomic(self.path(i), lambda tmp: save_file(tensors, tmp))

    def read(self, i: int, blocks: Sequence[int]) -> Dict[int, torch.Tensor]:
        from safetensors import safe_open

        with safe_open(self.path(i), "pt") as f:
            return {b: f.get_tensor(f"block{b}").float() for b in blocks}

    def label(self, i: int) -> torch.Tensor:
        """The image's label as cached beside its features (seg: int64 ids, -1 = not scored; depth: metres)."""
        from safetensors import safe_open

        with safe_open(self.path(i), "pt") as f:
            t = f.get_tensor("label")
        return t.long() if t.dtype == torch.int16 else t.float()

    def nbytes(self) -> int:
        return sum(os.path.getsize(os.path.join(self.dir, f)) for f in os.listdir(self.dir)
                   if f.endswith(".safetensors"))


def cache_features(model, images: Sequence[Callable[[], tuple]], cache: FeatureCache, blocks: Sequence[int],
                   device="cpu", dtype=torch.float16, desc="features", progress=True) -> float:
    """Runs the tower once per image not yet cached (all ``blocks`` tapped in that one forward) and writes its
    features (and its label, when the loader gives one); ``images[i]()`` -> (image (3, H, W), label or None).
    Returns the seconds spent in the tower."""
    from tqdm import tqdm

    todo = [i for i in range(len(images)) if not cache.has(i, blocks)]
    model = model.to(device).eval()
    spent = 0.0
    for i in tqdm(todo, desc=desc, unit="img", disable=not progress or not todo):
        x, label = images[i]()
        t0 = time.time()
        with torch.no_grad():
            maps = model(x[None].to(device))
        spent += time.time() - t0
        cache.write(i, {b: m[0].to("cpu", dtype) for b, m in zip(model.out_indices, maps)}, label)
    return spent


# ---------------------------------------------------------------------------------------------------------------
# probes on cached features


def _miou(conf: torch.Tensor) -> float:
    inter = conf.diag().float()
    union = conf.sum(0).float() + conf.sum(1).float() - inter
    iou = inter[union > 0] / union[union > 0]
    return float(iou.mean() * 100) if iou.numel() else 0.0


def _order(n: int, epoch: int, seed: int) -> List[int]:
    g = torch.Generator().manual_seed(seed * 1000 + epoch)
    return torch.randperm(n, generator=g).tolist()


def train_heads(task: str, blocks: Sequence[int], channels: int, train: FeatureCache, n_train: int,
                num_classes: int = 0, epochs: int = 10, batch: int = 8,
                lr: float = 1e-2, seed: int = 0, max_depth: float = 10.0, progress: bool = True):
    """One head per block, trained together on the cached features (one pass over the files per epoch)."""
    from tqdm import tqdm

    from .modeling.heads import LinearBinsHead, LinearSegHead
    from .modeling.losses import gradient_loss, sig_loss

    def head(b):
        torch.manual_seed(seed)  # every block's head starts from the same weights: blocks are compared, not inits
        if task == "seg":
            return LinearSegHead([channels], num_classes)
        return LinearBinsHead([channels], min_depth=1e-3, max_depth=max_depth)

    heads = {b: head(b) for b in blocks}
    opts = {b: torch.optim.AdamW(h.parameters(), lr=lr, weight_decay=1e-4) for b, h in heads.items()}
    steps = epochs * ((n_train + batch - 1) // batch)
    scheds = {b: torch.optim.lr_scheduler.CosineAnnealingLR(o, max(1, steps)) for b, o in opts.items()}
    seconds = {b: 0.0 for b in blocks}
    bar = tqdm(total=steps, desc=f"{task} probes ({len(blocks)} blocks)", unit="step", disable=not progress)
    for epoch in range(epochs):
        order = _order(n_train, epoch, seed)
        for s in range(0, n_train, batch):
            idx = order[s: s + batch]
            feats = [train.read(i, blocks) for i in idx]
            target = torch.stack([train.label(i) for i in idx])
            for b in blocks:
                t0 = time.time()
                h = heads[b].train()
                x = torch.stack([f[b] for f in feats])
                out = F.interpolate(h([x]), size=target.shape[-2:], mode="bilinear", align_corners=False)
                if task == "seg":
                    loss = F.cross_entropy(out, target, ignore_index=-1)
                else:
                    gt = target[:, None]
                    loss = sig_loss(out, gt, max_depth) + 0.5 * gradient_loss(out, gt, max_depth)
                opts[b].zero_grad()
                loss.backward()
                opts[b].step()
                scheds[b].step()
                seconds[b] += time.time() - t0
            bar.update(1)
    bar.close()
    return heads, seconds


@torch.no_grad()
def evaluate_heads(task: str, heads: dict, cache: FeatureCache, n: int, num_classes: int = 0,
                   max_depth: float = 10.0) -> Dict[int, dict]:
    blocks = list(heads)
    conf = {b: torch.zeros(num_classes, num_classes, dtype=torch.long) for b in blocks}
    sums = {b: dict(se=0.0, rel=0.0, d1=0.0, n=0) for b in blocks}
    for i in range(n):
        feats, target = cache.read(i, blocks), cache.label(i)
        for b in blocks:
            out = F.interpolate(heads[b].eval()([feats[b][None]]), size=target.shape[-2:], mode="bilinear",
                                align_corners=False)[0]
            if task == "seg":
                pred, keep = out.argmax(0), target >= 0
                conf[b] += torch.bincount(target[keep] * num_classes + pred[keep],
                                          minlength=num_classes ** 2).view(num_classes, num_classes)
            else:
                keep = (target > 0) & (target <= max_depth)
                p, g = out[0][keep].clamp_min(1e-3), target[keep]
                s = sums[b]
                s["se"] += float(((p - g) ** 2).sum())
                s["rel"] += float(((p - g).abs() / g).sum())
                s["d1"] += float((torch.maximum(p / g, g / p) < 1.25).sum())
                s["n"] += int(keep.sum())
    if task == "seg":
        return {b: {"mIoU": _miou(conf[b]), "aAcc": float(conf[b].diag().sum() / conf[b].sum().clamp_min(1) * 100)}
                for b in blocks}
    return {b: {"rmse": (s["se"] / max(1, s["n"])) ** 0.5, "abs_rel": s["rel"] / max(1, s["n"]),
                "d1": s["d1"] / max(1, s["n"])} for b, s in sums.items()}


# ---------------------------------------------------------------------------------------------------------------
# the sweep


@dataclass
class ProbeResult:
    task: str
    model: str
    rows: List[dict] = field(default_factory=list)  # per block: block, metrics, probe seconds
    tower_seconds: float = 0.0
    cache_dir: str = ""
    cache_bytes: int = 0

    @property
    def metric(self) -> str:
        return METRIC[self.task][0]

    def best(self) -> dict:
        """The best block; among equal scores the shallowest (cheaper, and where the quality appears)."""
        name, higher = METRIC[self.task]
        key = (lambda r: (-round(r[name], 6), r["block"])) if higher else (lambda r: (round(r[name], 6), r["block"]))
        return sorted(self.rows, key=key)[0]


def resolve_blocks(blocks, depth: int) -> List[int]:
    """``"all"``/None, or block indices (negative from the end), checked against the tower."""
    if blocks in (None, "all"):
        return list(range(depth))
    if isinstance(blocks, str):
        blocks = [int(v) for v in blocks.replace(",", " ").split()]
    out = []
    for b in blocks:
        if not -depth <= b < depth:
            raise ProbeError(f"block {b} is outside the tower's {depth} blocks (0..{depth - 1}, or negative from the "
                             f"end)")
        out.append(b % depth)
    return sorted(set(out))


def probe(task: str, model_name: str, data: Optional[str] = None, checkpoint: Optional[str] = None,
          blocks="all", size: Optional[int] = None, epochs: int = 10, cache_root: Optional[str] = None,
          seed: int = 0, max_images: Optional[int] = None, device: str = "cpu", cache_dtype=torch.float16,
          max_depth: float = 10.0, progress: bool = True, model=None) -> ProbeResult:
    """Probes every requested block of ``model_name`` for ``task`` on ``data`` (the usual layout; the embedded
    set when None). ``model``: an already built tower (weights set by the caller) instead of ``checkpoint``."""
    from .factory import create_model
    from .specs import get_spec

    if task not in TASKS:
        raise ProbeError(f"task {task!r}: one of {', '.join(TASKS)}")
    spec = get_spec(model_name)
    blocks = resolve_blocks(blocks, spec.depth)
    given = model is not None
    if model is None:
        model = create_model(model_name, pretrained=checkpoint, out_indices=blocks)
    if list(model.out_indices) != blocks:
        raise ProbeError(f"the tower taps {list(model.out_indices)}, the probe asks for {blocks}")
    if data is None:
        data = _embedded(task)
        size = size or {"seg": 128, "depth": 128, "track": 240}[task]
    size = size or (spec.img_size if task != "track" else 480)
    if size < model.patch_size:
        raise ProbeError(f"--size {size} is smaller than one patch ({model.patch_size} px)")
    cache_root = cache_root or os.path.join(os.path.expanduser(os.environ.get("PE_DENSE_HOME", "~/.cache/pe_dense")),
                                            "probe_cache")
    # a tower passed in memory is known by its weights: the cache must not serve another tower's features
    settings = dict(model=model_name, weights=weights_identity(checkpoint, model if given else None), task=task,
                    size=size,
                    dtype=str(cache_dtype),
                    data=os.path.abspath(data), seed=seed, max_images=max_images)
    if task == "track":
        return _probe_track(model, model_name, data, blocks, size, cache_root, settings, device, cache_dtype,
                            progress)
    splits = seg_splits(data) if task == "seg" else depth_splits(data)
    train_key, val_key = ("training", "validation") if task == "seg" else ("train", "test")
    train, val = splits[train_key], splits[val_key]
    if max_images:
        rng = np.random.default_rng(seed)
        train = [train[i] for i in sorted(rng.permutation(len(train))[:max_images])]
    caches = {}
    tower = 0.0
    for name, samples in (("train", train), ("val", val)):
        cache = FeatureCache(cache_root, dict(settings, split=name, images=[s.image for s in samples]))
        loaders = [lambda s=s: (_load_rgb(s.image, size), _stored(load_label(task, s.label, size)))
                   for s in samples]
        tower += cache_features(model, loaders, cache, blocks, device, cache_dtype, f"{model_name} {name} features",
                                progress)
        caches[name] = cache
    num_classes = 0
    if task == "seg":
        num_classes = max(int(caches[k].label(i).max()) for k, n in (("train", len(train)), ("val", len(val)))
                          for i in range(n)) + 1
        if num_classes < 2:
            raise ProbeError(f"{data}: the labels hold fewer than two classes")
    channels = caches["train"].read(0, blocks[:1])[blocks[0]].shape[0]
    heads, seconds = train_heads(task, blocks, channels, caches["train"], len(train), num_classes, epochs, seed=seed,
                                 max_depth=max_depth, progress=progress)
    scores = evaluate_heads(task, heads, caches["val"], len(val), num_classes, max_depth)
    rows = [dict(block=b, **scores[b], probe_seconds=round(seconds[b], 3)) for b in blocks]
    return ProbeResult(task, model_name, rows, tower, caches["train"].dir,
                       caches["train"].nbytes() + caches["val"].nbytes())


def _probe_track(model, model_name, root, blocks, size, cache_root, settings, device, cache_dtype, progress):
    """Label propagation per block on cached frame features; J&F as davis2017-evaluation."""
    from .tracking.davis import list_sequences, load_sequence, read_annotation
    from .tracking.evaluate import COLUMNS, read_frame, summarize, working_size
    from .tracking.metrics import evaluate_sequence
    from .tracking.propagation import PropagationConfig

    cfg = PropagationConfig(short_side=size)
    seqs = [load_sequence(root, n) for n in list_sequences(root, "val")]
    tower, per_block = 0.0, {b: [] for b in blocks}
    seconds = {b: 0.0 for b in blocks}
    cache_dir = ""
    total = 0
    for seq in seqs:
        first = read_annotation(seq.first_annotation)
        hw = working_size(*first.shape, cfg.short_side, model.patch_size)
        cache = FeatureCache(cache_root, dict(settings, sequence=seq.name, frames=seq.frames))
        cache_dir = cache.dir
        loaders = [lambda f=f: (read_frame(f, hw)[0], None) for f in seq.frames]
        tower += cache_features(model, loaders, cache, blocks, device, cache_dtype, f"{model_name} {seq.name}",
                                progress)
        total += cache.nbytes()
        for b in blocks:
            t0 = time.time()
            preds = _propagate_cached(seq, first, cache, b, model.patch_size, cfg, hw)
            seconds[b] += time.time() - t0
            have = [i for i, a in enumerate(seq.annotations) if a is not None]
            if len(have) < 3:
                continue
            k = int(first[first != 255].max())
            gt = np.stack([read_annotation(seq.annotations[i], k) for i in have])
            gt = np.where(gt == 255, 0, gt)
            rows = evaluate_sequence(np.stack([preds[i] for i in have]), gt, None, num_objects=k)
            per_block[b] += rows
    out = []
    for b in blocks:
        s = summarize(per_block[b])
        out.append(dict(block=b, **{"J&F": s.get("J&F-Mean", 0.0)},
                        **{c: s.get(c, 0.0) for c in COLUMNS[:1] + COLUMNS[3:4]},
                        probe_seconds=round(seconds[b], 3)))
    return ProbeResult("track", model_name, out, tower, cache_dir, total)


def _propagate_cached(seq, first, cache, block, patch, cfg, hw):
    from PIL import Image

    from .tracking.propagation import finalize, run_propagation

    H, W = first.shape
    k = int(first[first != 255].max())
    small = np.array(Image.fromarray(np.where(first == 255, 0, first)).resize((hw[1] // patch, hw[0] // patch),
                                                                              Image.NEAREST))
    labels = F.one_hot(torch.from_numpy(small).long(), k + 1).permute(2, 0, 1).float()

    def features(i):
        return cache.read(i, [block])[block].permute(1, 2, 0)

    out = [first]
    for probs in run_propagation(features, len(seq.frames), labels, cfg):
        out.append(finalize(probs, patch, (H, W)).numpy())
    return out


def _embedded(task: str) -> str:
    from .data.generated import data_root

    if task == "seg":
        from .data.seg_depth import make_ade_shapes

        return make_ade_shapes(data_root("ade_shapes"))
    if task == "depth":
        from .data.seg_depth import make_nyu_planes

        return make_nyu_planes(data_root("nyu_planes"))
    from .tracking.synthetic import make_davis

    return make_davis(data_root("davis_synthetic"))


# ---------------------------------------------------------------------------------------------------------------
# output


def format_table(result: ProbeResult) -> str:
    keys = [k for k in result.rows[0] if k not in ("block", "probe_seconds")]
    lines = [f"{'block':>5} " + " ".join(f"{k:>9}" for k in keys) + f" {'probe s':>8}"]
    best = result.best()["block"]
    for r in result.rows:
        lines.append(f"{r['block']:>5} " + " ".join(f"{r[k]:>9.3f}" for k in keys) + f" {r['probe_seconds']:>8.2f}"
                     + ("  <- best" if r["block"] == best else ""))
    return "\n".join(lines)


def write_results(results: List[ProbeResult], out_dir: str) -> Dict[str, str]:
    """``probe_TASK.json`` and ``.csv`` (one row per model and block) and ``probe_TASK.png`` (metric against block,
    one line per model); written whole (temporary names, then renamed)."""
    os.makedirs(out_dir, exist_ok=True)
    task = results[0].task
    base = os.path.join(out_dir, f"probe_{task}")
    payload = [dict(asdict(r), best=r.best(), metric=r.metric) for r in results]
    write_json(base + ".json", payload)
    keys = [k for k in results[0].rows[0] if k != "block"]
    write_csv(base + ".csv", ["model", "block"] + keys,
              [[r.model, row["block"]] + [row[k] for k in keys] for r in results for row in r.rows])
    plot(results, base + ".png")
    return dict(json=base + ".json", csv=base + ".csv", png=base + ".png")


def plot(results: List[ProbeResult], path: str):
    try:
        import matplotlib
    except ImportError:
        raise ProbeError("the plot needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = results[0].metric
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for r in results:
        xs, ys = [row["block"] for row in r.rows], [row[metric] for row in r.rows]
        line, = ax.plot(xs, ys, marker="o", label=r.model)
        b = r.best()
        ax.scatter([b["block"]], [b[metric]], s=120, facecolors="none", edgecolors=line.get_color(), linewidths=2)
    ax.set_xlabel("block")
    ax.set_ylabel(metric + ("" if METRIC[results[0].task][1] else " (lower is better)"))
    ax.set_title(f"frozen {results[0].task} probe per block")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
