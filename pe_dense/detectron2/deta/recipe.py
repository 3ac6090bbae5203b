"""The released DETA_pe recipe in Detectron2's terms: its augmentation, optimizer and step schedule.

Augmentation (``datasets/coco.py`` ``make_coco_transforms_lsj``, DETR's multi-scale, then padded to the square size):
training: flip; with probability 1/2 a resize of the short side to one of 480, 512, ..., S - 32 (longest side at
most S - 32), else a resize to 400 / 500 / 600, a random crop of 384..600 px a side and a resize to S - 32 (longest
side at most S - 32); test: short side S - 32, longest at most S - 32. Boxes are kept as the crop leaves them.
Optimizer (``main.py``): AdamW, weight decay 1e-4 on every parameter, the backbone at ``lr_backbone``, the sampling
offsets (and reference points) at 0.1 lr, gradients clipped to a total norm of 0.1; ``--backbone_lrd 0.9`` is passed
by the scripts but only applied to "vev01" backbones, so the released PE runs have no layer decay: followed here
(``layer_decay`` offers it). Schedule: StepLR, x0.1 after ``lr_drop`` of ``epochs`` epochs.
"""
from __future__ import annotations

from typing import List, Sequence

import detectron2.data.transforms as T
import numpy as np
import torch
from detectron2.config import LazyCall as L

from ...errors import PEDenseError

LINEAR_PROJ = ("reference_points", "sampling_offsets")


class RandomSelect(T.Augmentation):
    """One of two augmentation lists, the first with probability ``p`` (DETR's ``RandomSelect``)."""

    def __init__(self, first: Sequence[T.Augmentation], second: Sequence[T.Augmentation], p: float = 0.5):
        super().__init__()
        self.first, self.second, self.p = T.AugmentationList(list(first)), T.AugmentationList(list(second)), p

    def __call__(self, aug_input):
        return (self.first if np.random.rand() < self.p else self.second)(aug_input)

    def get_transform(self, *args):  # only __call__ is used (a composite)
        raise NotImplementedError


def train_augmentations(image_size: int, min_size: int = 480) -> List:
    """The released training augmentation for square size ``image_size`` (LazyCall objects for a config)."""
    if image_size - 32 <= min_size:
        raise PEDenseError(f"DETA image_size={image_size}: the released multi-scale needs image_size > {min_size + 32}")
    top = image_size - 32
    return [
        L(T.RandomFlip)(horizontal=True),
        L(RandomSelect)(
            first=[L(T.ResizeShortestEdge)(short_edge_length=list(range(min_size, image_size, 32)), max_size=top,
                                           sample_style="choice")],
            second=[L(T.ResizeShortestEdge)(short_edge_length=[400, 500, 600], max_size=100000,
                                            sample_style="choice"),
                    L(T.RandomCrop)(crop_type="absolute_range", crop_size=(384, 600)),
                    L(T.ResizeShortestEdge)(short_edge_length=top, max_size=top)],
        ),
    ]


def test_augmentations(image_size: int) -> List:
    return [L(T.ResizeShortestEdge)(short_edge_length=image_size - 32, max_size=image_size - 32)]


def lr_factors(lr: float, lr_backbone: float, layer_decay: float = 1.0, num_layers: int = 0):
    """``lr_factor`` for Detectron2's ``get_default_optimizer_params(lr_factor_func=...)``: name -> factor."""
    from functools import partial

    return partial(lr_factor, lr=lr, lr_backbone=lr_backbone, layer_decay=layer_decay, num_layers=num_layers)


def lr_factor(name: str, lr: float, lr_backbone: float, layer_decay: float = 1.0, num_layers: int = 0) -> float:
    """The released parameter groups as a factor of ``lr``: the backbone at ``lr_backbone`` (times
    ``layer_decay ** (num_layers + 1 - layer_id)`` when a decay is asked for: patch embedding, position table and
    ln_pre layer 0, block i layer i + 1), the sampling offsets and reference points at 0.1, the rest 1."""
    if name.startswith("backbone."):
        f = lr_backbone / lr
        if layer_decay != 1.0:
            layer = num_layers + 1
            if any(k in name for k in (".positional_embedding", ".conv1", ".ln_pre", ".class_embedding")):
                layer = 0
            elif ".resblocks." in name:
                layer = int(name.split(".resblocks.")[1].split(".")[0]) + 1
            f *= layer_decay ** (num_layers + 1 - layer)
        return f
    if any(k in name for k in LINEAR_PROJ):
        return 0.1
    return 1.0


def clipped_adamw(params, lr: float, weight_decay: float = 1e-4, betas=(0.9, 0.999), max_norm: float = 0.1):
    """AdamW whose ``step`` first clips the gradients' total L2 norm to ``max_norm`` (the released
    ``--clip_max_norm 0.1``), built with Detectron2's own optimizer-with-clipping generator, so that any trainer
    (ours, Detectron2's ``lazyconfig_train_net.py``) clips."""
    from detectron2.solver.build import _generate_optimizer_class_with_gradient_clipping

    def clip(p):
        torch.nn.utils.clip_grad_norm_(p, max_norm)

    cls = _generate_optimizer_class_with_gradient_clipping(torch.optim.AdamW, global_clipper=clip)
    return cls(params, lr=lr, weight_decay=weight_decay, betas=tuple(betas))


def step_schedule(epochs: int, lr_drop: int, images: int, batch: int):
    """(max_iter, lr_multiplier): ``epochs`` over ``images`` at ``batch`` images an iteration, x0.1 after ``lr_drop``
    epochs, no warm-up (the released StepLR)."""
    from fvcore.common.param_scheduler import MultiStepParamScheduler

    if not 0 < lr_drop <= epochs:
        raise PEDenseError(f"lr_drop={lr_drop} must be in 1..epochs={epochs}")
    per_epoch = max(1, images // batch)
    max_iter = epochs * per_epoch
    milestones = [lr_drop * per_epoch] if lr_drop < epochs else []
    return max_iter, L(MultiStepParamScheduler)(values=[1.0, 0.1][: len(milestones) + 1], milestones=milestones,
                                               num_updates=max_iter)


def step_milestones(max_iter: int, epochs: int = 12, lr_drop: int = 10) -> List[int]:
    """The released StepLR's drop (``lr_drop`` of ``epochs``: 10 of 12) as an iteration of a run of ``max_iter``
    (runs of any length: the custom-data configs)."""
    if max_iter < 2:
        raise PEDenseError(f"train.max_iter={max_iter}: the step schedule needs at least 2 iterations")
    return [max(1, min(max_iter - 1, max_iter * lr_drop // epochs))]
