"""``pe-dense``: the command line. It builds the parser (one ``add_<command>_parser`` per command) and dispatches to
the function that does the work, which lives with its feature."""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from .errors import PEDenseError
from .io import default_device, int_list, positive, size_list

MODEL_OVERRIDES = ("patch_size", "img_size", "window_size", "pos_embed", "rope", "global_blocks")


def overrides(args) -> dict:
    """The tower's settings given on the command line (``--patch-size`` ...), as ``create_model`` keywords."""
    return {k: getattr(args, k) for k in MODEL_OVERRIDES if getattr(args, k, None) is not None}


def add_model_args(p, default="PE-Spatial-T16-512"):
    p.add_argument("--model", default=default, help="a name from `pe-dense list`")
    p.add_argument("--patch-size", type=int, dest="patch_size")
    p.add_argument("--img-size", type=int, dest="img_size", help="grid of the stored position table x patch")
    p.add_argument("--window-size", type=int, dest="window_size")
    p.add_argument("--global-blocks", type=int_list, dest="global_blocks", help="e.g. '2,5,8,11'")
    p.add_argument("--pos-embed", choices=["interpolate", "bicubic", "tile"], dest="pos_embed")
    p.add_argument("--rope", choices=["extrapolate", "interpolate"])


def add_list_parser(sub):
    from .analysis import print_models

    sub.add_parser("list", help="the released towers").set_defaults(func=lambda a: print_models())


def add_info_parser(sub):
    from .analysis import print_info

    q = sub.add_parser("info", help="parameters and FLOPs of a model")
    q.add_argument("name")
    q.add_argument("--size", type=positive(int), help="square input size for the FLOP count (default: native)")
    q.add_argument("--no-flops", action="store_true")
    add_model_args(q)
    q.set_defaults(func=lambda a: print_info(a.name, a.size, not a.no_flops, overrides(a)))


def size_or_native(s: str):
    """``--size``: a positive whole number, or ``native`` (the image's own size)."""
    return None if s == "native" else positive(int)(s)


def add_features_parser(sub):
    q = sub.add_parser("features", help="features of images (files, folders, globs) to disk, any size by tiles, at "
                                        "pixel resolution; or a PCA picture of one image's features")
    q.add_argument("inputs", nargs="*", default=["builtin:shapes"], help="image files, folders, globs, or "
                                                                          "builtin:shapes (default)")
    add_model_args(q)
    q.add_argument("--checkpoint", help="weights (file or hub id); default random init")
    q.add_argument("--block", type=int, default=-1, help="the tapped block (default: the last)")
    q.add_argument("--blocks", type=int_list, help="several taps from one forward, e.g. '5,11' (with --save)")
    q.add_argument("--size", type=size_or_native, default=448,
                   help="resize the short side to this (default 448), or 'native' (the image's own size)")
    q.add_argument("--max-side", type=positive(int), help="cap of the long side (default: 4 x --size)")
    q.add_argument("--save", help="folder for DIR/<name>.safetensors per image (features C x h x w, and metadata)")
    q.add_argument("--pca", action="store_true", help="with --save: also DIR/<name>_pca.png")
    q.add_argument("--fp32", action="store_true", help="save float32 (default float16: half the disk)")
    q.add_argument("--tile", type=positive(int), help="run in overlapping tiles of this many px (any image size)")
    q.add_argument("--overlap", type=int, default=0, help="tile overlap in px (a multiple of the patch)")
    q.add_argument("--blend", choices=["ramp", "mean"], default="ramp",
                   help="how tiles are combined where they overlap: weights falling to the tile edges (default), "
                        "or plain averaging")
    q.add_argument("--upsample", choices=["bilinear", "guided"], help="features at --stride px: bilinear, or "
                                                                      "guided by the image (joint bilateral)")
    q.add_argument("--stride", type=positive(int), help="with --upsample: output stride in px (default 1)")
    q.add_argument("--batch-size", type=positive(int), default=8, help="images of one size per forward")
    q.add_argument("--device", default=default_device())
    q.add_argument("--out", default="features_pca.png", help="without --save: the picture (image | PCA)")
    q.add_argument("--text", help='with --save and a PE-Core --model: per-class similarity maps instead of features '
                                  '(K x h x w cosines of each patch with each class; "a,b,c" or a .txt / .json file)')
    q.add_argument("--method", default="value", help="with --text: the dense method (see pe-dense segment)")
    q.add_argument("--templates", default="imagenet80", help="with --text: prompt templates (see pe-dense segment)")
    q.set_defaults(func=run_features)


