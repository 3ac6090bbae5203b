# A text-to-patch projection for PE-Spatial-B16-512 (Talk2DINO's idea, pe_dense.projection): PE-Core-L14-336's text
# embeddings mapped linearly into PE-Spatial-B's last-block features, both towers frozen, from COCO Captions 2017.
#   pe-dense features data/coco/train2017 --model PE-Spatial-B16-512 --checkpoint PE-Spatial-B16-512.pt \
#       --size 448 --save feats/coco_train2017_pe-spatial-b
#   pe-dense text-projection --config configs/text_projection/pe-spatial-b_coco-captions.py
#   pe-dense segment photo.jpg --classes "sky,road,car" --method projection \
#       --projection projections/pe-spatial-b_coco-captions.safetensors --model PE-Core-L14-336 \
#       --checkpoint PE-Core-L14-336.pt --spatial-checkpoint PE-Spatial-B16-512.pt
# Any key can be overridden on the command line (--epochs 10, --lr 5e-4, ...).
projection = dict(
    features="feats/coco_train2017_pe-spatial-b",
    captions="data/coco/annotations/captions_train2017.json",
    model="PE-Core-L14-336",
    checkpoint="PE-Core-L14-336.pt",
    out="projections/pe-spatial-b_coco-captions.safetensors",
    prompt="{}",
    epochs=5,
    lr=1e-3,
    batch_size=256,
    temperature=0.07,
    pool_temperature=0.1,
    weight_decay=0.0,
    seed=0,
)
