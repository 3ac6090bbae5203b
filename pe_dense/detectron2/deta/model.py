"""DETA in Detectron2: ``PEDETABackbone`` (the released ``PEv1_simpleFPN``: a PE tower and three levels) and
``DETA``, a meta-architecture that takes Detectron2's batched inputs and returns its losses / ``Instances``, built on
``pe_dense.modeling.deta.DETA`` (the head, with the released parameter names at the top level: ``transformer.*``,
``class_embed.*``, ``bbox_embed.*``, ``input_proj.*``) and ``DETACriterion``.

Images are normalized by ``pixel_mean`` / ``pixel_std`` (the released DETA_pe: ImageNet's, in RGB 0..255), padded
bottom/right to ``square_pad`` (the released model's RoPE tables are fixed to its image size, so it sees every image
padded to that square) and to the coarsest stride; the padding is the mask the transformer ignores.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.structures import Boxes, ImageList, Instances
from torchvision.ops import box_convert

from ...errors import PEDenseError
from ...factory import create_model
from ...modeling.deta import DETA as DETAHead
from ...modeling.deta import DETALevels
from .criterion import DETACriterion, nms_postprocess

IMAGENET_MEAN = [123.675, 116.28, 103.53]  # RGB, 0..255: torchvision's Normalize after ToTensor, as released
IMAGENET_STD = [58.395, 57.12, 57.375]


class PEDETABackbone(Backbone):
    """Args:
        model_name: a released tower (``pe_dense.list_models()``).
        vit: ``create_model`` overrides (patch_size, img_size, window_size, global_blocks, pos_embed, rope,
            rope_grid, drop_path_rate, act_checkpoint, ...).
        square_pad: inputs are padded to this square (0: to the batch's largest image).
    """

    def __init__(self, model_name: str = "PE-Spatial-T16-512", vit: Optional[Dict] = None, square_pad: int = 1024):
        super().__init__()
        self.levels = DETALevels(create_model(model_name, **dict(vit or {})))
        self._square_pad = square_pad
        self._out_features = ["p3", "p4", "p5"]

    @property
    def net(self):
        return self.levels.net

    @property
    def size_divisibility(self) -> int:
        return self.levels.strides[-1]

    @property
    def padding_constraints(self) -> Dict[str, int]:
        return {"size_divisibility": self.size_divisibility, "square_size": self._square_pad}

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return dict(zip(self._out_features, self.levels(x)))

    def output_shape(self):
        return {k: ShapeSpec(channels=c, stride=s)
                for k, c, s in zip(self._out_features, self.levels.channels, self.levels.strides)}


@BACKBONE_REGISTRY.register()
def build_pe_deta_backbone(cfg, input_shape=None):
    """yacs: ``MODEL.BACKBONE.NAME = "build_pe_deta_backbone"`` (the tower from ``MODEL.PE``, ``add_pe_config``)."""
    pe = cfg.MODEL.PE
    return PEDETABackbone(pe.NAME, vit=dict(patch_size=pe.PATCH_SIZE, window_size=pe.WINDOW_SIZE,
                                            global_blocks=list(pe.GLOBAL_BLOCKS), pos_embed=pe.POS_EMBED,
                                            rope=pe.ROPE, rope_grid=cfg.MODEL.DETA.ROPE_GRID,
                                            drop_path_rate=pe.DROP_PATH_RATE, act_checkpoint=pe.ACT_CHECKPOINT),
                          square_pad=pe.SQUARE_PAD)


def add_deta_config(cfg):
    """yacs keys for ``MODEL.META_ARCHITECTURE = "DETA"`` (``MODEL.DETA``, with ``add_pe_config``'s ``MODEL.PE`` for
    the tower and ``build_pe_deta_backbone``): the released DETA_pe's model, ImageNet mean/std in RGB. The LazyConfigs
    under ``configs/detectron2/DETA`` are the recipes; this is for yacs users."""
    from detectron2.config import CfgNode as CN

    from ..backbone import add_pe_config

    if "PE" not in cfg.MODEL:
        add_pe_config(cfg)
    cfg.MODEL.META_ARCHITECTURE = "DETA"
    cfg.MODEL.BACKBONE.NAME = "build_pe_deta_backbone"
    cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD, cfg.INPUT.FORMAT = list(IMAGENET_MEAN), list(IMAGENET_STD), "RGB"
    cfg.MODEL.DETA = CN(dict(NUM_CLASSES=80, NUM_QUERIES=900, HIDDEN_DIM=256, NHEADS=8, ENC_LAYERS=6, DEC_LAYERS=6,
                             DIM_FEEDFORWARD=2048, DROPOUT=0.0, NUM_FEATURE_LEVELS=5, TEST_TOPK=100, NMS_THRESH=0.7,
                             ROPE_GRID=16))
    return cfg


@META_ARCH_REGISTRY.register()
class DETA(DETAHead):
    """DETA (two-stage Deformable-DETR with box refinement, IoU assignment, NMS) over a ``PEDETABackbone``.

    Args:
        backbone: a ``PEDETABackbone``.
        num_classes: K (Detectron2's contiguous ids 0..K-1; the released files' 91 / 366 outputs indexed by category
            id are mapped at load time).
        num_queries: queries (the released: 900; 2000 with TTA); ``test_num_queries`` overrides it at test time.
        hidden_dim, nheads, enc_layers, dec_layers, dim_feedforward, dropout, num_feature_levels, enc_n_points,
            dec_n_points: the transformer (the released: 256, 8, 6, 6, 2048, 0.0, 5, 4, 4).
        criterion: ``DETACriterion`` keyword arguments (loss weights, focal alpha, top-k per ground truth).
        pixel_mean, pixel_std, input_format: Detectron2's image conventions.
        test_topk, nms_thresh, soft_nms: the post-processing (``nms_postprocess``).
        class_ids: the dataset's category id of each class (``dataset_class_ids``): a released file's class heads,
            one output per category id, are mapped through it at load time.
        reinit: prefixes of parameters a checkpoint does not set (left at their initialization, said by name): the
            class heads at a change of dataset (the released ``--finetune`` without ``--keep_class_embed``).
    """

    @configurable
    def __init__(self, *, backbone: PEDETABackbone, num_classes: int, num_queries: int = 900, hidden_dim: int = 256,
                 nheads: int = 8, enc_layers: int = 6, dec_layers: int = 6, dim_feedforward: int = 2048,
                 dropout: float = 0.0, num_feature_levels: int = 5, enc_n_points: int = 4, dec_n_points: int = 4,
                 criterion: Optional[Dict] = None, pixel_mean: Sequence[float] = IMAGENET_MEAN,
                 pixel_std: Sequence[float] = IMAGENET_STD, input_format: str = "RGB", test_topk: int = 100,
                 nms_thresh: float = 0.7, soft_nms: Optional[str] = None, test_num_queries: Optional[int] = None,
                 class_ids: Optional[Sequence[int]] = None, reinit: Sequence[str] = ()):
        if num_classes < 1:
            raise PEDenseError(f"DETA num_classes={num_classes}: set model.num_classes to the dataset's classes")
        if hidden_dim % 32:
            raise PEDenseError(f"DETA hidden_dim={hidden_dim}: GroupNorm(32) needs a multiple of 32")
        channels = [backbone.output_shape()[k].channels for k in backbone._out_features]
        if num_feature_levels < len(channels):
            raise PEDenseError(f"num_feature_levels={num_feature_levels} < the backbone's {len(channels)} levels")
        super().__init__(channels, num_classes, num_queries, hidden_dim, nheads, enc_layers, dec_layers,
                         dim_feedforward, dropout, num_feature_levels, enc_n_points, dec_n_points)
        self.backbone = backbone
        self.num_classes = num_classes
        self.criterion = DETACriterion(num_classes, num_queries, **dict(criterion or {}))
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)
        self.input_format = input_format
        self.test_topk, self.nms_thresh, self.soft_nms = test_topk, nms_thresh, soft_nms
        self.train_num_queries = num_queries
        self.class_ids = list(class_ids) if class_ids is not None else None
        self.reinit = tuple(reinit)
        self.test_num_queries = test_num_queries or num_queries

    @classmethod
    def from_config(cls, cfg):
        d = cfg.MODEL.DETA
        return dict(backbone=build_backbone(cfg), num_classes=d.NUM_CLASSES, num_queries=d.NUM_QUERIES,
                    hidden_dim=d.HIDDEN_DIM, nheads=d.NHEADS, enc_layers=d.ENC_LAYERS, dec_layers=d.DEC_LAYERS,
                    dim_feedforward=d.DIM_FEEDFORWARD, dropout=d.DROPOUT, num_feature_levels=d.NUM_FEATURE_LEVELS,
                    pixel_mean=cfg.MODEL.PIXEL_MEAN, pixel_std=cfg.MODEL.PIXEL_STD, input_format=cfg.INPUT.FORMAT,
                    test_topk=d.TEST_TOPK, nms_thresh=d.NMS_THRESH)

    @property
    def device(self):
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs: List[Dict]) -> ImageList:
        images = []
        for x in batched_inputs:
            img = x["image"].to(self.device)
            if self.input_format == "BGR":
                img = img.flip(0)
            images.append((img.float() - self.pixel_mean) / self.pixel_std)
        return ImageList.from_tensors(images, self.backbone.size_divisibility,
                                      padding_constraints=self.backbone.padding_constraints)

    @staticmethod
    def padding_mask(images: ImageList) -> torch.Tensor:
        N, _, H, W = images.tensor.shape
        mask = torch.ones(N, H, W, dtype=torch.bool, device=images.tensor.device)
        for i, (h, w) in enumerate(images.image_sizes):
            mask[i, :h, :w] = False
        return mask

    def _set_queries(self, n: int):
        self.num_queries = self.transformer.num_queries = n

    def raw_outputs(self, images: ImageList) -> Dict:
        """The head's outputs (``pred_logits``, ``pred_boxes`` normalized to each image's valid extent, ...) for a
        preprocessed batch."""
        if images.tensor.shape[-1] > self.backbone._square_pad > 0 or \
                images.tensor.shape[-2] > self.backbone._square_pad > 0:
            raise PEDenseError(
                f"DETA: an image of {tuple(images.tensor.shape[-2:])} px is larger than model.backbone.square_pad="
                f"{self.backbone._square_pad}: resize test images to at most that size (the test augmentation) or "
                f"raise square_pad")
        self._set_queries(self.train_num_queries if self.training else self.test_num_queries)
        feats = self.backbone(images.tensor)
        return super().forward([feats[k] for k in self.backbone._out_features], self.padding_mask(images))

    def forward(self, batched_inputs: List[Dict]):
        images = self.preprocess_image(batched_inputs)
        outputs = self.raw_outputs(images)
        if self.training:
            return self.criterion(outputs, self.targets(batched_inputs, images))
        return self.inference(outputs, batched_inputs, images)

    def targets(self, batched_inputs, images: ImageList) -> List[Dict[str, torch.Tensor]]:
        out = []
        for x, (h, w) in zip(batched_inputs, images.image_sizes):
            inst = x["instances"].to(self.device)
            scale = torch.tensor([w, h, w, h], dtype=torch.float32, device=self.device)
            boxes = box_convert(inst.gt_boxes.tensor / scale, "xyxy", "cxcywh")
            out.append({"labels": inst.gt_classes.long(), "boxes": boxes})
        return out

    def inference(self, outputs, batched_inputs, images: ImageList):
        sizes = [(x.get("height", h), x.get("width", w)) for x, (h, w) in zip(batched_inputs, images.image_sizes)]
        dets = nms_postprocess(outputs["pred_logits"].float(), outputs["pred_boxes"].float(), sizes,
                               self.test_topk, self.nms_thresh, soft_nms=self.soft_nms)
        results = []
        for d, size in zip(dets, sizes):
            inst = Instances(tuple(int(s) for s in size))
            inst.pred_boxes = Boxes(d["boxes"])
            inst.scores = d["scores"]
            inst.pred_classes = d["labels"]
            results.append({"instances": inst})
        return results


def dataset_class_ids(names) -> List[int]:
    """The category id of each contiguous class of a registered Detectron2 dataset (the first of ``names``), from
    its metadata's ``thing_dataset_id_to_contiguous_id`` (COCO-format sets have it once loaded or registered)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    name = names if isinstance(names, str) else list(names)[0]
    meta = MetadataCatalog.get(name)
    if not hasattr(meta, "thing_dataset_id_to_contiguous_id"):
        DatasetCatalog.get(name)  # COCO-format loaders fill the mapping in when they read the json
    mapping = meta.get("thing_dataset_id_to_contiguous_id", None)
    if mapping is None:
        raise PEDenseError(f"dataset {name!r} has no thing_dataset_id_to_contiguous_id in its metadata: set "
                           f"model.class_ids to the category id of each class (or None for heads of this dataset)")
    return [k for k, _ in sorted(mapping.items(), key=lambda kv: kv[1])]