def run_features(a):
    from .analysis import features_picture
    from .features import extract_features

    blocks = a.blocks or [a.block]
    if not a.save:
        extra = [k for k in ("tile", "upsample", "blocks", "text") if getattr(a, k)]
        if len(a.inputs) > 1 or extra or a.pca or a.fp32:
            raise PEDenseError("several images, --blocks, --tile, --upsample, --text, --pca and --fp32 write features "
                               "to disk: "
                               "give --save DIR (without it, one image's PCA picture goes to --out)")
        return features_picture(a.inputs[0], a.out, a.model, a.checkpoint, a.block, a.size or 448, a.max_side,
                                overrides(a))
    stride = (a.stride or 1) if a.upsample else a.stride
    tower, meta = None, None
    if a.text:
        import json

        from .segment import TextMaps, build_segmenter

        if a.blocks or a.block != -1 or overrides(a):
            raise PEDenseError("--text maps come from PE-Core's head after its last block: --block(s) and the tower "
                               "settings do not apply")
        seg, names = build_segmenter(a.text, a.model, a.checkpoint, a.method, prompts=a.templates, device=a.device)
        tower, blocks = TextMaps(seg), [0]
        meta = dict(text_classes=json.dumps(names), text_method=a.method, text_templates=a.templates)
    r = extract_features(a.inputs, a.model, a.checkpoint, blocks, a.size, a.max_side, a.tile, a.overlap, a.blend,
                         a.upsample, stride, a.batch_size, a.fp32, a.save, a.device, overrides=overrides(a), pca=a.pca,
                         tower=tower, meta=meta)
    print(f"wrote {r['written']} file(s) to {a.save} in {r['seconds']:.1f} s" +
          (f", {r['skipped']} already there with the same settings" if r["skipped"] else "") +
          (f", {len(r['unreadable'])} unreadable (named above)" if r["unreadable"] else ""))
    return r


def add_convert_parser(sub):
    from .convert import FORMATS

    q = sub.add_parser("convert", help="released / timm / safetensors -> pe_dense file (patch, table changes); with "
                                       "--config a whole detector, ours <-> the released PE detection layout")
    q.add_argument("src")
    q.add_argument("dst", help=".pt or .safetensors; with --to detectron2 or detectron2-released: .pth")
    q.add_argument("--to", choices=FORMATS + ("detectron2-released",), default=None,
                   help="pe_dense (default without --config); detectron2: a checkpoint with the Detectron2 model's own "
                        "keys (backbone.fpn.net.*, patch 16 unless --patch-size), for train.init_checkpoint in "
                        "Detectron2's own tools (default with --config); detectron2-released: with --config, a trained "
                        "detector in the layout of the released PE detection code (PEv1_det in Detectron2's "
                        "SimpleFeaturePyramid), to run it there")
    q.add_argument("--config", help="a Detectron2 LazyConfig of this project: SRC is a whole detector (ours or the "
                                    "released layout, e.g. mask_rcnn_PEspatial_G_coco36ep.pth), checked whole "
                                    "against the config's model and written in the layout of --to")
    q.add_argument("--cfg-options", nargs="+", default=[], help="with --config: overrides key=value of the config")
    add_model_args(q)
    q.set_defaults(func=run_convert)


def run_convert(a):
    if a.config:
        from .detectron2.convert import convert_detector

        return convert_detector(a.src, a.dst, a.config, a.to or "detectron2", a.cfg_options)
    if a.cfg_options:
        raise PEDenseError("--cfg-options go with --config (a whole detector's config)")
    if a.to == "detectron2-released":
        raise PEDenseError("--to detectron2-released converts a whole detector: give its config with --config "
                           "(e.g. configs/detectron2/COCO/mask_rcnn_pe_spatial_g_36ep.py)")
    from .convert import convert_checkpoint

    return convert_checkpoint(a.src, a.dst, a.model, a.to or "pe_dense", overrides(a))


