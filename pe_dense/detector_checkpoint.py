"""Checkpoints of whole detectors with a PE backbone, framework-free: the released layout <-> ours, and the rule that a
detector's backbone is loaded whole or refused.

One model (ViTDet's Mask R-CNN / Cascade Mask R-CNN with a PE tower and the simple feature pyramid), two layouts:

- **ours** (``pe_dense.detectron2.PEViTDetBackbone``): the tower under ``backbone.fpn.net.`` with the released PE
  names (position table ``(N, C)``), the pyramid under ``backbone.fpn.stages.I.J.`` (a conv and its norm as
  ``.J.0.`` and ``.J.1.``);
- **released** (perception_models' ``apps/detection``: Detectron2's ``SimpleFeaturePyramid(net=PEv1_det(...))``, the
  trained detectors of the hub's ``facebook/PE-Detection``): the tower under ``backbone.net.`` with the position table
  as ``(1, N, C)``, no class token, and RoPE tables stored as buffers (``rope_win.freqs_cos/sin``,
  ``rope_glb.freqs_cos/sin``, and the same two tensors again under every block's ``attn.rope.``); the pyramid under
  ``backbone.simfp_S.J.`` (S = log2 of the level's stride, a conv's norm as ``.J.norm.``).

The heads (``proposal_generator.*``, ``roi_heads.*``) are named alike in both. The released RoPE tables hold no
weights: they are checked against the tables this config implies (the released formula, positions ``i * g / n + 1``
on an n-token axis with g the pretraining grid: ours shifted by a constant, and RoPE attention depends on position
differences only) and then dropped, or refused, naming the window, global blocks and image size they were made for.

The released ``PEv1_det`` tiles the position table over the whole token grid at the table's own period; ours tiles the
table resized to the window. The two agree when the window equals the table's grid (the released G recipes: windows
of 32, a 32 x 32 table): only such configs are converted either way.
"""
from __future__ import annotations

import math
from typing import Dict, List, Tuple

import torch

from .checkpoint import CheckpointError
from .io import listed
from .modeling.pyramid import ConvNorm
from .modeling.rope import rope_frequencies

Tensor = torch.Tensor

TOWER = "backbone.fpn.net."          # ours
PYRAMID = "backbone.fpn.stages."     # ours
RELEASED_TOWER = "backbone.net."     # the released PEv1_det
_ROPE_MODULES = ("rope_win.", "rope_glb.")
_RELEASED_LN_EPS = 1e-5  # the released blocks' LayerNorm eps, whatever the config's norm_layer says


def is_released_layout(sd: Dict[str, Tensor]) -> bool:
    """A Detectron2 model whose backbone is the released ``SimpleFeaturePyramid(net=PEv1_det(...))``."""
    return any(k.startswith((RELEASED_TOWER + "transformer.resblocks.", RELEASED_TOWER + "conv1.")) for k in sd)


def released_rope(head_dim: int, pretrain_grid: int, n: int) -> Tuple[Tensor, Tensor]:
    """The released ``VisionRotaryEmbeddingFast`` tables for an n x n token grid, ``(freqs_cos, freqs_sin)`` of
    shape (n * n, head_dim), computed as the released code computes them (bit for bit): positions
    ``arange(n) / n * pretrain_grid + 1`` on each axis (``pt_hw_seq_len = pretrain_grid``, ``ft_seq_len = n``), times
    the frequencies, each angle repeated for its interleaved pair, x half then y half. The angles are
    ``rope_angles`` in ``"interpolate"`` mode shifted by a constant, which RoPE attention does not see."""
    t = torch.arange(n) / n * pretrain_grid + 1
    f = torch.outer(t, rope_frequencies(head_dim)).repeat_interleave(2, dim=-1)  # (n, head_dim / 2)
    ang = torch.cat([f[None, :, :].expand(n, n, -1), f[:, None, :].expand(n, n, -1)], dim=-1).reshape(n * n, -1)
    return ang.cos(), ang.sin()


