"""``pe-dense``: list, info, features, convert, demo (and track, when the tracking extra is there)."""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import List, Optional

import torch

from .errors import PEDenseError
from .io import default_device, int_list, positive, write_atomic

_positive_int = positive(int)


def _overrides(args) -> dict:
    kw = {}
    for key in ("patch_size", "img_size", "window_size", "pos_embed", "rope"):
        v = getattr(args, key, None)
        if v is not None:
            kw[key] = v
    if getattr(args, "global_blocks", None) is not None:
        kw["global_blocks"] = int_list(args.global_blocks)
    return kw


def _add_model_args(p, default="PE-Spatial-T16-512"):
    p.add_argument("--model", default=default, help="a name from `pe-dense list`")
    p.add_argument("--patch-size", type=int, dest="patch_size")
    p.add_argument("--img-size", type=int, dest="img_size", help="grid of the stored position table x patch")
    p.add_argument("--window-size", type=int, dest="window_size")
    p.add_argument("--global-blocks", dest="global_blocks", help="e.g. '2,5,8,11'")
    p.add_argument("--pos-embed", choices=["interpolate", "bicubic", "tile"], dest="pos_embed")
    p.add_argument("--rope", choices=["extrapolate", "interpolate"])


def cmd_list(args):
    from .analysis import count_params
    from .factory import create_model
    from .specs import SPECS

    print(f"{'model':<20} {'family':<8} {'patch':>5} {'img':>4} {'width':>5} {'depth':>5} {'heads':>5} "
          f"{'mlp':>5} {'cls':>4} {'params(M)':>9}")
    for s in SPECS.values():
        with torch.device("meta"):
            n = count_params(create_model(s.name))
        print(f"{s.name:<20} {s.family:<8} {s.patch_size:>5} {s.img_size:>4} {s.width:>5} {s.depth:>5} "
              f"{s.heads:>5} {s.mlp_dim:>5} {'yes' if s.cls_token else 'no':>4} {n / 1e6:>9.1f}")


def cmd_info(args):
    from .analysis import count_flops, count_params
    from .factory import create_model
    from .specs import get_spec

    spec = get_spec(args.model)
    size = args.size or spec.img_size
    model = create_model(args.model, **_overrides(args))
    print(model.extra_repr())
    print(f"parameters: {count_params(model) / 1e6:.2f} M")
    if not args.no_flops:
        f = count_flops(model, (size, size))
        print(f"FLOPs at {size}x{size}: {f['gflops']:.2f} G multiply-adds (fvcore; elementwise ops not counted)")