def add_export_parser(sub):
    from .export import run_export

    q = sub.add_parser("export", help="ONNX file of a tower (and pyramid), any image size, checked by onnxruntime")
    q.add_argument("name", help="a name from `pe-dense list`")
    q.add_argument("out", help="the .onnx file to write")
    q.add_argument("--checkpoint", help="tower weights (any supported file or hub id), or a Detectron2 checkpoint "
                                        "of a pe_dense config (tower and pyramid); default random init")
    q.add_argument("--pyramid", action="store_true", help="add ViTDet's simple feature pyramid (outputs p2..p6)")
    q.add_argument("--blocks", type=int_list, help="tapped blocks, e.g. '2,5,8,11' (default: the last); with "
                                                   "--pyramid the last tap feeds it")
    q.add_argument("--size", type=positive(int), help="side of the traced input (default: the model's native size)")
    q.add_argument("--dynamic", action="store_true", help="batch, height and width dynamic (any size, "
                                                          "multiples of the patch or not)")
    q.add_argument("--opset", type=positive(int), default=18)
    q.add_argument("--optimize", action="store_true", help="run onnxscript's optimizer on the graph (slow)")
    q.add_argument("--no-check", action="store_true", help="skip the onnxruntime parity check and latency")
    q.add_argument("--check-sizes", type=size_list, help="sizes of the parity check, e.g. '224x224,200x333' "
                                                         "(default: three sizes around --size, one a multiple of "
                                                         "neither patch nor window)")
    q.add_argument("--atol", type=positive(float), default=1e-4, help="largest accepted |ONNX - PyTorch| (1e-4)")
    q.add_argument("--rounds", type=positive(int), default=5, help="timed runs for the latency (median)")
    add_model_args(q)
    q.set_defaults(func=lambda a: run_export(
        a.name, a.out, a.checkpoint, a.pyramid, a.blocks, a.size, a.dynamic, a.opset, a.optimize, not a.no_check,
        a.check_sizes, a.atol, a.rounds, overrides(a)))


def add_predict_parser(sub):
    from .predict import predict

    q = sub.add_parser("predict", help="pictures of a trained model's predictions on images: detections with masks "
                                       "(Detectron2 config), segmentation overlay or depth colour map (MMSeg config)")
    q.add_argument("config", help="a Detectron2 LazyConfig or an MMSeg config of this project (or your own)")
    q.add_argument("checkpoint", help="the trained model (e.g. output/model_final.pth, work_dirs/.../iter_N.pth)")
    q.add_argument("inputs", nargs="+", help="image files; key=value items are config overrides (Detectron2 "
                                             "style, e.g. dataset.train_json=A.json for a custom config)")
    q.add_argument("--out", default="predictions", help="folder for NAME.png (the picture) and the raw outputs")
    q.add_argument("--cfg-options", nargs="+", help="config overrides key=value (MMSeg style; either works)")
    q.add_argument("--score-thresh", type=positive(float), default=0.5, help="detections drawn above this score")
    q.add_argument("--tta", action="store_true", help="test-time augmentation: Detectron2's GeneralizedRCNNWithTTA "
                                                      "(scales, flip); MMSeg's SegTTAModel with the config's "
                                                      "tta_pipeline; depth: the flip averaged")
    q.add_argument("--window", type=positive(int), help="MMSeg: blended sliding windows of this size in px (images "
                                                        "of any size, a progress bar over the windows)")
    q.add_argument("--device", default=default_device())
    q.set_defaults(func=lambda a: predict(a.config, a.checkpoint, a.inputs, a.out, a.cfg_options, a.score_thresh,
                                          a.device, a.tta, a.window))


def add_probe_parser(sub):
    from .probe import TASKS, run_probes

    q = sub.add_parser("probe", help="which block? frozen per-block probes (linear segmentation, linear depth, "
                                     "label-propagation tracking): table, plot, best block")
    q.add_argument("task", choices=TASKS)
    q.add_argument("--data", help="seg: ADE20K layout (images|annotations/{training,validation}); depth: NYUv2 "
                                  "layout (images|annotations/{train,test}, uint16 mm); track: DAVIS-2017 root. "
                                  "Default: the embedded set")
    q.add_argument("--model", nargs="+", default=["PE-Spatial-T16-512"], help="one or more names (one plot)")
    q.add_argument("--checkpoint", nargs="+", help="weights, one per --model (default: random init)")
    q.add_argument("--blocks", default="all", help="'all' or e.g. '3,5,7,11' (negative from the end)")
    q.add_argument("--size", type=positive(int), help="short side / crop (default: the model's native size; "
                                                      "480 for track; the embedded sets' own size without --data)")
    q.add_argument("--epochs", type=positive(int), default=10, help="probe training epochs over the cached features")
    q.add_argument("--max-images", type=positive(int), help="train on a seeded random subset of this many images")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--cache", help="feature cache folder (default: $PE_DENSE_HOME/probe_cache)")
    q.add_argument("--fp32-cache", action="store_true", help="cache features in fp32 (default fp16: half the disk)")
    q.add_argument("--out", default="probe_results", help="folder for probe_TASK.{png,csv,json}")
    q.add_argument("--device", default=default_device())
    q.set_defaults(func=lambda a: run_probes(a.task, a.model, a.checkpoint, a.data, a.blocks, a.size, a.epochs,
                                             a.max_images, a.seed, a.cache, a.fp32_cache, a.out, a.device))


