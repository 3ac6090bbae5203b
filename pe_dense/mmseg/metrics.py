"""``PEDepthMetric``: mmseg's ``DepthMetric`` plus the Garg crop used on KITTI (Garg et al. 2016)."""
import torch
from mmseg.evaluation.metrics import DepthMetric
from mmseg.registry import METRICS

GARG_CROP = (0.40810811, 0.99189189, 0.03594771, 0.96405229)  # rows top/bottom, cols left/right, as fractions


@METRICS.register_module()
class PEDepthMetric(DepthMetric):
    """``crop_type``: None, ``"nyu_crop"`` (mmseg's) or ``"garg_crop"`` (KITTI Eigen split)."""

    def __init__(self, crop_type=None, **kwargs):
        garg = crop_type == "garg_crop"
        super().__init__(crop_type=None if garg else crop_type, **kwargs)
        self.garg = garg

    def _get_eval_mask(self, gt_depth: torch.Tensor):
        mask = super()._get_eval_mask(gt_depth)
        if self.garg:
            h, w = gt_depth.shape[-2:]
            top, bottom, left, right = GARG_CROP
            crop = torch.zeros_like(mask)
            crop[..., int(top * h):int(bottom * h), int(left * w):int(right * w)] = True
            mask = mask & crop
        return mask
