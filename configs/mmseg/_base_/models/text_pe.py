# Training-free segmentation by class names with PE-Core as CLIP (pe_dense.mmseg.text.PETextSegmentor): evaluated by
# MMSeg's own tools/test.py with the PE-Core CLIP file as its checkpoint argument. Inputs as PE expects (mean/std
# 127.5, RGB); sliding windows at the CLIP tower's pretraining size, stride 2/3 of it, averaged as MMSeg does.
data_preprocessor = dict(type="SegDataPreProcessor", mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5],
                         bgr_to_rgb=True, pad_val=0, seg_pad_val=255)
model = dict(
    type="PETextSegmentor",
    data_preprocessor=data_preprocessor,
    clip=dict(model_name="PE-Core-L14-336", checkpoint=None),  # the weights: tools/test.py CONFIG PE-Core-L14-336.pt
    classes="ADE20KDataset",  # a registered dataset's METAINFO["classes"], or a list of names
    method="value",  # value | clearclip | naclip | proxy (README: what each changes)
    proxy=None,  # method="proxy": dict(model_name="PE-Spatial-L14-448", checkpoint="PE-Spatial-L14-448.pt")
    method_args=dict(),  # naclip: sigma=5.0; proxy: beta=1.2, gamma=3.0
    prompts="imagenet80",  # CLIP's 80 ImageNet templates
    background=None,  # a probability: the first class is the background, labelled where no class reaches it
    test_cfg=dict(mode="slide", crop_size=(336, 336), stride=(224, 224)),
)