def add_classify_parser(sub):
    q = sub.add_parser("classify", help="zero-shot classification of images by class names (PE-Core as CLIP)")
    q.add_argument("inputs", nargs="+", help="image files, folders, globs")
    q.add_argument("--classes", required=True, help='"cat,dog,bird", or a .txt (one per line) / .json (a list) file')
    q.add_argument("--model", default="PE-Core-T16-384", help="a PE-Core model (they have a text tower)")
    q.add_argument("--checkpoint", help="the CLIP weights (the released file, OpenCLIP's, or a hub id); default "
                                        "random init")
    q.add_argument("--templates", default="imagenet80", help="prompt ensemble: imagenet80 (CLIP's 80), simple (7), "
                                                             "none (the name alone), or a file of templates with {}")
    q.add_argument("--top-k", type=positive(int), default=5)
    q.add_argument("--size", type=positive(int), help="image side (default: the model's pretraining size)")
    q.add_argument("--out", default="classify.csv", help="CSV: file, then class / probability pairs")
    q.add_argument("--batch-size", type=positive(int), default=16)
    q.add_argument("--device", default=default_device())
    q.set_defaults(func=run_classify)


def run_classify(a):
    from .classify import classify

    return classify(a.inputs, a.classes, a.model, a.checkpoint, a.templates, a.top_k, a.out, a.batch_size, a.device,
                    a.size)


def add_segment_parser(sub):
    from .modeling.clip import DENSE_METHOD_HELP, DENSE_METHODS

    q = sub.add_parser("segment", help="segmentation by class names, training-free (PE-Core as CLIP, per patch)")
    q.add_argument("inputs", nargs="+", help="image files, folders, globs")
    q.add_argument("--classes", required=True, help='"sky,road,person", or a .txt (one per line) / .json (a list) '
                                                   'file')
    q.add_argument("--method", choices=DENSE_METHODS + ("projection",), default="value",
                   help="; ".join(f"{k}: {v}" for k, v in DENSE_METHOD_HELP.items()) + "; projection: a learned "
                        "text-to-patch projection into a PE-Spatial tower's features (--projection FILE)")
    q.add_argument("--projection", help="with --method projection: the file written by pe-dense text-projection")
    q.add_argument("--spatial-checkpoint", help="with --method projection: the PE-Spatial weights its features came "
                                                "from")
    q.add_argument("--model", default="PE-Core-T16-384", help="a PE-Core model (they have a text tower)")
    q.add_argument("--checkpoint", help="the CLIP weights (released file, OpenCLIP's, or hub id); default random")
    q.add_argument("--proxy", help="with --method proxy: the tower whose features give the attention (e.g. "
                                   "PE-Spatial-T16-512)")
    q.add_argument("--proxy-checkpoint", help="the proxy tower's weights")
    q.add_argument("--sigma", type=positive(float), default=5.0, help="naclip: neighbourhood width in patches")
    q.add_argument("--beta", type=float, default=1.2, help="proxy: similarities kept above this many standard "
                                                           "deviations over the mean")
    q.add_argument("--gamma", type=positive(float), default=3.0, help="proxy: softmax sharpness")
    q.add_argument("--templates", default="imagenet80", help="imagenet80, simple, none, or a file of templates")
    q.add_argument("--size", type=positive(int), help="short side (default: the model's pretraining size)")
    q.add_argument("--window", type=positive(int), help="blended sliding windows of this size in px (any size)")
    q.add_argument("--stride", type=positive(int), help="window stride (default 2/3 of --window)")
    q.add_argument("--bg-thresh", type=float, help="pixels whose best class probability is below this get 255")
    q.add_argument("--out", default="segments", help="folder for NAME.png (picture), NAME_labels.png, classes.txt")
    q.add_argument("--device", default=default_device())
    q.set_defaults(func=run_segment)


