"""The sweep: every requested block of a tower probed for one task (``probe``), and ``pe-dense probe`` over several
towers (``run_probes``: table, plot, JSON/CSV, the best block)."""
from __future__ import annotations

import os
from typing import List, Optional

import numpy as np
import torch

from ..io import weights_identity
from .cache import FeatureCache, cache_features
from .data import TASKS, ProbeError, depth_splits, embedded, load_label, load_rgb, seg_splits, stored
from .heads import evaluate_heads, train_heads
from .report import ProbeResult, format_table, write_results
from .tracking import probe_track


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
    from ..factory import create_model
    from ..specs import get_spec

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
        data = embedded(task)
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
        return probe_track(model, model_name, data, blocks, size, cache_root, settings, device, cache_dtype,
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
        loaders = [lambda s=s: (load_rgb(s.image, size), stored(load_label(task, s.label, size)))
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


USE_BEST = {"track": "pe-dense track --model {model} --block {block}",
            "seg": "MMSeg: model.backbone.out_indices=[{block}]  (linear probe configs); "
                   "pe-dense features --block {block}",
            "depth": "MMSeg: model.backbone.out_indices=[{block}]; pe-dense features --block {block}"}


def run_probes(task: str, models: List[str], checkpoints: Optional[List[Optional[str]]] = None,
               data: Optional[str] = None, blocks="all", size: Optional[int] = None, epochs: int = 10,
               max_images: Optional[int] = None, seed: int = 0, cache: Optional[str] = None, fp32_cache: bool = False,
               out: str = "probe_results", device: str = "cpu") -> List[ProbeResult]:
    """``pe-dense probe``: ``probe`` for each tower of ``models`` (weights ``checkpoints``, one per model, or random
    init), each table printed with its best block and how to use it, then one plot, CSV and JSON in ``out``."""
    checkpoints = checkpoints or [None] * len(models)
    if len(checkpoints) != len(models):
        raise ProbeError(f"--checkpoint: give one per --model ({len(models)}), got {len(checkpoints)}")
    results = []
    for name, ckpt in zip(models, checkpoints):
        print(f"== probe {task}: {name} ({'weights ' + ckpt if ckpt else 'random init: no --checkpoint'}), "
              f"data {data or 'the embedded set'}, blocks {blocks}")
        r = probe(task, name, data=data, checkpoint=ckpt, blocks=blocks, size=size, epochs=epochs, cache_root=cache,
                  seed=seed, max_images=max_images, device=device,
                  cache_dtype=torch.float32 if fp32_cache else torch.float16)
        print(format_table(r))
        probe_total = sum(row["probe_seconds"] for row in r.rows)
        print(f"time: tower {r.tower_seconds:.1f} s (features of images not cached yet), probes {probe_total:.1f} s; "
              f"cache {r.cache_bytes / 2**20:.1f} MiB in {os.path.dirname(r.cache_dir)}")
        b = r.best()
        print(f"best block: {b['block']} ({r.metric} {b[r.metric]:.3f}) -> "
              f"{USE_BEST[task].format(model=name, block=b['block'])}")
        results.append(r)
    files = write_results(results, out)
    print(f"wrote {files['png']} (plot), {files['csv']}, {files['json']}")
    return results
