"""DAVIS-2017 semi-supervised evaluation of frozen PE features: predict, write palette PNGs, score J&F.

Output folder: ``SEQ/00000.png ...`` (DAVIS names; each sequence written to a hidden folder and renamed when whole,
so an interrupted run leaves no half sequence and ``resume`` skips finished ones), ``per_sequence.csv`` (one row per
object), ``summary.csv`` (davis2017-evaluation's global table) and ``overlays/SEQ.jpg``.
"""
from __future__ import annotations

import json
import os
import time
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data.images import load_image, normalize, read_rgb
from ..io import error_summary, write_csv, write_folder_atomic, write_json
from .davis import (
    DavisError,
    check_sequence,
    davis_palette,
    list_sequences,
    load_sequence,
    num_objects,
    read_annotation,
    write_annotation,
)
from .metrics import evaluate_sequence
from .propagation import PropagationConfig, finalize, run_propagation

Extractor = Callable[[torch.Tensor], torch.Tensor]  # (1, 3, H, W) normalized -> (h, w, d)


def working_size(h: int, w: int, short_side: int, patch: int):
    """Short side to ``short_side``, both sides floored to a multiple of the patch (DINO floors to 64)."""
    s = short_side / min(h, w)
    return max(patch, int(h * s) // patch * patch), max(patch, int(w * s) // patch * patch)


def read_frame(path: str, size) -> torch.Tensor:
    try:
        img = load_image(path).resize((size[1], size[0]), Image.BILINEAR)
    except (OSError, ValueError) as e:  # e.g. a truncated JPEG, found when decoded
        raise DavisError(f"{path}: cannot read this frame ({error_summary(e)})") from None
    return normalize(img)[None]


def pe_extractor(model: torch.nn.Module, device) -> Extractor:
    """Features of one block (the model's first ``out_indices`` entry) as (h, w, d)."""
    model = model.to(device).eval()

    @torch.no_grad()
    def extract(x):
        return model(x.to(device))[0][0].permute(1, 2, 0)

    return extract


def predict_sequence(seq, extract: Extractor, patch: int, cfg: PropagationConfig, device="cpu") -> List[np.ndarray]:
    first = read_annotation(seq.first_annotation)
    k = num_objects(first, seq.name)
    H, W = first.shape
    size = working_size(H, W, cfg.short_side, patch)
    small = np.array(Image.fromarray(np.where(first == 255, 0, first)).resize(
        (size[1] // patch, size[0] // patch), Image.NEAREST))
    labels = F.one_hot(torch.from_numpy(small).long(), k + 1).permute(2, 0, 1).float()

    def features(i):
        return extract(read_frame(seq.frames[i], size))

    out = [first]
    for probs in run_propagation(features, len(seq.frames), labels.to(device), cfg):
        out.append(finalize(probs, patch, (H, W)).cpu().numpy())
    return out


def overlay(frame_path: str, ids: np.ndarray, palette) -> Image.Image:
    img = read_rgb(frame_path).astype(np.float32)
    colors = np.array(palette, dtype=np.float32).reshape(-1, 3)[ids]
    m = (ids > 0)[..., None]
    return Image.fromarray(np.where(m, 0.45 * img + 0.55 * colors, img).astype(np.uint8))


def write_overlays(seq, preds, path: str, palette, n: int = 4):
    idx = sorted(set(np.linspace(0, len(preds) - 1, n).round().astype(int).tolist()))
    tiles = [overlay(seq.frames[i], preds[i], palette) for i in idx]
    w = sum(t.width for t in tiles)
    strip = Image.new("RGB", (w, tiles[0].height))
    x = 0
    for t in tiles:
        strip.paste(t, (x, 0))
        x += t.width
    strip.save(path, quality=90)


def _sequence_done(folder: str, n: int) -> bool:
    return os.path.isdir(folder) and all(os.path.isfile(os.path.join(folder, f"{i:05d}.png")) for i in range(n))


def score_sequence(seq, folder: Optional[str], held_still: bool = False) -> List[Dict]:
    """J and F per object of the masks in ``folder``; ``held_still``: of the trivial tracker instead, the first
    frame's mask held still on every frame (the bar a tracker has to clear)."""
    first = read_annotation(seq.first_annotation)
    k = int(first[first != 255].max())
    have = [i for i, a in enumerate(seq.annotations) if a is not None]
    if len(have) < 3:
        return []  # no ground truth beyond the first frame (e.g. test-dev): nothing to score
    gt = np.stack([read_annotation(seq.annotations[i], k) for i in have])
    # davis2017-evaluation, semi-supervised: void (255) is background in the ground truth and no void mask is used
    gt = np.where(gt == 255, 0, gt)
    if held_still:
        pred = np.repeat(np.where(first == 255, 0, first)[None], len(have), axis=0)
    else:
        pred = np.stack([np.array(Image.open(os.path.join(folder, f"{i:05d}.png"))) for i in have])
    rows = evaluate_sequence(pred, gt, None, num_objects=k)
    for r in rows:
        r["sequence"] = seq.name
    return rows


COLUMNS = ["J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]
KEYS = ["J_mean", "J_recall", "J_decay", "F_mean", "F_recall", "F_decay"]


def summarize(rows: List[Dict]) -> Dict[str, float]:
    if not rows:
        return {}
    s = {c: float(np.mean([r[k] for r in rows])) for c, k in zip(COLUMNS, KEYS)}
    return {"J&F-Mean": (s["J-Mean"] + s["F-Mean"]) / 2, **s}


SETTINGS = "settings.json"


def check_settings(out_dir: str, settings: Dict, resume: bool) -> List[str]:
    """``resume`` reuses finished sequences only when ``out_dir/settings.json`` holds the same settings (model,
    block, weights, propagation options, data): otherwise they would be another run's masks scored as this run's.
    Returns the names of the differing settings ([] when they agree or nothing was written yet); raises
    ``DavisError`` when resuming would mix runs."""
    path = os.path.join(out_dir, SETTINGS)
    have_outputs = os.path.isdir(out_dir) and any(
        os.path.isdir(os.path.join(out_dir, d)) and not d.startswith((".", "_")) and d != "overlays"
        for d in os.listdir(out_dir))
    if not os.path.isfile(path):
        if resume and have_outputs:
            raise DavisError(f"{out_dir} holds results without a record of their settings ({SETTINGS}): they may come "
                             f"from another model or setting. Use --no-resume to recompute them, or a new --out.")
        return []
    with open(path) as f:
        old = json.load(f)
    diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
    if diff and resume:
        lines = "; ".join(f"{k}: {old.get(k)!r} there, {settings.get(k)!r} now" for k in diff)
        raise DavisError(f"{out_dir} holds results of other settings ({lines}). Resuming would report them as this "
                         f"run's. Use --no-resume to recompute every sequence here, or a new --out.")
    return diff


def _write_settings(out_dir: str, settings: Dict):
    write_json(os.path.join(out_dir, SETTINGS), settings, sort_keys=True)


def evaluate_davis(
    root: str,
    out_dir: str,
    extract: Extractor,
    patch: int,
    cfg: Optional[PropagationConfig] = None,
    split: str = "val",
    sequences: Optional[List[str]] = None,
    resume: bool = True,
    overlays: bool = True,
    device="cpu",
    progress: bool = True,
    settings: Optional[Dict] = None,
) -> Dict:
    """``settings``: what produced the masks (the CLI records model, block, weights); the propagation options,
    patch and data are added. Finished sequences are reused only under the same settings (``check_settings``)."""
    from dataclasses import asdict

    from tqdm import tqdm

    cfg = cfg or PropagationConfig()
    names = sequences or list_sequences(root, split)
    seqs = [load_sequence(root, n) for n in names]  # all checked before anything is written
    for seq in seqs:
        check_sequence(seq)
    settings = dict(settings or {}, patch=patch, davis=os.path.abspath(root), split=split, **asdict(cfg))
    changed = check_settings(out_dir, settings, resume)
    os.makedirs(out_dir, exist_ok=True)
    _write_settings(out_dir, settings)
    if changed:
        print(f"tracking: {out_dir} held results of other settings ({', '.join(changed)}): recomputing every sequence")
    rows, held, frames_done, t_pred = [], [], 0, 0.0
    bar = tqdm(seqs, desc="DAVIS", unit="seq", disable=not progress)
    for seq in bar:
        folder = os.path.join(out_dir, seq.name)
        if not (resume and _sequence_done(folder, len(seq.frames))):
            t0 = time.time()
            preds = predict_sequence(seq, extract, patch, cfg, device)
            t_pred += time.time() - t0
            frames_done += len(seq.frames) - 1
            write_masks(seq, preds, folder)
            if overlays:
                os.makedirs(os.path.join(out_dir, "overlays"), exist_ok=True)
                write_overlays(seq, preds, os.path.join(out_dir, "overlays", f"{seq.name}.jpg"), sequence_palette(seq))
            bar.set_postfix(fps=f"{frames_done / max(t_pred, 1e-9):.2f}")
        rows += score_sequence(seq, folder)
        held += score_sequence(seq, None, held_still=True)
    summary = write_scores(rows, out_dir)
    return dict(summary=summary, rows=rows, frames=frames_done, seconds=t_pred,
                fps=frames_done / t_pred if t_pred else None, baseline=summarize(held))


def sequence_palette(seq) -> List[int]:
    """The palette of the sequence's first annotation (DAVIS's when it has none)."""
    return Image.open(seq.first_annotation).getpalette() or davis_palette()


def write_masks(seq, preds: List[np.ndarray], folder: str):
    """The predicted id maps as DAVIS palette PNGs ``folder/00000.png``..., written whole or not at all (a
    temporary folder beside it, then renamed)."""
    palette = sequence_palette(seq)

    def fill(tmp):
        for i, p in enumerate(preds):
            write_annotation(os.path.join(tmp, f"{i:05d}.png"), p, palette)

    write_folder_atomic(folder, fill)


def write_scores(rows: List[Dict], out_dir: str) -> Dict:
    """``per_sequence.csv`` and ``summary.csv`` as davis2017-evaluation writes them (each written whole); returns
    the summary."""
    write_csv(os.path.join(out_dir, "per_sequence.csv"), ["Sequence", "Object"] + COLUMNS,
              [[r["sequence"], r["object"]] + [f"{r[k]:.4f}" for k in KEYS] for r in rows])
    summary = summarize(rows)
    if summary:
        write_csv(os.path.join(out_dir, "summary.csv"), list(summary), [[f"{v:.4f}" for v in summary.values()]])
    return summary


def format_table(result: Dict) -> str:
    lines = []
    per_seq: Dict[str, List[Dict]] = {}
    for r in result["rows"]:
        per_seq.setdefault(r["sequence"], []).append(r)
    lines.append(f"{'Sequence':<24} {'objects':>7} {'J-Mean':>7} {'F-Mean':>7} {'J&F':>7}")
    for name, rs in per_seq.items():
        j, f = np.mean([r["J_mean"] for r in rs]), np.mean([r["F_mean"] for r in rs])
        lines.append(f"{name:<24} {len(rs):>7} {j:>7.3f} {f:>7.3f} {(j + f) / 2:>7.3f}")
    s = result["summary"]
    if s:
        lines.append("  ".join(f"{k} {v:.3f}" for k, v in s.items()))
    if result.get("baseline"):
        lines.append(f"first-frame mask held still (no tracking): J&F-Mean {result['baseline']['J&F-Mean']:.3f}")
    if result.get("fps"):
        lines.append(f"{result['frames']} frames propagated at {result['fps']:.2f} frames/s")
    return "\n".join(lines)
