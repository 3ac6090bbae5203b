"""mmengine's ``pytorch`` launcher on machines without GPUs.

mmengine 0.10.7 assumes a GPU per process: ``init_dist`` calls ``torch.cuda.set_device`` (``RuntimeError: Found no
NVIDIA driver``) and the Runner wraps the model in DDP with ``device_ids=[LOCAL_RANK]``, which a CPU module refuses.
When CUDA is unavailable, and only then, these two steps use gloo and no ``device_ids`` (SyncBN layers, which only
run on GPUs, become BatchNorm with a warning). With CUDA nothing changes. Installed on ``import pe_dense.mmseg``, so
``torchrun ... --launcher pytorch`` works on CPUs with mmseg's own ``tools/train.py`` as with ours.
"""
import logging

import torch

from ..patches import MMENGINE, replace

logger = logging.getLogger(__name__)


def enable_cpu_distributed():
    import mmengine.dist.utils as dist_utils
    from mmengine.model import MMDistributedDataParallel

    def _init_dist_pytorch(backend, init_backend="torch", **kwargs):
        if torch.cuda.is_available() or init_backend != "torch":
            return init_pytorch(backend, init_backend=init_backend, **kwargs)
        torch.distributed.init_process_group(backend="gloo", **kwargs)  # RANK / WORLD_SIZE from torchrun's env

    def __init__(self, module, detect_anomalous_params=False, **kwargs):
        if not torch.cuda.is_available() and next(module.parameters()).device.type == "cpu":
            kwargs["device_ids"] = None
            from mmengine.model import revert_sync_batchnorm

            if any(isinstance(m, torch.nn.SyncBatchNorm) or "SyncBN" in type(m).__name__ for m in module.modules()):
                logger.warning("no GPU: SyncBN layers run as BatchNorm (per-process statistics) in CPU DDP")
                module = revert_sync_batchnorm(module)
        ddp_init(self, module=module, detect_anomalous_params=detect_anomalous_params, **kwargs)

    init_pytorch = replace(dist_utils, "_init_dist_pytorch", _init_dist_pytorch, ("backend", "init_backend"), MMENGINE)
    ddp_init = replace(MMDistributedDataParallel, "__init__", __init__, ("self", "module", "detect_anomalous_params"),
                       MMENGINE)
