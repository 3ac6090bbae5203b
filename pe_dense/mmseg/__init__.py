"""MMSegmentation adapter. Configs enable it with
``custom_imports = dict(imports=["pe_dense.mmseg"], allow_failed_imports=False)``.

Registers into ``mmseg.registry.MODELS``: ``PETower`` (also as ``PEBackbone``, its former name), the segmentors
``PEEncoderDecoder`` and ``PEDepthEstimator`` (blended sliding windows, flip averaging), ``PETextSegmentor``
(training-free segmentation by the dataset's class names with PE-Core), ``PEDPTHead``,
``PELinearBinsHead``, ``PELinearHead``, the losses ``PESigLoss``, ``PEGradientLoss``; into mmengine's
``OPTIM_WRAPPER_CONSTRUCTORS``: ``PELayerDecayOptimWrapperConstructor``; into
``mmseg.registry.DATASETS``: ``PEShapesSegDataset``, ``PENYUPlanesDataset`` (the embedded defaults),
``PEDepthDataset`` (mmseg's NYUDataset checking that depth maps are 16-bit), ``PEFolderSegDataset`` and
``PEFolderDepthDataset`` (your own folders); into ``HOOKS``: ``PEProgressHook``; into ``TRANSFORMS``:
``PELoadDepthAnnotation`` (16-bit PNG or .npy); into
``METRICS``: ``PEDepthMetric`` (adds the KITTI Garg crop). Importing it also lets
``torch.load(weights_only=True)`` read mmengine's own checkpoints (for ``resume``), see ``checkpoint.py``, and lets
mmengine's ``pytorch`` launcher run on CPU-only machines (gloo), see ``dist.py``.
"""
from .checkpoint import allow_mmengine_checkpoints
from .datasets import (
    PEDepthDataset,
    PEFolderDepthDataset,
    PEFolderSegDataset,
    PELoadDepthAnnotation,
    PENYUPlanesDataset,
    PEShapesSegDataset,
)
from .dist import enable_cpu_distributed
from .heads import PEDPTHead, PELinearBinsHead, PELinearHead
from .hooks import PEProgressHook
from .losses import PEGradientLoss, PESigLoss
from .metrics import PEDepthMetric
from .models import PEBackbone, PETower
from .optim import PELayerDecayOptimWrapperConstructor
from .segmentors import PEDepthEstimator, PEEncoderDecoder
from .text import PETextSegmentor

allow_mmengine_checkpoints()
enable_cpu_distributed()

__all__ = ["PETower", "PEBackbone", "PEEncoderDecoder", "PEDepthEstimator", "PETextSegmentor",
           "PEDPTHead", "PELinearBinsHead", "PELinearHead", "PESigLoss",
           "PEGradientLoss", "PELayerDecayOptimWrapperConstructor", "PEShapesSegDataset", "PENYUPlanesDataset",
           "PEDepthDataset", "PEDepthMetric", "PEFolderSegDataset", "PEFolderDepthDataset", "PELoadDepthAnnotation",
           "PEProgressHook",
           "allow_mmengine_checkpoints"]