def pyramid_names(fpn) -> Dict[str, str]:
    """Our pyramid's keys (under ``backbone.``) -> Detectron2's ``SimpleFeaturePyramid`` keys, for a
    ``pe_dense.modeling.SimpleFeaturePyramid`` ``fpn``."""
    names = {}
    for i, (stage, stride) in enumerate(zip(fpn.stages, fpn.strides.values())):
        s = int(math.log2(stride))
        for j, layer in enumerate(stage):
            for name in layer.state_dict():
                rel = name
                if isinstance(layer, ConvNorm):  # Sequential(conv, norm) -> Detectron2's Conv2d(norm=...)
                    sub, _, rest = name.partition(".")
                    rel = rest if sub == "0" else "norm." + rest
                names[f"fpn.stages.{i}.{j}.{name}"] = f"simfp_{s}.{j}.{rel}"
    return names


def _rope_grid(t: Tensor) -> int:
    n = int(round(math.sqrt(t.shape[0])))
    return n if n * n == t.shape[0] else -1


def _window_layout(net) -> str:
    glob = [i for i, b in enumerate(net.transformer.resblocks) if not b.window_size]
    return f"windows of {net.window_size} tokens, global attention in blocks {glob}" if net.window_size else \
        "global attention in every block"


def check_released_rope(rope: Dict[str, Tensor], net, image_size: int):
    """The released file's RoPE buffers (keys relative to the tower: ``rope_win.freqs_cos``, ...,
    ``transformer.resblocks.N.attn.rope.freqs_sin``) against the tables this config implies. Raises
    ``CheckpointError`` naming the window, global blocks and image size the file's tables were made for."""
    p, head_dim, grid = net.patch_size, net.width // net.heads, image_size // net.patch_size
    tables: Dict[int, Tuple[Tensor, Tensor]] = {}
    problems, sizes = [], {}
    for key, t in sorted(rope.items()):
        n = _rope_grid(t)
        if key.startswith("rope_win."):
            n_want = net.window_size or grid
        elif key.startswith("rope_glb."):
            n_want = grid
        else:
            i = int(key.split(".")[2])
            if i >= net.depth:
                problems.append(f"{key}: block {i}, the config's tower has {net.depth}")
                continue
            n_want = net.transformer.resblocks[i].window_size or grid
            sizes[i] = n
        if n != n_want or t.shape[-1] != head_dim:
            problems.append(f"{key}: a {n}x{n} table, the config needs {n_want}x{n_want}")
            continue
        if n not in tables:
            tables[n] = released_rope(head_dim, net.rope_grid, n)
        err = (t.float() - tables[n][0 if key.endswith("freqs_cos") else 1]).abs().max().item()
        if err > 1e-4:
            problems.append(f"{key}: values differ by {err:.2g} from positions i * {net.rope_grid} / {n} + 1 "
                            f"(made for another pretraining grid, pt_hw_seq_len)")
    if problems:
        glb = _rope_grid(rope["rope_glb.freqs_cos"]) if "rope_glb.freqs_cos" in rope else \
            max(sizes.values(), default=-1)
        made = [f"images of {glb * p} px ({glb}x{glb} tokens)"]
        if any(n != glb for n in sizes.values()):
            made.append(f"windows of {sorted({n for n in sizes.values() if n != glb})} tokens, global attention in "
                        f"blocks {sorted(i for i, n in sizes.items() if n == glb)}")
        raise CheckpointError(
            f"The detector's RoPE tables were made for another layout than this config's ({_window_layout(net)}, "
            f"images of {image_size} px). The file's: {', '.join(made)}. Mismatches ({len(problems)}): "
            f"{listed(problems, 4, '; ')}. Set model.backbone.vit.window_size, model.backbone.vit.global_blocks and "
            f"model.backbone.square_pad to the file's layout, or use the config it was trained with.")


