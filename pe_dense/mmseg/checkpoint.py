"""mmengine 0.10.7 calls ``torch.load`` without ``weights_only``; torch >= 2.6 then refuses its checkpoints (the
message hub's ``HistoryBuffer``, numpy scalars and arrays). Exactly those classes are allow-listed for
``weights_only=True`` loads; nothing else is unpickled, and PE weights go through ``pe_dense.load_checkpoint``."""
import torch


def allow_mmengine_checkpoints():
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer

    allowed = [HistoryBuffer, np.ndarray, np.dtype, np.core.multiarray._reconstruct, np.core.multiarray.scalar]
    allowed += [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool", "uint8")]
    torch.serialization.add_safe_globals(allowed)
