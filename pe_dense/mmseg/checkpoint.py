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
"""
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


def allow_mmengine_checkpoints():
    import numpy as np
    from mmengine.runner.checkpoint import CheckpointLoader

    CheckpointLoader.register_scheme(prefixes="", loader=load_from_local_safe, force=True)
    from mmengine.logging.history_buffer import HistoryBuffer

    replace(HistoryBuffer, "__getstate__", _plain_getstate, ("self",), MMENGINE)
    core = getattr(np, "_core", None) or np.core
    dtypes = [type(np.dtype(t)) for t in ("float64", "float32", "float16", "int64", "int32", "uint8", "bool")]
    torch.serialization.add_safe_globals(
        [HistoryBuffer, np.ndarray, np.dtype, core.multiarray._reconstruct, core.multiarray.scalar] + dtypes)