def _check_exportable(net, image_size: int):
    """The released PEv1_det computes what this config computes: windows as wide as the position table (it tiles
    the table at its own period), RoPE interpolated (``intp_freq=True``), LayerNorm eps 1e-5, the square padding
    a multiple of the patch."""
    why = []
    if net.window_size and net.window_size != net.pos_grid:
        why.append(f"windows of {net.window_size} tokens but a {net.pos_grid}x{net.pos_grid} position table: the "
                   f"released PEv1_det tiles the table at its own period ({net.pos_grid}), this config tiles it "
                   f"resized to the window")
    if net.window_size and net.pos_embed_mode != "tile":
        why.append(f"pos_embed={net.pos_embed_mode!r} (the released recipe tiles: 'tile')")
    if net.rope_mode != "interpolate":
        why.append(f"rope={net.rope_mode!r} (the released PEv1_det interpolates: 'interpolate')")
    eps = {m.eps for m in net.modules() if isinstance(m, torch.nn.LayerNorm)}
    if eps != {_RELEASED_LN_EPS}:
        why.append(f"LayerNorm eps {sorted(eps)} (the released blocks use 1e-5)")
    if not image_size or image_size % net.patch_size:
        why.append(f"square_pad={image_size} (the released model needs a square size, a multiple of the patch)")
    if why:
        raise CheckpointError("The released detection code cannot compute what this config computes: "
                              + "; ".join(why) + ". Only configs it reproduces exactly are converted "
                              "(the released G recipes: windows of 32 over a 32x32 table).")


def from_released(sd: Dict[str, Tensor], fpn) -> Tuple[Dict[str, Tensor], Dict[str, Tensor]]:
    """A released-layout detector state dict -> (ours, the released RoPE buffers by their names in the tower), for
    our pyramid ``fpn`` (None: the pyramid's keys are left as they are). Only names and the position table's batch
    dimension change; keys it cannot place keep their names, so that the whole-load check names them."""
    out, rope = {}, {}
    pyr = {"backbone." + rel: "backbone." + ours for ours, rel in pyramid_names(fpn).items()} if fpn else {}
    for k, v in sd.items():
        if k.startswith(RELEASED_TOWER):
            name = k[len(RELEASED_TOWER):]
            if name.startswith(_ROPE_MODULES) or ".attn.rope." in name:
                rope[name] = v
                continue
            if name == "positional_embedding" and v.ndim == 3 and v.shape[0] == 1:
                v = v[0]
            out[TOWER + name] = v
        else:
            out[pyr.get(k, k)] = v
    return out, rope


def to_released(sd: Dict[str, Tensor], fpn, image_size: int) -> Tuple[Dict[str, Tensor], List[str]]:
    """Our detector state dict -> the released layout (with the RoPE buffers the released code stores), for the
    released ``SimpleFeaturePyramid(net=PEv1_det(...))`` built as ``released_kwargs`` says. Returns it and notes."""
    net = fpn.net
    _check_exportable(net, image_size)
    head_dim = net.width // net.heads
    grid = image_size // net.patch_size
    glb = released_rope(head_dim, net.rope_grid, grid)
    win = released_rope(head_dim, net.rope_grid, net.window_size) if net.window_size else glb
    pyr = {"backbone." + ours: "backbone." + rel for ours, rel in pyramid_names(fpn).items()}
    out, notes = {}, []
    for k, v in sd.items():
        if k.startswith(TOWER):
            name = k[len(TOWER):]
            if name == "class_embedding":
                notes.append("class_embedding left out: the released PEv1_det has no class token (this windowed "
                             "tower runs none)")
                continue
            if name == "positional_embedding":
                v = v.unsqueeze(0)
            out[RELEASED_TOWER + name] = v
        else:
            out[pyr.get(k, k)] = v
    for key, (cos, sin) in (("rope_win", win), ("rope_glb", glb)):
        out[f"{RELEASED_TOWER}{key}.freqs_cos"], out[f"{RELEASED_TOWER}{key}.freqs_sin"] = cos, sin
    for i, blk in enumerate(net.transformer.resblocks):
        cos, sin = win if blk.window_size else glb
        out[f"{RELEASED_TOWER}transformer.resblocks.{i}.attn.rope.freqs_cos"] = cos  # the same tensors: stored once
        out[f"{RELEASED_TOWER}transformer.resblocks.{i}.attn.rope.freqs_sin"] = sin
    return out, notes


