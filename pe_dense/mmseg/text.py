"""``PETextSegmentor``: training-free segmentation by the dataset's class names (PE-Core as CLIP), for MMSeg's own
``tools/test.py``: ``python tools/test.py configs/mmseg/zero-shot/CONFIG.py PE-Core-L14-336.pt``.

The checkpoint given to the test tool is the PE-Core CLIP file itself (the released layout or OpenCLIP's): it loads
into the segmentor's CLIP model whole (or the run stops naming the keys), and the class embeddings are computed from
it at the first test batch. Class names: ``classes="ADE20KDataset"`` reads that registered dataset's
``METAINFO["classes"]`` (or give a list). ``background=P``: the first class is the background (Pascal VOC's and
Context-60's ``background``), not prompted: a pixel whose best probability over the other classes is under ``P`` is
labelled 0. Windows, blending and the flip come from ``test_cfg`` as for ``PEEncoderDecoder``.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
from mmseg.models.segmentors.base import BaseSegmentor
from mmseg.registry import MODELS

from ..errors import PEDenseError
from .segmentors import _Windows


def dataset_classes(classes: Union[str, Sequence[str]]):
    """Class names from a registered MMSeg dataset's metainfo (``"ADE20KDataset"``) or as given."""
    if isinstance(classes, str):
        from mmseg.registry import DATASETS

        try:
            cls = DATASETS.get(classes)
        except (RuntimeError, KeyError):  # not a registered name (mmengine then tries it as an import path)
            cls = None
        if cls is None or "classes" not in getattr(cls, "METAINFO", {}):
            from ..clip import parse_classes

            return parse_classes(classes)
        return list(cls.METAINFO["classes"])
    return list(classes)


@MODELS.register_module()
class PETextSegmentor(_Windows, BaseSegmentor):
    """Segmentation by class names with PE-Core (see the module). ``clip``: ``dict(model_name=..., checkpoint=None)``
    (weights usually come from the test tool's checkpoint argument); ``method``: a ``DENSE_METHODS`` entry;
    ``proxy``: ``dict(model_name=..., checkpoint=...)`` for ``method="proxy"``; ``method_args``: sigma / beta /
    gamma."""

    MODES = ("whole", "slide")

    def __init__(self, clip: dict, classes: Union[str, Sequence[str]], method: str = "value",
                 proxy: Optional[dict] = None, prompts: str = "imagenet80", background: Optional[float] = None,
                 method_args: Optional[dict] = None, data_preprocessor=None, test_cfg=None, train_cfg=None,
                 init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        from ..segment import build_segmenter

        names = dataset_classes(classes)
        self.class_names = names
        self.background = background
        if background is not None:
            if not 0 < background < 1:
                raise PEDenseError(f"background={background}: a probability in (0, 1)")
            names = names[1:]  # the first class is the background: labelled by the threshold, not prompted
        proxy = dict(proxy or {})
        self.segmenter, _ = build_segmenter(names, clip["model_name"], clip.get("checkpoint"), method,
                                            proxy.get("model_name"), proxy.get("checkpoint"), prompts, "cpu",
                                            **(method_args or {}))
        self.test_cfg = test_cfg or dict(mode="whole")
        self.align_corners = False

    def load_clip_file(self, state_dict: dict):
        """The PE-Core CLIP weights (released or OpenCLIP layout) into the CLIP model, whole or refused."""
        from ..clip import load_clip

        load_clip(self.segmenter.clip, state_dict)
        self.segmenter.reset_text()

    def extract_feat(self, inputs):
        raise PEDenseError("PETextSegmentor has no feature stage of its own: it segments by class names")

    def encode_decode(self, inputs: torch.Tensor, batch_img_metas):
        logits = self.segmenter(inputs)
        if self.background is None:
            return logits
        # argmax of [log P, log softmax] is the background exactly where every class's probability is under P
        logp = logits.log_softmax(1)
        return torch.cat([logp.new_full(logp[:, :1].shape, math.log(self.background)), logp], 1)

    def loss(self, inputs, data_samples):
        raise PEDenseError("PETextSegmentor is training-free: evaluate it with tools/test.py CONFIG PE_CORE_FILE")

    def predict(self, inputs, data_samples=None):
        if data_samples is not None:
            metas = [s.metainfo for s in data_samples]
        else:
            metas = [dict(ori_shape=inputs.shape[2:], img_shape=inputs.shape[2:], pad_shape=inputs.shape[2:],
                          padding_size=[0, 0, 0, 0])] * inputs.shape[0]
        return self.postprocess_result(self._run(inputs, metas), data_samples)

    def _forward(self, inputs, data_samples=None):
        return self.encode_decode(inputs, None)