def config_framework(path: str) -> str:
    """``"mmseg"`` for an mmengine config (``_base_``, ``custom_imports`` or ``dict(type=...)``), ``"detectron2"``
    for a LazyConfig (Python that imports its parts: ``LazyCall``, ``model_zoo``, other configs)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config not found: {path}")
    import re

    with open(path) as f:
        text = f.read()
    if re.search(r"^_base_\s*=|^custom_imports\s*=|\bdict\(\s*type\s*=|[\"']type[\"']\s*:", text, re.M):
        return "mmseg"
    if re.search(r"^\s*(from|import)\s", text, re.M):
        return "detectron2"
    raise PEDenseError(f"{path}: neither an MMSeg (mmengine) config nor a Detectron2 LazyConfig")


def cmd_predict(args):
    inputs = [a for a in args.inputs if not ("=" in a and not os.path.exists(a))]
    opts = [a for a in args.inputs if a not in inputs] + list(args.cfg_options or [])
    if not inputs:
        raise PEDenseError("predict: give at least one image after CONFIG and CHECKPOINT")
    for path in inputs:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"image not found: {path}")
    framework = config_framework(args.config)
    os.makedirs(args.out, exist_ok=True)
    if framework == "detectron2":
        from .detectron2.predict import predict_detectron2

        return predict_detectron2(args.config, args.checkpoint, inputs, args.out, opts, args.score_thresh,
                                  args.device)
    from .mmseg.predict import predict_mmseg

    return predict_mmseg(args.config, args.checkpoint, inputs, args.out, opts, args.device)


def cmd_probe(args):
    """``pe-dense probe seg|depth|track``: per-block frozen probes, table, plot, JSON/CSV, the best block."""
    from .probe import format_table, probe, write_results

    checkpoints = args.checkpoint or [None] * len(args.model)
    if len(checkpoints) != len(args.model):
        raise PEDenseError(f"--checkpoint: give one per --model ({len(args.model)}), got {len(checkpoints)}")
    results = []
    for name, ckpt in zip(args.model, checkpoints):
        print(f"== probe {args.task}: {name} ({'weights ' + ckpt if ckpt else 'random init: no --checkpoint'}), "
              f"data {args.data or 'the embedded set'}, blocks {args.blocks}")
        r = probe(args.task, name, data=args.data, checkpoint=ckpt, blocks=args.blocks, size=args.size,
                  epochs=args.epochs, cache_root=args.cache, seed=args.seed, max_images=args.max_images,
                  device=args.device, cache_dtype=torch.float32 if args.fp32_cache else torch.float16)
        print(format_table(r))
        probe_total = sum(row["probe_seconds"] for row in r.rows)
        print(f"time: tower {r.tower_seconds:.1f} s (features of images not cached yet), probes {probe_total:.1f} s; "
              f"cache {r.cache_bytes / 2**20:.1f} MiB in {os.path.dirname(r.cache_dir)}")
        b = r.best()
        use = {"track": f"pe-dense track --model {name} --block {b['block']}",
               "seg": f"MMSeg: model.backbone.out_indices=[{b['block']}]  (linear probe configs); pe-dense features "
                      f"--block {b['block']}",
               "depth": f"MMSeg: model.backbone.out_indices=[{b['block']}]; pe-dense features --block {b['block']}"}
        print(f"best block: {b['block']} ({r.metric} {b[r.metric]:.3f}) -> {use[args.task]}")
        results.append(r)
    files = write_results(results, args.out)
    print(f"wrote {files['png']} (plot), {files['csv']}, {files['json']}")
    return results


def cmd_features(args):
    import numpy as np
    from PIL import Image

    from .analysis import pca_rgb
    from .data.images import load_image, to_tensor
    from .factory import create_model

    fmt = Image.registered_extensions().get(os.path.splitext(args.out)[1].lower())
    if fmt is None or fmt not in ("PNG", "JPEG", "WEBP", "BMP", "TIFF"):
        raise PEDenseError(f"--out {args.out}: the picture is written as PNG, JPEG, WebP, BMP or TIFF; give --out a "
                         f".png, .jpg, .webp, .bmp or .tif name")
    img = load_image(args.image)
    model = create_model(args.model, pretrained=args.checkpoint, out_indices=[args.block],
                         **_overrides(args)).eval()
    max_side = getattr(args, "max_side", None) or 4 * args.size
    x = to_tensor(img, short_side=args.size, multiple=model.patch_size, max_side=max_side)
    if max(img.size) * args.size / min(img.size) > max_side:
        print(f"note: {img.width}x{img.height} is elongated: the long side is capped at {max_side} px "
              f"(--max-side), so the short side is {min(x.shape[-2:])} px, not {args.size}")
    t0 = time.time()
    with torch.no_grad():
        feat = model(x)[0][0]
    rgb = pca_rgb(feat)
    H, W = x.shape[-2:]
    pca = Image.fromarray(rgb).resize((W, H), Image.NEAREST)
    shown = img.resize((W, H), Image.BICUBIC)
    canvas = Image.new("RGB", (2 * W, H))
    canvas.paste(shown, (0, 0))
    canvas.paste(pca, (W, 0))
    write_atomic(args.out, lambda p: canvas.save(p, format=fmt))
    weights = args.checkpoint or "random init (no --checkpoint)"
    print(f"{args.model} block {model.out_indices[0]} features {tuple(feat.shape)} at {H}x{W} "
          f"in {time.time() - t0:.2f}s, weights: {weights}")
    print(f"wrote {args.out} (image | PCA of the features)")
    return np.asarray(canvas)


def cmd_convert(args):
    from .checkpoint import read_state_dict
    from .factory import create_model

    overrides = _overrides(args)
    if args.to == "detectron2":
        overrides.setdefault("patch_size", 16)  # every shipped Detectron2 config runs the towers at patch 16
    model = create_model(args.model, pretrained=None, **overrides)
    from .checkpoint import load_checkpoint

    load_checkpoint(model, read_state_dict(args.src))
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    if args.to == "detectron2":
        if not args.dst.endswith((".pth", ".pt")):
            raise PEDenseError(f"--to detectron2 writes a .pth file (Detectron2's checkpoint format), got {args.dst}")
        from .optim import DETECTRON2_TOWER

        # the keys of pe_dense.detectron2.PEBackbone inside a Detectron2 model: train.init_checkpoint=DST works in
        # Detectron2's own tools (DetectionCheckpointer), the heads start from their initialization
        d2 = {DETECTRON2_TOWER + k: v for k, v in sd.items()}
        write_atomic(args.dst, lambda p: torch.save({"model": d2, "__author__": "pe_dense"}, p))
        print(f"wrote {args.dst}: {args.model} as a Detectron2 checkpoint ({len(d2)} tensors under "
              f"'{DETECTRON2_TOWER}'), patch {model.patch_size}, position table {model.pos_grid}x{model.pos_grid}")
        return
    if args.dst.endswith(".safetensors"):
        from safetensors.torch import save_file

        write_atomic(args.dst, lambda p: save_file(sd, p, metadata={"model": args.model}))
    else:
        write_atomic(args.dst, lambda p: torch.save({"model": sd, "pe_dense": {"model": args.model,
                                                                                 **_overrides(args)}}, p))
    print(f"wrote {args.dst}: {args.model}, patch {model.patch_size}, position table {model.pos_grid}x"
          f"{model.pos_grid} ({model.pos_embed_mode}), {len(sd)} tensors")


def _parse_sizes(s: str):
    sizes = []
    for part in s.replace(" ", "").split(","):
        h, _, w = part.partition("x")
        try:
            hw = (int(h), int(w or h))
        except ValueError:
            raise PEDenseError(f"--check-sizes {s!r}: write sizes as HxW, comma-separated, e.g. 224x224,200x333") \
                from None
        if min(hw) <= 0:
            raise PEDenseError(f"--check-sizes {s!r}: sizes must be > 0")
        sizes.append(hw)
    return sizes


def _load_for_export(model, checkpoint: str, pyramid) -> str:
    """Tower weights from any supported file; with a pyramid, a Detectron2 checkpoint of one of our configs also
    gives the pyramid's weights (keys ``backbone.fpn.*``). Returns what the pyramid's weights are."""
    from .checkpoint import load_checkpoint, read_state_dict
    from .optim import DETECTRON2_TOWER

    sd = read_state_dict(checkpoint)
    fpn = DETECTRON2_TOWER[: -len("net.")]
    if any(k.startswith(DETECTRON2_TOWER) for k in sd):  # a Detectron2 model of ours: tower + pyramid + heads
        tower = {k[len(DETECTRON2_TOWER):]: v for k, v in sd.items() if k.startswith(DETECTRON2_TOWER)}
        load_checkpoint(model.net if pyramid else model, tower)
        if pyramid:
            rest = {k[len(fpn):]: v for k, v in sd.items() if k.startswith(fpn) and not k.startswith(DETECTRON2_TOWER)}
            missing, unexpected = model.load_state_dict(rest, strict=False)
            missing = [k for k in missing if not k.startswith("net.")]  # the tower: loaded above
            if missing or unexpected:
                raise PEDenseError(f"{checkpoint}: its pyramid ({fpn}*) does not fit --pyramid's (256 channels, "
                                 f"p2..p6): missing {missing[:4]}, unexpected {unexpected[:4]}")
            return f"from {checkpoint}"
        return ""
    load_checkpoint(model.net if pyramid else model, sd)
    return "random init (the file holds a tower only)" if pyramid else ""


def cmd_export(args):
    from .export import check_onnx, check_sizes, export_onnx, latency, onnx_session
    from .factory import create_model
    from .modeling import SimpleFeaturePyramid
    from .specs import get_spec

    if not args.out.endswith(".onnx"):
        raise PEDenseError(f"{args.out}: the output is an ONNX file; give it a .onnx name")
    spec = get_spec(args.model)
    kw = _overrides(args)
    if args.blocks:
        kw["out_indices"] = int_list(args.blocks)
    tower = create_model(args.model, **kw)
    model = SimpleFeaturePyramid(tower) if args.pyramid else tower
    pyramid_weights = "random init (no --checkpoint)" if args.pyramid else ""
    if args.checkpoint:
        pyramid_weights = _load_for_export(model, args.checkpoint, args.pyramid)
    size = (args.size, args.size) if args.size else (spec.img_size, spec.img_size)
    sizes = _parse_sizes(args.check_sizes) if args.check_sizes else check_sizes(size, tower.patch_size,
                                                                                tower.window_size)
    what = f"{args.model} ({tower.extra_repr()})" + (" + simple feature pyramid" if args.pyramid else "")
    print(f"exporting {what}")
    info = export_onnx(model, args.out, size, dynamic=args.dynamic, opset=args.opset, optimize=args.optimize)
    print(f"  traced at {info['traced'][0]}x{info['traced'][1]}, opset {args.opset}, " +
          ("dynamic batch, height and width" if args.dynamic else "fixed size, batch 1 (add --dynamic for any size)"))
    mb = sum(os.path.getsize(p) for p in (args.out, args.out + ".data") if os.path.exists(p)) / 2**20
    print(f"wrote {args.out} ({mb:.1f} MB) in {info['seconds']:.0f} s: input {info['inputs'][0][0]} "
          f"{info['inputs'][0][1]}, outputs {', '.join(info['outputs'])}")
    print(f"weights: {args.checkpoint or 'random init (no --checkpoint)'}" +
          (f"; pyramid: {pyramid_weights}" if pyramid_weights else ""))
    if args.no_check:
        return info
    if not args.dynamic:
        sizes = [size]
    session = onnx_session(args.out)  # loaded once for the check and the timing
    rows = check_onnx(session, model, sizes)
    worst = max(r["max_abs_diff"] for r in rows)
    for r in rows:
        print(f"  onnxruntime vs PyTorch at {r['size'][0]}x{r['size'][1]}: max |diff| {r['max_abs_diff']:.2e}")
    if worst > args.atol:
        raise PEDenseError(f"{args.out} differs from PyTorch by {worst:.2e} > --atol {args.atol}: the file is kept "
                         f"for inspection, do not use it")
    t = latency(session, model, size, rounds=args.rounds)
    print(f"  latency at {size[0]}x{size[1]}, batch 1, CPU: onnxruntime {t['onnxruntime_ms']:.1f} ms, PyTorch "
          f"{t['torch_ms']:.1f} ms ({t['speedup']:.2f}x; median of {args.rounds})")
    return {**info, "check": rows, "latency": t}


def cmd_demo(args):
    """The embedded default: a tour on the built-in picture and a small model, seeded (random init: no weights
    offline), a few lines per step; the MMSeg runs keep their full logs in files."""
    out = args.out_dir
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    print("== pe-dense list")
    cmd_list(args)
    print("\n== pe-dense info PE-Spatial-T16-512 --size 512")
    cmd_info(argparse.Namespace(model="PE-Spatial-T16-512", size=512, no_flops=False))
    print("\n== pe-dense features builtin:shapes --model PE-Spatial-T16-512 (random init: no weights offline)")
    cmd_features(argparse.Namespace(model="PE-Spatial-T16-512", checkpoint=None, block=-1, image="builtin:shapes",
                                    size=384, out=os.path.join(out, "features_pca.png")))
    from .tracking.demo import run_demo

    print("\n== tracking: DAVIS-style label propagation on the built-in video (PE-Spatial-T, random init, seed 0)")
    torch.manual_seed(0)
    run_demo(os.path.join(out, "tracking"))
    try:
        import mmseg  # noqa: F401
    except ImportError:
        print("\n(mmsegmentation is not installed: the segmentation and depth demos are skipped; "
              "bash scripts/setup.sh installs it)")
        return
    embedded = os.path.join(getattr(args, "configs", "configs"), "mmseg", "embedded")
    if not os.path.isdir(embedded):
        print(f"\n(the segmentation and depth demos train the repository's configs, {embedded} is not here: run "
              f"`pe-dense demo` from the root of a pe_dense checkout, or pass --configs PATH/TO/configs)")
        return
    from .mmseg.demo import run_demo as run_mmseg_demo

    run_mmseg_demo(out, embedded)


def main(argv: Optional[List[str]] = None):
    p = argparse.ArgumentParser("pe-dense", description="Perception Encoder backbones for dense prediction")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="the released towers")
    q = sub.add_parser("info", help="parameters and FLOPs of a model")
    q.add_argument("name")
    q.add_argument("--size", type=_positive_int, help="square input size for the FLOP count (default: native)")
    q.add_argument("--no-flops", action="store_true")
    _add_model_args(q)
    q = sub.add_parser("features", help="PCA picture of a block's features")
    q.add_argument("image", nargs="?", default="builtin:shapes", help="an image file, or builtin:shapes")
    _add_model_args(q)
    q.add_argument("--checkpoint", help="weights (file or hub id); default random init")
    q.add_argument("--block", type=int, default=-1)
    q.add_argument("--size", type=_positive_int, default=448, help="resize the short side to this")
    q.add_argument("--max-side", type=_positive_int, help="cap of the long side (default: 4 x --size)")
    q.add_argument("--out", default="features_pca.png")
    q = sub.add_parser("convert", help="released / timm / safetensors -> pe_dense file (patch, table changes)")
    q.add_argument("src")
    q.add_argument("dst", help=".pt or .safetensors; with --to detectron2: .pth")
    q.add_argument("--to", choices=["pe_dense", "detectron2"], default="pe_dense",
                   help="detectron2: a checkpoint with the Detectron2 model's own keys (backbone.fpn.net.*, patch 16 "
                        "unless --patch-size), for train.init_checkpoint in Detectron2's own tools")
    _add_model_args(q)
    q = sub.add_parser("export", help="ONNX file of a tower (and pyramid), any image size, checked by onnxruntime")
    q.add_argument("name", help="a name from `pe-dense list`")
    q.add_argument("out", help="the .onnx file to write")
    q.add_argument("--checkpoint", help="tower weights (any supported file or hub id), or a Detectron2 checkpoint "
                                        "of a pe_dense config (tower and pyramid); default random init")
    q.add_argument("--pyramid", action="store_true", help="add ViTDet's simple feature pyramid (outputs p2..p6)")
    q.add_argument("--blocks", help="tapped blocks, e.g. '2,5,8,11' (default: the last); with --pyramid the "
                                    "last tap feeds it")
    q.add_argument("--size", type=_positive_int, help="side of the traced input (default: the model's native size)")
    q.add_argument("--dynamic", action="store_true", help="batch, height and width dynamic (any size, "
                                                          "multiples of the patch or not)")
    q.add_argument("--opset", type=_positive_int, default=18)
    q.add_argument("--optimize", action="store_true", help="run onnxscript's optimizer on the graph (slow)")
    q.add_argument("--no-check", action="store_true", help="skip the onnxruntime parity check and latency")
    q.add_argument("--check-sizes", help="sizes of the parity check, e.g. '224x224,200x333' (default: three sizes "
                                         "around --size, one a multiple of neither patch nor window)")
    q.add_argument("--atol", type=positive(float), default=1e-4, help="largest accepted |ONNX - PyTorch| (1e-4)")
    q.add_argument("--rounds", type=_positive_int, default=5, help="timed runs for the latency (median)")
    _add_model_args(q)
    q = sub.add_parser("predict", help="pictures of a trained model's predictions on images: detections with masks "
                                       "(Detectron2 config), segmentation overlay or depth colour map (MMSeg config)")
    q.add_argument("config", help="a Detectron2 LazyConfig or an MMSeg config of this project (or your own)")
    q.add_argument("checkpoint", help="the trained model (e.g. output/model_final.pth, work_dirs/.../iter_N.pth)")
    q.add_argument("inputs", nargs="+", help="image files; key=value items are config overrides (Detectron2 "
                                             "style, e.g. dataset.train_json=A.json for a custom config)")
    q.add_argument("--out", default="predictions", help="folder for NAME.png (the picture) and the raw outputs")
    q.add_argument("--cfg-options", nargs="+", help="config overrides key=value (MMSeg style; either works)")
    q.add_argument("--score-thresh", type=positive(float), default=0.5, help="detections drawn above this score")
    q.add_argument("--device", default=default_device())
    q = sub.add_parser("probe", help="which block? frozen per-block probes (linear segmentation, linear depth, "
                                     "label-propagation tracking): table, plot, best block")
    q.add_argument("task", choices=["seg", "depth", "track"])
    q.add_argument("--data", help="seg: ADE20K layout (images|annotations/{training,validation}); depth: NYUv2 "
                                  "layout (images|annotations/{train,test}, uint16 mm); track: DAVIS-2017 root. "
                                  "Default: the embedded set")
    q.add_argument("--model", nargs="+", default=["PE-Spatial-T16-512"], help="one or more names (one plot)")
    q.add_argument("--checkpoint", nargs="+", help="weights, one per --model (default: random init)")
    q.add_argument("--blocks", default="all", help="'all' or e.g. '3,5,7,11' (negative from the end)")
    q.add_argument("--size", type=_positive_int, help="short side / crop (default: the model's native size; "
                                                      "480 for track; the embedded sets' own size without --data)")
    q.add_argument("--epochs", type=_positive_int, default=10, help="probe training epochs over the cached features")
    q.add_argument("--max-images", type=_positive_int, help="train on a seeded random subset of this many images")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--cache", help="feature cache folder (default: $PE_DENSE_HOME/probe_cache)")
    q.add_argument("--fp32-cache", action="store_true", help="cache features in fp32 (default fp16: half the disk)")
    q.add_argument("--out", default="probe_results", help="folder for probe_TASK.{png,csv,json}")
    q.add_argument("--device", default=default_device())
    q = sub.add_parser("demo", help="the embedded default")
    q.add_argument("--out-dir", default="pe_dense_demo")
    q.add_argument("--configs", default="configs", help="the repository's configs folder (default: ./configs)")
    from .tracking.cli import add_track_parser

    add_track_parser(sub)
    args = p.parse_args(argv)
    if args.cmd in ("info", "export"):
        args.model = args.name
    fn = {"list": cmd_list, "info": cmd_info, "features": cmd_features, "convert": cmd_convert,
          "export": cmd_export, "predict": cmd_predict, "probe": cmd_probe, "demo": cmd_demo}.get(args.cmd) \
        or args.func
    try:
        fn(args)
    except (PEDenseError, FileNotFoundError) as e:  # bad input: its message says what to fix; anything else is a bug
        print(f"pe-dense {args.cmd}: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