def released_kwargs(fpn, image_size: int) -> dict:
    """The arguments of the released ``PEv1_det`` that compute what ``fpn.net`` computes (for the notes of
    ``pe-dense convert --to detectron2-released``)."""
    net = fpn.net
    blocks = net.transformer.resblocks
    return dict(img_size=image_size, patch_size=net.patch_size, embed_dim=net.width, depth=net.depth,
                num_heads=net.heads, mlp_ratio=blocks[0].mlp.c_fc.out_features / net.width,
                window_size=net.window_size, window_block_indexes=[i for i, b in enumerate(blocks) if b.window_size],
                pretrain_img_size=net.pos_grid * net.patch_size, pt_hw_seq_len=net.rope_grid, tile_posemb=True,
                pretrain_use_cls_token=net.cls_token,
                init_values=0.1 if hasattr(blocks[0].ls_1, "gamma") else None)  # any value: it builds LayerScale


def _looks_like(sd: Dict[str, Tensor], tower: str) -> str:
    keys = list(sd)
    if any(k.startswith("backbone.net.blocks.") for k in keys):
        return "Detectron2's own ViTDet (a ViT backbone under backbone.net.blocks.*), not a PE model"
    if any(k.startswith("backbone.bottom_up.") for k in keys):
        return "a CNN detector (backbone.bottom_up.*), not a PE model"
    if any(k.startswith(("conv1.", "transformer.resblocks.", "visual.", "blocks.")) for k in keys):
        return "PE tower weights alone, not a whole model"
    if any(k.startswith(tower) for k in keys):
        return "a pe_dense model of another size or layout"
    return "not a model with a PE backbone"


def check_backbone(sd: Dict[str, Tensor], target: Dict[str, Tensor], tower: str = TOWER, model_name: str = "",
                   whole: bool = False, allowed_missing=(), expected: str = "") -> Tuple[List[str], List[str]]:
    """The rule for a whole-model checkpoint ``sd`` (in our layout) loaded into a model whose state dict is
    ``target``, the PE tower's keys under ``tower``: the tower whole; the rest of ``backbone.`` (a detector's
    pyramid) whole or absent (a tower-only file: a backbone initialization); other keys of the file (heads) used
    where the model has them with the same shape. ``whole``: every key of the model must come from the file
    (evaluation, prediction). Raises ``CheckpointError`` naming the first unmatched keys and the layout expected
    (``expected`` adds to it); returns (keys of the model the file leaves at their initialization, keys of the file
    the model does not use)."""
    def shape(t):
        return tuple(t.shape)

    ours = [k for k in target if k.startswith("backbone.")]
    tower_keys = [k for k in ours if k.startswith(tower)]
    rest = [k for k in ours if not k.startswith(tower)]
    required = list(target) if whole else tower_keys + (rest if any(k in sd for k in rest) else [])
    missing = [k for k in required if k not in sd and k not in allowed_missing]
    unexpected = [k for k in sd if k.startswith("backbone.") and k not in target]
    wrong = [f"{k}: file {shape(sd[k])} vs model {shape(target[k])}" for k in target
             if k in sd and shape(sd[k]) != shape(target[k]) and (k.startswith("backbone.") or whole)]
    if missing or unexpected or wrong:
        lines = [f"The checkpoint does not fit this config's model{' (' + model_name + ')' if model_name else ''}; "
                 f"it looks like {_looks_like(sd, tower)}."]
        for title, items in (("shape mismatch", wrong), ("missing", missing), ("unexpected", unexpected)):
            if items:
                lines.append(f"  {title} ({len(items)}): " + listed(items, 6, "; "))
        lines.append(f"  Expected: the tower under {tower}* ({len(tower_keys)} tensors)"
                     + (f", the rest of the backbone ({len(rest)})" if rest else "")
                     + (" and the heads: every key of the model" if whole else "") + (expected and "; " + expected)
                     + ". Use the config the model was trained with.")
        raise CheckpointError("\n".join(lines))
    left = [k for k in target if k not in sd or shape(sd[k]) != shape(target[k])]
    unused = [k for k in sd if k not in target]
    return left, unused


