# COCO-Stuff 164k val (171 classes), training-free: PE-Core-L14-336 as CLIP, each class prompted with CLIP's 80
# ImageNet templates, images resized to a short side of 336 (the tower's pretraining size), sliding windows of 336 at
# stride 224. No training:
#   python tools/test.py configs/mmseg/zero-shot/text_pe-core-l_coco-stuff171.py PE-Core-L14-336.pt
# (MMSeg's own test tool; the checkpoint argument is the PE-Core CLIP file, released or OpenCLIP layout). Another
# method or size: --cfg-options model.method=clearclip model.clip.model_name=PE-Core-G14-448 ...
_base_ = ["../_base_/models/text_pe.py", "mmseg::_base_/datasets/coco-stuff164k.py", "../_base_/pe_runtime.py"]
model = dict(classes="COCOStuffDataset", background=None)
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=(2048, 336), keep_ratio=True),
    dict(type="LoadAnnotations"),
    dict(type="PackSegInputs"),
]
test_dataloader = dict(batch_size=1, num_workers=2, dataset=dict(pipeline=test_pipeline))
# no training and no validation loop: only the test loop runs
train_dataloader = train_cfg = optim_wrapper = None
val_dataloader = val_cfg = val_evaluator = None
test_cfg = dict(type="TestLoop")
