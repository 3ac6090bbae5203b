"""Helpers of ``tools/train_net.py``: weight initialization, safe checkpoint loading, pictures of predictions."""
from __future__ import annotations

import glob
import logging
import os
import re

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer

from ..checkpoint import CheckpointError, RefusedFileError, read_state_dict, resolve, safe_load
from ..checkpoint import load_checkpoint as load_pe
from ..detector_checkpoint import fit_deta, fit_detector
from ..errors import PEDenseError
from ..optim import unwrap_model
from ..patches import DETECTRON2, replace
from ..specs import SPECS

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


def _safe_load_file(self, filename):
    """``DetectionCheckpointer._load_file`` without running code (``pe_dense.checkpoint.safe_load``): Detectron2's
    own unpickles ``.pkl`` files with ``pickle.load``, so a crafted file named by ``last_checkpoint`` (or passed as
    weights) would run its payload. Model-zoo ``.pkl`` files (numpy arrays) still load, with Detectron2's handling
    of their formats."""
    data = safe_load(filename)
    if filename.endswith(".pkl"):
        if "model" in data and "__author__" in data:
            return data
        if "blobs" in data:  # Caffe2 / Detectron1 model zoo, as Detectron2 reads it
            data = data["blobs"]
        data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
        return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}
    if filename.endswith(".pyth"):
        return {"model": {k: v for k, v in data["model_state"].items() if not k.endswith("num_batches_tracked")},
                "__author__": "pycls", "matching_heuristics": True}
    return data if "model" in data else {"model": data}


def _pe_backbone(model):
    from .backbone import PEViTDetBackbone

    backbone = getattr(unwrap_model(model), "backbone", None)
    return backbone if isinstance(backbone, PEViTDetBackbone) else None


def _deta(model):
    from .deta import DETA

    m = unwrap_model(model)
    return m if isinstance(m, DETA) else None


def _checked_load_model(self, checkpoint):
    """``DetectionCheckpointer._load_model`` for models with a PE backbone: the released layout
    (perception_models' ``PEv1_det``) mapped onto ours, then the tower loaded whole and the pyramid whole or not at
    all, or the run stops here (``CheckpointError`` naming the keys) instead of going on at random initialization
    with Detectron2's warning. With ``self.whole`` (evaluation, prediction) every tensor of the model must come from
    the file. What is left at its initialization on purpose (heads of another dataset) is logged by name."""
    backbone = _pe_backbone(self.model)
    deta = _deta(self.model)
    if deta is not None:
        sd = {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in checkpoint["model"].items()}
        sd, notes = fit_deta(sd, deta.state_dict(), deta.backbone.net, deta.backbone.padding_constraints["square_size"],
                             deta.class_ids, deta.backbone.net.name, whole=getattr(self, "whole", False),
                             reinit=deta.reinit)
        for note in notes:
            (logger.warning if note.startswith("partial") else logger.info)(f"[pe_dense] {note}")
        checkpoint = dict(checkpoint, model=sd)
    elif backbone is not None:
        sd = {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in checkpoint["model"].items()}
        sd, notes = fit_detector(sd, self.model.state_dict(), backbone.fpn, backbone.padding_constraints[
            "square_size"], backbone.net.name, whole=getattr(self, "whole", False))
        for note in notes:
            (logger.warning if note.startswith("partial") else logger.info)(f"[pe_dense] {note}")
        checkpoint = dict(checkpoint, model=sd)
    return _checked_load_model.__pe_dense_replaces__(self, checkpoint)


def harden_checkpointer():
    """Every ``DetectionCheckpointer`` (ours and Detectron2's tools') reads files through ``_safe_load_file`` and
    loads a model with a PE backbone through ``_checked_load_model``; Detectron2's own checkpoints stay readable
    (``allow_detectron2_checkpoints``)."""
    replace(DetectionCheckpointer, "_load_file", _safe_load_file, ("self", "filename"), DETECTRON2)
    replace(DetectionCheckpointer, "_load_model", _checked_load_model, ("self", "checkpoint"), DETECTRON2)
    allow_detectron2_checkpoints()


class SafeCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` (reading files safely, see ``harden_checkpointer``) with a resume that skips
    unreadable checkpoints."""

    _load_file = _safe_load_file

    def saved_checkpoints(self):
        """This run's checkpoints in ``save_dir``, newest first: ``last_checkpoint``'s file, then ``model_final``,
        then ``model_NNNNNNN.pth`` by iteration."""
        named = self.get_checkpoint_file() if self.has_checkpoint() else ""
        found = sorted(glob.glob(os.path.join(self.save_dir, "model_*.pth")),
                       key=lambda p: (p.endswith("model_final.pth"),
                                      int((re.findall(r"model_(\d+)\.pth$", p) or ["-1"])[0])), reverse=True)
        return ([named] if named else []) + [p for p in found if os.path.abspath(p) != os.path.abspath(named)]

    def resume(self) -> bool:
        """Loads the newest readable checkpoint with its trainer state; a truncated or unreadable one is skipped
        with a warning naming it (a file refused for carrying code stops the run). Returns False (and warns) when
        there is none."""
        for path in self.saved_checkpoints():
            try:
                self.load(path)
                return True
            except RefusedFileError:
                raise
            except (CheckpointError, FileNotFoundError) as e:
                self._parsed_url_during_load = None  # Detectron2's load leaves it set when reading fails
                logger.warning(f"--resume: skipping {path}: {e}")
        logger.warning(f"--resume: no readable checkpoint in {self.save_dir}: training starts from iteration 0")
        return False


def refuse_overwrite(output_dir: str, resume: bool):
    """Without ``--resume``, an output dir that holds checkpoints of an earlier run is refused (exit 2), as
    MMSeg's tool here does: nothing is overwritten."""
    if resume or not output_dir:
        return
    found = sorted(os.path.basename(p) for p in glob.glob(os.path.join(output_dir, "model_*.pth")))
    if os.path.exists(os.path.join(output_dir, "last_checkpoint")):
        found.append("last_checkpoint")
    if found:
        import sys

        print(f"error: {output_dir} holds checkpoints of an earlier run ({', '.join(found[:4])}"
              f"{' ...' if len(found) > 4 else ''}). Pass --resume to continue that run, or choose a new "
              f"train.output_dir=NEW_DIR; nothing was written.", file=sys.stderr)
        raise SystemExit(2)


def create_ddp_model(model, *, fp16_compression: bool = False, **kwargs):
    """Detectron2's ``create_ddp_model``, also for CPU processes (gloo): the model is wrapped without ``device_ids``
    when it lives on the CPU (Detectron2 passes the local rank, which only a GPU module accepts), and fp16 gradient
    compression, a GPU-communication saving, is left off there."""
    from detectron2.engine.defaults import create_ddp_model as d2_create_ddp_model

    if next(model.parameters()).device.type == "cpu":
        kwargs.setdefault("device_ids", None)
        fp16_compression = False
    return d2_create_ddp_model(model, fp16_compression=fp16_compression, **kwargs)


_AMP_PRECISIONS = {"float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
                   "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def amp_precision(cfg) -> torch.dtype | None:
    """The autocast dtype of ``cfg.train.amp``: None when AMP is off; ``train.amp.precision`` ("float16", the
    released recipes' and Detectron2's default, or "bfloat16") when it is on. A wrong value raises ``ValueError``
    naming the key and the values accepted, whether AMP is on or off."""
    amp = cfg.train.amp
    value = amp.get("precision", "float16")
    if isinstance(value, torch.dtype) and value in _AMP_PRECISIONS.values():
        dtype = value
    else:
        dtype = _AMP_PRECISIONS.get(str(value).lower().removeprefix("torch."))
    if dtype is None:  # checked also with AMP off: a typo should not wait for the day AMP is turned on
        raise PEDenseError(f"train.amp.precision={value!r} is not an autocast precision: use train.amp.precision="
                           f"float16 (Detectron2's AMPTrainer default, with loss scaling) or bfloat16")
    return dtype if amp.get("enabled", False) else None


def build_trainer(cfg, model, data_loader, optimizer):
    """Detectron2's own trainer for ``cfg.train``, as its ``lazyconfig_train_net.py`` picks it: ``AMPTrainer`` when
    ``train.amp.enabled`` (CUDA only: it asserts a GPU), else ``SimpleTrainer``. ``train.amp.precision`` selects
    the autocast dtype; bf16 has fp32's exponent range, so its gradients are not loss-scaled (the GradScaler is
    built disabled), while fp16 keeps Detectron2's dynamic loss scaling."""
    from detectron2.engine import AMPTrainer, SimpleTrainer

    dtype = amp_precision(cfg)
    if dtype is None:
        return SimpleTrainer(model, data_loader, optimizer)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    return AMPTrainer(model, data_loader, optimizer, grad_scaler=scaler, precision=dtype)


def _tower_only(path: str, why: str) -> CheckpointError:
    return CheckpointError(
        f"{why}: evaluation and prediction need a trained detector, a Detectron2 checkpoint of the whole model "
        f"(output/model_final.pth of a training run, or a released detector such as mask_rcnn_PEspatial_G_coco36ep.pth "
        f"from facebook/PE-Detection with its config); {path or 'nothing'} would leave the heads at random")


def init_weights(model, checkpointer, path: str, whole: bool = False):
    """``path``: empty (random init), a Detectron2 checkpoint of the whole model (ours or the released layout,
    checked by the checkpointer: see ``_checked_load_model``), or PE weights for the backbone. ``whole``: a trained
    detector is required (evaluation, prediction): every tensor of the model from the file, or ``CheckpointError``."""
    if not path:
        if whole:
            raise _tower_only(path, "train.init_checkpoint is empty")
        logger.info("train.init_checkpoint is empty: the model starts from random initialization")
        return
    if whole and not os.path.exists(os.path.expanduser(str(path))) and str(path).split("/")[-1] in SPECS:
        raise _tower_only(path, f"{path} names the released PE tower weights")  # refused before any download
    local = resolve(path)
    checkpointer.whole = whole
    if local.endswith(".pkl"):  # a Detectron2 / Caffe2 model-zoo file (numpy arrays), read safely
        logger.info(f"loading the Detectron2 checkpoint {local}")
        checkpointer.load(local)
        return
    sd = read_state_dict(local)
    if any(k.startswith(("backbone.", "roi_heads.", "proposal_generator.")) for k in sd):
        logger.info(f"loading the Detectron2 checkpoint {local}")
        checkpointer.load(local)
        return
    if whole:
        raise _tower_only(path, f"{path} holds PE tower weights")
    net = unwrap_model(model).backbone.net
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
