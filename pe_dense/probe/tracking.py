"""The ``track`` probe: DAVIS label propagation per block on cached frame features, J&F as davis2017-evaluation."""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from .cache import FeatureCache, cache_features
from .report import ProbeResult


def probe_track(model, model_name, root, blocks, size, cache_root, settings, device, cache_dtype, progress):
    """Label propagation per block on cached frame features; J&F as davis2017-evaluation."""
    from ..tracking.davis import list_sequences, load_sequence, read_annotation
    from ..tracking.evaluate import COLUMNS, read_frame, summarize, working_size
    from ..tracking.metrics import evaluate_sequence
    from ..tracking.propagation import PropagationConfig

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
            preds = propagate_cached(seq, first, cache, b, model.patch_size, cfg, hw)
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


def propagate_cached(seq, first, cache, block, patch, cfg, hw):
    from PIL import Image

    from ..tracking.propagation import finalize, run_propagation

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
