"""mmengine 0.10.7 calls ``torch.load`` without ``weights_only``; torch >= 2.6 then loads with ``weights_only=True``
and refuses mmengine's own checkpoints (needed for ``resume``).

Two parts, nothing unpickled blindly:
- what mmengine saves is made plain: ``HistoryBuffer`` pickled its default statistics methods as
  ``getattr(HistoryBuffer, "min")`` (allowing ``getattr`` would open the unpickler to arbitrary attribute access);
  they are now left out of the saved state (``__setstate__`` restores them), only custom ones are kept;
- exactly the classes these files hold are allow-listed: ``HistoryBuffer`` and numpy arrays / dtypes / scalars.
Checkpoints written by an unpatched mmengine still fail to load (torch names the ``getattr`` global): re-save
them from a trusted environment, or resume from a checkpoint written with pe_dense imported.

mmengine's loader of local files is replaced by ``pe_dense.checkpoint.safe_load`` (the same ``weights_only=True``
read, plus safetensors and numpy-only ``.pkl``), so that a file carrying code is refused with a message that says
so, for ``resume``, ``load_from`` and ``init_cfg`` alike.

And a model with a PE tower (``PETower``) loads a whole-model checkpoint (``load_from``, ``resume``, a model-level
``init_cfg``, mmseg's ``init_model``) with its tower whole, or the run stops there naming the keys
(``pe_dense.detector_checkpoint.check_backbone``), instead of mmengine's warning and a tower at random; heads left
out on purpose (another dataset's classes) are logged by name. Inside ``whole_checkpoints()`` (``pe-dense predict``)
every tensor of the model must come from the file.
"""
import contextlib
import re

import torch

from ..patches import MMENGINE, replace

_DEFAULT_STATS = ("min", "max", "current", "mean")


def _plain_getstate(self) -> dict:
    state = dict(self.__dict__)
    state.pop("statistics_methods", None)
    custom = {k: v for k, v in self._statistics_methods.items() if k not in _DEFAULT_STATS}
    if custom:
        state["statistics_methods"] = custom
    return state


def load_from_local_safe(filename, map_location):
    import os.path as osp

    from ..checkpoint import safe_load

    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f"{filename} can not be found.")
    return safe_load(filename, map_location=map_location)


_WHOLE = [False]


@contextlib.contextmanager
def whole_checkpoints():
    """Within it, a checkpoint loaded into a model with a PE tower must hold every tensor of the model."""
    _WHOLE.append(True)
    try:
        yield
    finally:
        _WHOLE.pop()


def _unwrapped(model):
    """The model inside mmengine's wrappers (DDP) and a TTA model."""
    from mmengine.model import BaseTTAModel, is_model_wrapper

    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    return model


def _tower_prefix(model):
    from .models import PETower

    model = _unwrapped(model)
    for name, module in model.named_modules():
        if isinstance(module, PETower):
            return model, f"{name}.vit." if name else "vit."
    return model, None


def _text_segmentor(model):
    from .text import PETextSegmentor

    model = _unwrapped(model)
    return model if isinstance(model, PETextSegmentor) else None


def _checked_load_checkpoint_to_model(model, checkpoint, strict=False, logger=None,
                                      revise_keys=[(r"^module\.", "")]):  # noqa: B006 (mmengine's signature)
    """mmengine's ``_load_checkpoint_to_model``, after ``check_backbone`` for a model with a PE tower; a PE-Core CLIP
    file into a ``PETextSegmentor`` (its weights come from the test tool's checkpoint argument) goes to its CLIP model,
    whole or refused."""
    text = _text_segmentor(model)
    if text is not None:
        sd = checkpoint.get("state_dict", checkpoint)
        for p, r in revise_keys:
            sd = {re.sub(p, r, k): v for k, v in sd.items()}
        if any(k.startswith("segmenter.") for k in sd):  # the segmentor's own state dict (e.g. saved by a runner)
            return _checked_load_checkpoint_to_model.__pe_dense_replaces__(model, checkpoint, strict, logger,
                                                                             revise_keys)
        text.load_clip_file({k: v for k, v in sd.items() if isinstance(v, torch.Tensor)})
        return checkpoint
    inner, prefix = _tower_prefix(model)
    if prefix is not None:
        from mmengine.logging import print_log

        from ..detector_checkpoint import check_backbone
        from ..io import listed

        sd = checkpoint.get("state_dict", checkpoint)
        for p, r in revise_keys:
            sd = {re.sub(p, r, k): v for k, v in sd.items()}
        sd = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
        left, _ = check_backbone(sd, inner.state_dict(), prefix, whole=_WHOLE[-1], expected=(
            "PE tower weights alone go to model.backbone.pretrained=FILE (or init_cfg=dict(type='Pretrained', "
            "checkpoint=FILE) on the backbone), not to load_from"))
        if left:
            print_log(f"[pe_dense] partial load: {len(left)} tensor(s) of the model keep their initialization: "
                      + listed(left, 6),
                      logger=logger, level=30)  # where mmengine writes its own missing-keys message
    return _checked_load_checkpoint_to_model.__pe_dense_replaces__(model, checkpoint, strict, logger, revise_keys)


def allow_mmengine_checkpoints():
    import numpy as np
    from mmengine.runner.checkpoint import CheckpointLoader

    CheckpointLoader.register_scheme(prefixes="", loader=load_from_local_safe, force=True)
    import mmengine.runner.checkpoint as mmengine_checkpoint
    import mmengine.runner.runner as mmengine_runner

    for owner in (mmengine_checkpoint, mmengine_runner):  # the runner imported the function by name
        replace(owner, "_load_checkpoint_to_model", _checked_load_checkpoint_to_model,
                ("model", "checkpoint", "strict", "logger", "revise_keys"), MMENGINE)
    from mmengine.logging.history_buffer import HistoryBuffer

    replace(HistoryBuffer, "__getstate__", _plain_getstate, ("self",), MMENGINE)
    core = getattr(np, "_core", None) or np.core
    dtypes = [type(np.dtype(t)) for t in ("float64", "float32", "float16", "int64", "int32", "uint8", "bool")]
    torch.serialization.add_safe_globals(
        [HistoryBuffer, np.ndarray, np.dtype, core.multiarray._reconstruct, core.multiarray.scalar] + dtypes)
