"""``pe-dense track`` / ``tools/eval_tracking.py``: DAVIS-2017 label propagation with a PE model."""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from ..errors import PEDenseError
from ..io import default_device, positive, weights_identity
from .propagation import PropagationConfig

BUILTIN = "builtin"


def add_track_arguments(p: argparse.ArgumentParser):
    p.add_argument("--davis", default=BUILTIN,
                   help="DAVIS-2017 root (JPEGImages/480p, Annotations/480p, ImageSets/2017); "
                        "'builtin' generates the small embedded set")
    p.add_argument("--frames", help="your own video: a folder of frames (natural order); needs --mask. Writes "
                                    "OUT/masks/*.png, OUT/overlay.gif, OUT/overlay.mp4")
    p.add_argument("--mask", help="with --frames: the first frame's objects (palette PNG, PNG of instance ids, or "
                                  "colour PNG with black background)")
    p.add_argument("--split", default="val")
    p.add_argument("--sequences", nargs="*", help="only these sequences")
    p.add_argument("--model", default="PE-Spatial-T16-512")
    p.add_argument("--checkpoint", help="weights: file or hub id (default: random init)")
    p.add_argument("--block", type=int, default=-1, help="which block's features (default: the last)")
    defaults = PropagationConfig()  # the protocol's values live there, once
    p.add_argument("--short-side", type=positive(int), default=defaults.short_side)
    p.add_argument("--n-last-frames", type=int, default=defaults.n_last_frames)
    p.add_argument("--radius", type=int, default=defaults.radius, help="neighbourhood in patches (0: none)")
    p.add_argument("--topk", type=positive(int), default=defaults.topk)
    p.add_argument("--temperature", type=positive(float), default=defaults.temperature)
    p.add_argument("--out", default="output/tracking")
    p.add_argument("--no-resume", action="store_true",
                   help="redo sequences already written (resuming reuses them only when --out/settings.json records "
                        "the same model, block, weights, options and data)")
    p.add_argument("--no-overlays", action="store_true")
    p.add_argument("--device", default=default_device())


def _model_and_config(model_name, checkpoint, block, device, source, **propagation):
    """The tower tapping ``block`` and the propagation options, announced in one line."""
    from ..factory import create_model

    model = create_model(model_name, pretrained=checkpoint, out_indices=[block])
    cfg = PropagationConfig(**propagation)
    print(f"tracking: {model_name} block {model.out_indices[0]} "
          f"({'weights ' + checkpoint if checkpoint else 'random init'}) on {source}, {cfg}, device {device}")
    return model, cfg


def track(davis: str = BUILTIN, out: str = "output/tracking", frames: Optional[str] = None,
          mask: Optional[str] = None, split: str = "val", sequences: Optional[List[str]] = None,
          model: str = "PE-Spatial-T16-512", checkpoint: Optional[str] = None, block: int = -1,
          resume: bool = True, overlays: bool = True, device: Optional[str] = None, **propagation) -> dict:
    """``pe-dense track``: DAVIS-2017 label propagation with J&F on ``davis`` (``"builtin"``: the embedded set,
    generated under ``out``), or, with ``frames`` and ``mask``, through a user's own frames (no scores).
    ``propagation``: ``PropagationConfig``'s options (``short_side``, ``n_last_frames``, ``radius``, ``topk``,
    ``temperature``); the protocol's values by default."""
    from .evaluate import evaluate_davis, format_table, pe_extractor
    from .synthetic import make_davis

    device = device or default_device()
    if frames or mask:
        return _track_frames(frames, mask, out, model, checkpoint, block, device, propagation)
    root = make_davis(os.path.join(out, "_builtin_davis")) if davis == BUILTIN else davis
    tower, cfg = _model_and_config(model, checkpoint, block, device, f"{root} [{split}]", **propagation)
    settings = dict(model=model, block=tower.out_indices[0], weights=weights_identity(checkpoint))
    result = evaluate_davis(root, out, pe_extractor(tower, device), tower.patch_size, cfg, split=split,
                            sequences=sequences, resume=resume, overlays=overlays, device=device, settings=settings)
    print(format_table(result))
    print(f"wrote {out}/ (palette PNGs per sequence, per_sequence.csv, summary.csv, overlays/)")
    return result


def _track_frames(frames, mask, out, model, checkpoint, block, device, propagation) -> dict:
    """``--frames DIR --mask PNG``: propagation through a user's own frames (no ground truth, no scores)."""
    from .davis import DavisError
    from .evaluate import pe_extractor
    from .frames import track_frames

    if not (frames and mask):
        raise DavisError("--frames and --mask go together: the folder of frames and the first frame's mask")
    tower, cfg = _model_and_config(model, checkpoint, block, device, f"{frames} from {mask}", **propagation)
    r = track_frames(frames, mask, out, pe_extractor(tower, device), tower.patch_size, cfg, device=device)
    print(f"wrote {out}/: masks/ ({r['frames']} palette PNGs, {r['objects']} object(s)), overlay.gif"
          + (", overlay.mp4" if r["video"] else " (no MPEG-4 encoder in this OpenCV: no overlay.mp4)")
          + ", objects.json")
    return r


def run_track(args) -> dict:
    """``track`` with the command line's options."""
    return track(davis=args.davis, out=args.out, frames=args.frames, mask=args.mask, split=args.split,
                 sequences=args.sequences, model=args.model, checkpoint=args.checkpoint, block=args.block,
                 resume=not args.no_resume, overlays=not args.no_overlays, device=args.device,
                 short_side=args.short_side, n_last_frames=args.n_last_frames, radius=args.radius, topk=args.topk,
                 temperature=args.temperature)


def add_track_parser(sub):
    p = sub.add_parser("track", help="DAVIS-2017 label propagation and J&F")
    add_track_arguments(p)
    p.set_defaults(func=run_track)


def main(argv=None):
    p = argparse.ArgumentParser("eval_tracking", description=__doc__)
    add_track_arguments(p)
    args = p.parse_args(argv)
    try:
        return run_track(args)
    except (PEDenseError, FileNotFoundError) as e:  # bad input; anything else keeps its traceback
        print(f"eval_tracking: error: {e}", file=sys.stderr)
        sys.exit(2)
