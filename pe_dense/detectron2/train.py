"""Helpers of ``tools/train_net.py``: weight initialization, safe checkpoint loading, pictures of predictions."""
from __future__ import annotations

import logging
import os

import numpy as np
import torch

from ..checkpoint import read_state_dict, resolve
from ..checkpoint import load_checkpoint as load_pe

logger = logging.getLogger("detectron2")


def allow_detectron2_checkpoints():
    """Let ``torch.load(weights_only=True)`` (the default since torch 2.6) read Detectron2's own checkpoints.

    Their optimizer state holds LazyConfig values (``betas`` as an omegaconf ``ListConfig``): exactly those
    omegaconf classes are allow-listed; nothing else is unpickled.
    """
    import typing
    from collections import defaultdict

    from omegaconf import ListConfig
    from omegaconf.base import ContainerMetadata, Metadata
    from omegaconf.nodes import AnyNode

    torch.serialization.add_safe_globals([ListConfig, ContainerMetadata, Metadata, AnyNode, typing.Any,
                                          defaultdict, dict, list, int])


def create_ddp_model(model, *, fp16_compression: bool = False, **kwargs):
    """Detectron2's ``create_ddp_model``, also for CPU processes (gloo): the model is wrapped without ``device_ids``
    when it lives on the CPU (Detectron2 passes the local rank, which only a GPU module accepts), and fp16 gradient
    compression, a GPU-communication saving, is left off there."""
    from detectron2.engine.defaults import create_ddp_model as d2_create_ddp_model

    if next(model.parameters()).device.type == "cpu":
        kwargs.setdefault("device_ids", None)
        fp16_compression = False
    return d2_create_ddp_model(model, fp16_compression=fp16_compression, **kwargs)


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


def init_weights(model, checkpointer, path: str):
    """``path``: empty (random init), a Detectron2 checkpoint of the whole model, or PE weights for the backbone."""
    if not path:
        logger.info("train.init_checkpoint is empty: the model starts from random initialization")
        return
    local = resolve(path)
    sd = read_state_dict(local)
    if any(k.startswith(("backbone.fpn.", "roi_heads.", "proposal_generator.")) for k in sd):
        logger.info(f"loading the Detectron2 checkpoint {local}")
        checkpointer.load(local)
        return
    net = _unwrap(model).backbone.net
    load_pe(net, sd)
    logger.info(f"loaded PE weights {path} into the backbone ({net.name}, patch {net.patch_size}, "
                f"position table {net.pos_grid}x{net.pos_grid}, {net.pos_embed_mode})")


@torch.no_grad()
def visualize(cfg, model, out_dir: str, num_images: int = 4, score_thresh: float = 0.5):
    """Predictions on the first test images, drawn by Detectron2's ``Visualizer``, written as PNGs."""
    from detectron2.config import instantiate
    from detectron2.data import MetadataCatalog
    from detectron2.data.detection_utils import read_image
    from detectron2.utils.visualizer import Visualizer

    os.makedirs(out_dir, exist_ok=True)
    names = cfg.dataloader.test.dataset.names
    meta = MetadataCatalog.get(names if isinstance(names, str) else names[0])
    loader = instantiate(cfg.dataloader.test)
    was = model.training
    model.eval()
    written = 0
    for batch in loader:
        for inp, out in zip(batch, model(batch)):
            img = read_image(inp["file_name"], format="RGB")
            inst = out["instances"].to("cpu")
            inst = inst[inst.scores >= score_thresh]
            vis = Visualizer(img, meta).draw_instance_predictions(inst).get_image()
            name = os.path.splitext(os.path.basename(inp["file_name"]))[0]
            from PIL import Image

            Image.fromarray(np.asarray(vis)).save(os.path.join(out_dir, f"{name}.png"))
            written += 1
            if written >= num_images:
                model.train(was)
                logger.info(f"wrote {written} prediction pictures to {out_dir}")
                return
    model.train(was)