_D2_EXPECTED = ("or the released layout (backbone.net.*, backbone.simfp_*); PE tower weights alone go to "
                "train.init_checkpoint of a training run")


def fit_detector(sd: Dict[str, Tensor], target: Dict[str, Tensor], fpn, image_size: int, model_name: str = "",
                 whole: bool = False) -> Tuple[Dict[str, Tensor], List[str]]:
    """Any detector checkpoint for a model with our backbone (``fpn``, on ``image_size`` px square inputs; ``target``
    the model's state dict): the released layout mapped onto ours and its RoPE tables checked, then
    ``check_backbone``. Returns the state dict to load and notes saying what was mapped, dropped or left at its
    initialization."""
    notes: List[str] = []
    released = is_released_layout(sd)
    if released:
        sd, rope = from_released(sd, fpn)
        allowed = (TOWER + "class_embedding",) if fpn.net.cls_token else ()
        left, unused = check_backbone(sd, target, TOWER, model_name, whole, allowed, _D2_EXPECTED)
        _check_exportable(fpn.net, image_size)
        notes.append("released layout (perception_models' PEv1_det in Detectron2's SimpleFeaturePyramid) mapped onto "
                     "this config's")
        if rope:
            check_released_rope(rope, fpn.net, image_size)
            notes.append(f"{len(rope)} RoPE buffers of the released tower (rope_win, rope_glb and each block's "
                         f"attn.rope) equal this config's tables and are dropped (RoPE holds no weights here)")
        if allowed and TOWER + "class_embedding" in left:
            left.remove(TOWER + "class_embedding")
            notes.append("class_embedding keeps its initialization: the released PEv1_det has no class token, and "
                         "this windowed tower runs none (use_cls_token=False): the outputs do not depend on it")
    else:
        left, unused = check_backbone(sd, target, TOWER, model_name, whole, (), _D2_EXPECTED)
    if left:
        notes.append(f"partial load: {len(left)} tensor(s) of the model keep their initialization: "
                     + listed(left, 6))
    if unused:
        notes.append(f"{len(unused)} tensor(s) of the file are not used by the model: " + listed(unused, 6))
    return sd, notes


# ---------------------------------------------------------------------------------------------------- DETA
DETA_TOWER = "backbone.levels.net."        # ours (pe_dense.detectron2.deta.PEDETABackbone)
DETA_LEVELS = "backbone.levels."
RELEASED_DETA_BODY = "backbone.0.body."    # the released DETA_pe (Joiner(PEv1Backbone).0.body = PEv1_simpleFPN)
_DETA_CLASS_HEADS = ("class_embed.", "transformer.decoder.class_embed.")
_DETA_EXPECTED = ("or the released DETA_pe layout (backbone.0.body.*, transformer.*, class_embed.*, bbox_embed.*, "
                  "input_proj.*); PE tower weights alone go to train.init_checkpoint of a training run")


def is_released_deta(sd: Dict[str, Tensor]) -> bool:
    """A checkpoint of the released DETA_pe (``deta_coco_1824pix.pth``): the PE tower under ``backbone.0.body.``."""
    return any(k.startswith(RELEASED_DETA_BODY) for k in sd)


def deta_from_released(sd: Dict[str, Tensor]) -> Tuple[Dict[str, Tensor], Dict[str, Tensor]]:
    """The released DETA_pe's names -> ours: the tower ``backbone.0.body.X`` -> ``backbone.levels.net.X`` (position
    table (1, N, C) -> (N, C)), its levels ``backbone.0.body.fpn1.*`` -> ``backbone.levels.fpn1.*``; the head's names
    are the released ones. Returns (state dict, the RoPE buffers by their names in the tower)."""
    out, rope = {}, {}
    for k, v in sd.items():
        if not k.startswith(RELEASED_DETA_BODY):
            out[k] = v
            continue
        name = k[len(RELEASED_DETA_BODY):]
        if name.startswith(_ROPE_MODULES) or ".attn.rope." in name:
            rope[name] = v
        elif name.startswith("fpn1."):
            out[DETA_LEVELS + name] = v
        else:
            out[DETA_TOWER + name] = v[0] if name == "positional_embedding" and v.ndim == 3 and v.shape[0] == 1 else v
    return out, rope


