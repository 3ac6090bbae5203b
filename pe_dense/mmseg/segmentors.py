"""MMSeg's segmentor and depth estimator with blended sliding windows and flip averaging
(``pe_dense.modeling.windows``), selected in ``test_cfg``:

- ``mode``: ``"whole"``, ``"slide"`` (and ``"slide_flip"`` for depth, as mmseg names it);
- ``blend``: ``"mean"`` (MMSeg's equal weights, the default) or ``"ramp"`` (overlapping windows crossfade);
- ``flip``: also average the left-right mirrored prediction (any mode).

``PEDepthEstimator`` also runs ``mode="slide"`` as slide: mmseg 1.2.2's ``DepthEstimator.inference`` falls through to
whole inference for it. The window outputs are the heads' own (logits, metres), combined before mmseg's
post-processing resizes them to the image.
"""
from __future__ import annotations

from mmseg.models.segmentors import DepthEstimator, EncoderDecoder
from mmseg.registry import MODELS

from ..errors import PEDenseError
from ..modeling.windows import check_windows, flip_average, sliding_bands, sliding_window

DEPTH_MODELS = ("DepthEstimator", "PEDepthEstimator")


def is_depth(model_cfg) -> bool:
    """Whether a config's ``model`` estimates depth (mmseg's ``DepthEstimator`` or ours)."""
    return model_cfg.get("type") in DEPTH_MODELS


class _Windows:
    progress = False  # a progress bar over windows (pe-dense predict turns it on)

    def _decode(self, batch_img_metas):
        def fn(crop):
            for m in batch_img_metas:
                m["img_shape"] = crop.shape[2:]
            return self.encode_decode(crop, batch_img_metas)
        return fn

    def _windows(self):
        crop, stride = self.test_cfg.crop_size, self.test_cfg.stride
        blend = self.test_cfg.get("blend", "mean")
        check_windows(crop, stride, blend)
        return crop, stride, blend

    def _slide(self, inputs, batch_img_metas, flip):
        return sliding_window(self._decode(batch_img_metas), inputs, *self._windows(), flip, self.progress)

    def _whole(self, inputs, batch_img_metas, flip):
        fn = self._decode(batch_img_metas)
        return flip_average(fn, inputs) if flip else fn(inputs)

    def _mode(self):
        mode = self.test_cfg.get("mode", "whole")
        if mode not in self.MODES:
            raise PEDenseError(f"test_cfg mode={mode!r}: one of {', '.join(self.MODES)}")
        return mode, bool(self.test_cfg.get("flip", False)) or mode == "slide_flip"

    def _run(self, inputs, batch_img_metas):
        mode, flip = self._mode()
        if mode == "whole":
            return self._whole(inputs, batch_img_metas, flip)
        return self._slide(inputs, batch_img_metas, flip)

    def inference_bands(self, crop_of, size, batch_img_metas):
        """``inference`` as a stream, for images of any size: ``crop_of(y, x, h, w)`` gives the preprocessed input
        there (windows are made when needed); yields ``(y0, band (N, K, rows, W))`` in order, one band in whole
        mode, a band per row of windows in slide mode (``pe_dense.modeling.windows.sliding_bands``)."""
        mode, flip = self._mode()
        if mode == "whole":
            yield 0, self._whole(crop_of(0, 0, *size), batch_img_metas, flip)
            return
        yield from sliding_bands(self._decode(batch_img_metas), crop_of, size, *self._windows(), flip, self.progress)


@MODELS.register_module()
class PEEncoderDecoder(_Windows, EncoderDecoder):
    """mmseg's ``EncoderDecoder`` with ``test_cfg`` ``blend`` and ``flip`` (see the module)."""

    MODES = ("whole", "slide")

    def inference(self, inputs, batch_img_metas):
        return self._run(inputs, batch_img_metas)


@MODELS.register_module()
class PEDepthEstimator(_Windows, DepthEstimator):
    """mmseg's ``DepthEstimator`` with ``test_cfg`` ``blend`` and ``flip``, and ``mode="slide"`` run as slide."""

    MODES = ("whole", "slide", "slide_flip")

    def inference(self, inputs, batch_img_metas):
        return self._run(inputs, batch_img_metas)
