"""The detection recipes' schedules, in one place: ViTDet's 100-epoch step schedules (COCO and LVIS) and their
shortened forms, which the configs (``configs/detectron2/common``) and the custom-data path read.

COCO: 100 epochs = 184375 iterations at 64 images per iteration (118k images), lr steps at 163889 and 177546 (x0.1
each), 250 warm-up iterations. LVIS (ViTDet's derived recipes): 156250 iterations (100k images), steps at 138889 and
150463; the released PE-G LVIS recipes keep the COCO numbers.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

from ..errors import PEDenseError

ITERS_100EP = 184375
MILESTONES_100EP = (163889, 177546)
ITERS_100EP_LVIS = 156250
MILESTONES_100EP_LVIS = (138889, 150463)
WARMUP_ITERS = 250
LR_STEPS = (1.0, 0.1, 0.01)
# the steps as fractions of a run (88.9% and 96.3%), for runs of any length
MILESTONE_FRACTIONS = tuple(m / ITERS_100EP for m in MILESTONES_100EP)


def schedule(epochs: int, iters_100ep: int = ITERS_100EP, milestones_100ep: Sequence[int] = MILESTONES_100EP,
             warmup_iters: int = WARMUP_ITERS) -> Tuple[int, object]:
    """ViTDet's step schedule shortened to ``epochs`` exactly as the released PE configs do it: ``max_iter =
    iters_100ep * epochs // 100``, each milestone ``m * epochs // 100``, and the warm-up fraction computed on the
    100-epoch schedule (``250 / 184375``) before shortening (so 36 epochs warm up for 90 iterations).
    Returns (max_iter, lr_multiplier) for a LazyConfig."""
    from detectron2.config import LazyCall as L
    from detectron2.solver import WarmupParamScheduler
    from fvcore.common.param_scheduler import MultiStepParamScheduler

    max_iter = iters_100ep * epochs // 100
    return max_iter, L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(
            values=list(LR_STEPS),
            milestones=[m * epochs // 100 for m in milestones_100ep],
            num_updates=max_iter,
        ),
        warmup_length=warmup_iters / iters_100ep,
        warmup_factor=0.001,
    )


def iter_milestones(max_iter: int, fractions: Sequence[float] = MILESTONE_FRACTIONS) -> List[int]:
    """ViTDet's two lr steps as fractions of the run, for any ``train.max_iter`` >= 3 (steps kept distinct and inside
    the run, as the scheduler needs)."""
    if max_iter < 3:
        raise PEDenseError(f"train.max_iter={max_iter}: the step schedule needs at least 3 iterations")
    first = max(1, min(int(max_iter * fractions[0]), max_iter - 2))
    return [first, max(first + 1, min(int(max_iter * fractions[1]), max_iter - 1))]


def warmup_fraction(max_iter: int, warmup_iters: int = WARMUP_ITERS) -> float:
    """ViTDet's 250 warm-up iterations as a fraction of the run, at most a tenth of it (short runs)."""
    return min(warmup_iters, max(1, max_iter // 10)) / max_iter
