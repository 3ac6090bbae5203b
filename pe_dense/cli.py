"""``pe-dense``: list, info, features, convert, demo (and track, when the tracking extra is there)."""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import List, Optional

import torch


def positive(kind=int):
    """An argparse type: ``kind(s)`` that must be > 0."""
    def parse(s: str):
        v = kind(s)
        if v <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {s}")
        return v
    return parse


_positive_int = positive(int)


def _ints(s: str) -> List[int]:
    return [int(v) for v in s.replace(",", " ").split()] if s else []


def _overrides(args) -> dict:
    kw = {}
    for key in ("patch_size", "img_size", "window_size", "pos_embed", "rope"):
        v = getattr(args, key, None)
        if v is not None:
            kw[key] = v
    if getattr(args, "global_blocks", None) is not None:
        kw["global_blocks"] = _ints(args.global_blocks)
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


def _write_atomic(path: str, write):
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def cmd_features(args):
    import numpy as np
    from PIL import Image

    from .analysis import pca_rgb
    from .data.images import load_image, to_tensor
    from .factory import create_model

    fmt = Image.registered_extensions().get(os.path.splitext(args.out)[1].lower())
    if fmt is None or fmt not in ("PNG", "JPEG", "WEBP", "BMP", "TIFF"):
        raise ValueError(f"--out {args.out}: the picture is written as PNG, JPEG, WebP, BMP or TIFF; give --out a "
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
    _write_atomic(args.out, lambda p: canvas.save(p, format=fmt))
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
            raise ValueError(f"--to detectron2 writes a .pth file (Detectron2's checkpoint format), got {args.dst}")
        from .optim import DETECTRON2_TOWER

        # the keys of pe_dense.detectron2.PEBackbone inside a Detectron2 model: train.init_checkpoint=DST works in
        # Detectron2's own tools (DetectionCheckpointer), the heads start from their initialization
        d2 = {DETECTRON2_TOWER + k: v for k, v in sd.items()}
        _write_atomic(args.dst, lambda p: torch.save({"model": d2, "__author__": "pe_dense"}, p))
        print(f"wrote {args.dst}: {args.model} as a Detectron2 checkpoint ({len(d2)} tensors under "
              f"'{DETECTRON2_TOWER}'), patch {model.patch_size}, position table {model.pos_grid}x{model.pos_grid}")
        return
    if args.dst.endswith(".safetensors"):
        from safetensors.torch import save_file

        _write_atomic(args.dst, lambda p: save_file(sd, p, metadata={"model": args.model}))
    else:
        _write_atomic(args.dst, lambda p: torch.save({"model": sd, "pe_dense": {"model": args.model,
                                                                                 **_overrides(args)}}, p))
    print(f"wrote {args.dst}: {args.model}, patch {model.patch_size}, position table {model.pos_grid}x"
          f"{model.pos_grid} ({model.pos_embed_mode}), {len(sd)} tensors")


def cmd_demo(args):
    """The embedded default: a tour on the built-in picture and a small model."""
    out = args.out_dir
    os.makedirs(out, exist_ok=True)
    print("== pe-dense list")
    cmd_list(args)
    print("\n== pe-dense info PE-Spatial-T16-512 --size 512")
    cmd_info(argparse.Namespace(model="PE-Spatial-T16-512", size=512, no_flops=False))
    print("\n== pe-dense features builtin:shapes --model PE-Spatial-T16-512 (random init: no weights offline)")
    cmd_features(argparse.Namespace(model="PE-Spatial-T16-512", checkpoint=None, block=-1, image="builtin:shapes",
                                    size=384, out=os.path.join(out, "features_pca.png")))
    from .tracking.demo import run_demo

    print("\n== tracking: DAVIS-style label propagation on the built-in video")
    run_demo(os.path.join(out, "tracking"))
    try:
        import mmseg  # noqa: F401
    except ImportError:
        print("\n(mmsegmentation is not installed: the segmentation and depth demos are skipped; "
              "bash scripts/setup.sh installs it)")
        return
    from .mmseg.demo import run_demo as run_mmseg_demo

    run_mmseg_demo(out)


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
    q = sub.add_parser("demo", help="the embedded default")
    q.add_argument("--out-dir", default="pe_dense_demo")
    try:
        from .tracking.cli import add_track_parser
        add_track_parser(sub)
    except ImportError:
        pass
    args = p.parse_args(argv)
    if args.cmd == "info":
        args.model = args.name
    fn = {"list": cmd_list, "info": cmd_info, "features": cmd_features, "convert": cmd_convert,
          "demo": cmd_demo}.get(args.cmd) or args.func
    try:
        fn(args)
    except (KeyError, FileNotFoundError, ValueError, TypeError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"pe-dense {args.cmd}: error: {msg}", file=sys.stderr)
        sys.exit(2)
    except RuntimeError as e:
        if type(e).__name__ == "CheckpointError":
            print(f"pe-dense {args.cmd}: error: {e}", file=sys.stderr)
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
