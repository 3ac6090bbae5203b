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
one block of one batch in memory at a time (the files are read per tensor): the features held are batch (8) x C x h x
w x 4 bytes, whatever the number of images or blocks. Seeded: the same numbers on every run.

Images are resized (short side ``size``) and centre-cropped to ``size`` x ``size`` for ``seg`` and ``depth`` (labels
with nearest, depth maps with nearest); frames keep their aspect for ``track`` (short side ``size``, sides floored to
the patch).

The modules: ``data`` (layouts, loading, the embedded sets), ``cache`` (the feature cache), ``heads`` (per-block
heads, training and scores), ``tracking`` (the ``track`` probe), ``report`` (the metric, results, table, files,
plot) and ``sweep`` (``probe`` and the command's ``run_probes``).
"""
from .cache import FeatureCache, cache_features
from .data import TASKS, ProbeError, Sample, depth_splits, load_label, seg_splits
from .heads import evaluate_heads, train_heads
from .report import METRICS, Metric, ProbeResult, format_table, plot, write_results
from .sweep import probe, resolve_blocks, run_probes

__all__ = ["FeatureCache", "cache_features", "TASKS", "ProbeError", "Sample", "depth_splits", "load_label",
           "seg_splits", "evaluate_heads", "train_heads", "METRICS", "Metric", "ProbeResult", "format_table", "plot",
           "write_results", "probe", "resolve_blocks", "run_probes"]
