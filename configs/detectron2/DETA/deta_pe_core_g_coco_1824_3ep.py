"""PE-Core-G DETA, stage 4 of the G recipe with the PE-Core-G tower (its image-level heads dropped): the same four
stages (set ``model.backbone.model_name = "PE-Core-G14-448"`` in each, as here); nothing released to compare with."""
from .deta_pe_spatial_g_coco_1824_3ep import dataloader, lr_multiplier, model, optimizer, train, tta  # noqa: F401

model.backbone.model_name = "PE-Core-G14-448"
train.output_dir = "output/deta_pe_core_g_coco_1824"