def select_classes(sd: Dict[str, Tensor], target: Dict[str, Tensor], class_ids) -> List[str]:
    """The released DETA heads score one output per dataset category id (COCO: 91 = ids 0..90, Objects365: 366);
    Detectron2 scores its contiguous classes. With ``class_ids[c]`` the category id of class c (the dataset's
    ``thing_dataset_id_to_contiguous_id`` inverted), each class head's rows are taken in that order. Returns notes."""
    notes = []
    for k in [k for k in sd if k.startswith(_DETA_CLASS_HEADS)]:
        if k not in target or sd[k].shape == target[k].shape or class_ids is None:
            continue
        rows, want = sd[k].shape[0], target[k].shape[0]
        ids = [int(i) for i in class_ids]
        if len(ids) != want or max(ids) >= rows:
            raise CheckpointError(
                f"{k}: the file scores {rows} outputs (category ids 0..{rows - 1}), the model {want} classes whose "
                f"category ids run to {max(ids)} ({len(ids)} given): the file was trained on another dataset; "
                f"set model.num_classes and the dataset to the file's, or train the heads anew")
        sd[k] = sd[k][ids]
        if not notes:
            notes.append(f"class heads: the file's {rows} outputs (by category id) mapped to this dataset's {want} "
                         f"classes (category ids {ids[:3]}..{ids[-1]})")
    return notes


def fit_deta(sd: Dict[str, Tensor], target: Dict[str, Tensor], net, image_size: int, class_ids=None,
             model_name: str = "", whole: bool = False, reinit=()) -> Tuple[Dict[str, Tensor], List[str]]:
    """Any DETA checkpoint for our ``DETA`` (tower ``net`` on ``image_size`` px squares; ``target`` the model's state
    dict): the released DETA_pe layout mapped and its RoPE tables checked against this config (positions
    ``i * rope_grid / n + 1``, windows and image size), class heads mapped by category id, then the whole-load rule
    (``check_backbone``: tower whole, levels whole or absent, heads partial only on purpose). ``reinit``: prefixes of
    the model's keys not taken from the file (new class heads at a change of dataset). Returns (state dict, notes)."""
    notes: List[str] = []
    if is_released_deta(sd):
        sd, rope = deta_from_released(sd)
        notes.append("released DETA_pe layout (backbone.0.body = PEv1_simpleFPN) mapped onto this config's")
        allowed = (DETA_TOWER + "class_embedding",) if net.cls_token else ()
        if rope:
            check_released_rope(rope, net, image_size)
            notes.append(f"{len(rope)} RoPE buffers of the released tower equal this config's tables and are dropped")
    else:
        allowed = ()
    if reinit:
        if whole:
            raise CheckpointError(f"model.reinit={list(reinit)} re-initializes heads, but evaluation needs every "
                                  f"tensor from the file: set model.reinit=[] (or use the config it was trained with)")
        dropped = [k for k in sd if k.startswith(tuple(reinit))]
        sd = {k: v for k, v in sd.items() if k not in dropped}
        notes.append(f"model.reinit: {len(dropped)} tensor(s) of the file not used, re-initialized on purpose: "
                     + listed(dropped, 4))
    else:
        notes += select_classes(sd, target, class_ids)
    left, unused = check_backbone(sd, target, DETA_TOWER, model_name, whole, allowed, _DETA_EXPECTED)
    if allowed and DETA_TOWER + "class_embedding" in left:
        left.remove(DETA_TOWER + "class_embedding")
        notes.append("class_embedding keeps its initialization: the released tower has none, and this windowed "
                     "tower runs none")
    if left:
        notes.append(f"partial load: {len(left)} tensor(s) of the model keep their initialization: " + listed(left, 6))
    if unused:
        notes.append(f"{len(unused)} tensor(s) of the file are not used by the model: " + listed(unused, 6))
    return sd, notes