def run_segment(a):
    from .segment import segment

    kw = dict(naclip=dict(sigma=a.sigma), proxy=dict(beta=a.beta, gamma=a.gamma),
              projection=dict(projection=a.projection)).get(a.method, {})
    if a.method != "projection" and (a.projection or a.spatial_checkpoint):
        raise PEDenseError("--projection and --spatial-checkpoint go with --method projection")
    weights = a.spatial_checkpoint if a.method == "projection" else a.proxy_checkpoint
    return segment(a.inputs, a.classes, a.model, a.checkpoint, a.method, a.proxy, weights, a.templates,
                   a.size, a.window, a.stride, a.bg_thresh, a.out, a.device, **kw)


def add_text_projection_parser(sub):
    from .projection import DEFAULTS

    q = sub.add_parser("text-projection", help="learn a text-to-patch projection for PE-Spatial from image-caption "
                                               "pairs (features cached by pe-dense features --save)")
    q.add_argument("--features", help="the folder of DIR/<image stem>.safetensors (pe-dense features --save)")
    q.add_argument("--captions", help="COCO-captions json (images: id, file_name; annotations: image_id, caption)")
    q.add_argument("--model", default=None, help="the PE-Core model whose text tower is projected (default "
                                                 "PE-Core-T16-384)")
    q.add_argument("--checkpoint", help="its CLIP weights")
    q.add_argument("--config", help="a Python file defining projection = dict(features=..., captions=..., model=..., "
                                    "epochs=..., ...): the defaults of the other options")
    q.add_argument("--out", default=None, help="the projection file (default projection.safetensors)")
    q.add_argument("--prompt", default=None, help="template around each caption (default '{}')")
    for k, v in DEFAULTS.items():
        q.add_argument("--" + k.replace("_", "-"), dest=k, type=type(v), default=None, help=f"default {v}")
    q.add_argument("--device", default=default_device())
    q.set_defaults(func=run_text_projection)


def run_text_projection(a):
    import runpy

    from .projection import DEFAULTS, train_projection

    keys = ("features", "captions", "model", "checkpoint", "out", "prompt")  # beside the training settings
    cfg = dict(model="PE-Core-T16-384", out="projection.safetensors", prompt="{}")
    if a.config:
        if not os.path.isfile(a.config):
            raise FileNotFoundError(f"config not found: {a.config}")
        given = runpy.run_path(a.config).get("projection")
        if not isinstance(given, dict):
            raise PEDenseError(f"{a.config} defines no projection = dict(...)")
        bad = sorted(set(given) - set(DEFAULTS) - set(keys))
        if bad:
            raise PEDenseError(f"{a.config}: unknown key(s) {bad}")
        cfg.update(given)
    for k in list(DEFAULTS) + list(keys):
        if getattr(a, k, None) is not None:
            cfg[k] = getattr(a, k)
    missing = [k for k in ("features", "captions") if not cfg.get(k)]
    if missing:
        raise PEDenseError(f"give {' and '.join('--' + k for k in missing)} (or a --config that sets them)")
    return train_projection(device=a.device, **cfg)


def add_demo_parser(sub):
    from .demo import run_demo

    q = sub.add_parser("demo", help="the embedded default")
    q.add_argument("--out-dir", default="pe_dense_demo")
    q.add_argument("--configs", default="configs", help="the repository's configs folder (default: ./configs)")
    q.set_defaults(func=lambda a: run_demo(a.out_dir, a.configs))


def build_parser() -> argparse.ArgumentParser:
    from .tracking.cli import add_track_parser

    p = argparse.ArgumentParser("pe-dense", description="Perception Encoder backbones for dense prediction")
    sub = p.add_subparsers(dest="cmd", required=True)
    for add in (add_list_parser, add_info_parser, add_features_parser, add_convert_parser, add_export_parser,
                add_predict_parser, add_probe_parser, add_classify_parser, add_segment_parser,
                add_text_projection_parser, add_demo_parser, add_track_parser):
        add(sub)
    return p


def main(argv: Optional[List[str]] = None):
    args = build_parser().parse_args(argv)
    try:
        args.func(args)  # nothing returned: the console script exits with main()'s value
    except (PEDenseError, FileNotFoundError) as e:  # bad input: its message says what to fix; anything else is a bug
        print(f"pe-dense {args.cmd}: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
