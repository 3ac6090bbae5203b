"""Released checkpoint formats -> ``PEViT`` weights.

Reads: the released PE format (``conv1.weight``, ``transformer.resblocks.N.*``; with or without ``visual.`` /
``module.`` prefixes; bare or wrapped in ``state_dict`` / ``model`` / ``weights``), timm's ``vit_pe_*`` state dicts
(``patch_embed.proj``, ``blocks.N.attn.qkv``), pe_dense files (the released names) and ``.safetensors`` files.
Only ``torch.load(..., weights_only=True)``: nothing is unpickled blindly.

Adapts: ``conv1`` is resampled (bicubic, as the released detection recipe converts 14 -> 16) when the model's patch
size differs; the position table is resized (bilinear; bicubic in ``pos_embed="bicubic"`` mode) or tiled
(``pos_embed="tile"``) to the model's table grid. PE-Core's image-level heads (``ln_post``, ``attn_pool``,
``proj``) are not part of a dense backbone and are dropped.
"""
from __future__ import annotations

import math
import os
import re
from typing import Dict

import torch
import torch.nn.functional as F

from .errors import PEDenseError
from .io import error_summary, listed
from .modeling.vit import resize_grid, tile_grid
from .specs import SPECS

Tensor = torch.Tensor

# keys of PE-Core's image-level heads, unused by a dense backbone
# where the tower and the pyramid sit in the Detectron2 models of the shipped configs (pe_dense.detectron2's backbone)
DETECTRON2_TOWER = "backbone.fpn.net."
DETECTRON2_PYRAMID = "backbone.fpn."
_HEAD_PREFIXES = ("ln_post.", "attn_pool.", "proj", "norm.", "head.", "fc_norm.")
_WRAPPERS = ("state_dict", "model", "weights", "module", "model_ema")
_PREFIXES = ("module.", "visual.", "backbone.net.", "backbone.", "encoder.", "trunk.")

_TIMM_SWAPS = [
    ("patch_embed.proj.", "conv1."),
    ("pos_embed", "positional_embedding"),
    ("cls_token", "class_embedding"),
    ("norm_pre.", "ln_pre."),
    ("blocks.", "transformer.resblocks."),
    (".norm1.", ".ln_1."),
    (".norm2.", ".ln_2."),
    (".gamma_1", ".ls_1.gamma"),
    (".gamma_2", ".ls_2.gamma"),
    (".attn.qkv.weight", ".attn.in_proj_weight"),
    (".attn.qkv.bias", ".attn.in_proj_bias"),
    (".attn.proj.", ".attn.out_proj."),
    (".mlp.fc1.", ".mlp.c_fc."),
    (".mlp.fc2.", ".mlp.c_proj."),
]


class CheckpointError(PEDenseError, RuntimeError):
    """A checkpoint that cannot serve the model it is loaded into."""


class RefusedFileError(CheckpointError):
    """A file that could only be read by running code from it (a pickle naming arbitrary globals): never loaded."""


def _hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    import socket

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _hub_fetch(model_id: str) -> str:
    filename = SPECS[model_id.split("/", 1)[1]].hub_filename
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:  # pragma: no cover - huggingface_hub is a dependency
        raise CheckpointError(f"huggingface_hub is needed to fetch {model_id}: pip install huggingface_hub") from e
    online = _hub_reachable()
    try:  # offline: the local cache only, at once (no retries)
        return hf_hub_download(repo_id=model_id, filename=filename, local_files_only=not online)
    except Exception as e:  # offline, gated, or no such repository
        why = ("offline: the hub is unreachable and the file is not in the cache" if not online
               else error_summary(e))
        raise CheckpointError(
            f"Could not fetch {model_id} ({why}).\n"
            f"Download {filename} from https://huggingface.co/{model_id} on a machine that is online, "
            f"then pass its path instead of the id (pretrained='/path/to/{filename}'), or place it in the "
            f"Hugging Face cache (HF_HOME) and set HF_HUB_OFFLINE=1."
        ) from e


def hub_name(path_or_id: str) -> bool:
    """True when ``path_or_id`` names released weights on the hub (a model name, or ``ORG/NAME`` with NAME one),
    which ``resolve`` fetches; nothing is fetched here."""
    s = str(path_or_id)
    m = re.fullmatch(r"[\w.-]+/([\w.-]+)", s)
    return s in SPECS or bool(m and m.group(1) in SPECS)


def resolve(path_or_id: str) -> str:
    """A local path stays; a released model name or a hub id ``ORG/NAME`` (NAME a released model, e.g.
    ``facebook/PE-Spatial-B16-512``) is fetched from the hub (offline: from its cache only, without retries).
    Anything else that is not an existing file is a ``FileNotFoundError`` at once."""
    path_or_id = os.path.expanduser(str(path_or_id))
    if os.path.exists(path_or_id):
        if os.path.isdir(path_or_id):
            raise IsADirectoryError(f"Checkpoint {path_or_id} is a directory: pass the weights file inside it")
        return path_or_id
    if hub_name(path_or_id):
        return _hub_fetch(SPECS[path_or_id].hub_id if path_or_id in SPECS else path_or_id)
    raise FileNotFoundError(
        f"Checkpoint not found: {path_or_id} (no such file; hub ids are ORG/NAME with NAME one of "
        f"{', '.join(SPECS)}, e.g. facebook/PE-Spatial-B16-512)")


class _WeightsUnpickler:
    """Reads Detectron2 / Caffe2 model-zoo ``.pkl`` files (dicts of numpy arrays) without running code: only numpy's
    array reconstruction and ``OrderedDict`` may be named by the pickle; any other global refuses the file."""

    ALLOWED = {("collections", "OrderedDict"), ("numpy", "ndarray"), ("numpy", "dtype"),
               ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}

    @classmethod
    def load(cls, path: str):
        import pickle

        class Restricted(pickle.Unpickler):
            def find_class(self, module, name):
                if (module, name) in cls.ALLOWED or (module.startswith("numpy") and name.endswith("DType")):
                    return super().find_class(module, name)
                raise RefusedFileError(
                    f"Refused {path}: the pickle names {module}.{name}, and unpickling it could run code. Only "
                    f"tensors, numpy arrays and plain containers are read from weights files; nothing else is "
                    f"unpickled.")

        with open(path, "rb") as f:
            return Restricted(f, encoding="latin1").load()


def safe_load(path: str, map_location="cpu"):
    """Any weights/state file, without running code: ``.safetensors`` by safetensors, ``.pkl`` through a restricted
    unpickler (numpy arrays only), everything else by ``torch.load(weights_only=True)``. A file that would need
    code to be read is refused with ``CheckpointError``, saying so; an empty or truncated file likewise."""
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"Could not read checkpoint {path}: the file is empty (0 bytes). Re-download or "
                              f"re-create it.")
    import pickle

    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(path, device="cpu")
        if path.endswith(".pkl"):
            return _WeightsUnpickler.load(path)
        import argparse

        # argparse.Namespace: the released DETA_pe saves its command line beside the weights; a Namespace only
        # holds attributes (themselves read under the same rules), so reading it runs no code
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location=map_location, weights_only=True)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as e:
        if "Weights only load failed" in str(e):
            what = re.search(r"GLOBAL ([\w.]+)", str(e))
            raise RefusedFileError(
                f"Refused {path}: it holds Python objects beyond tensors and plain containers"
                + (f" ({what.group(1)})" if what else "") + ", and unpickling them could run code. Only weights "
                "files are read (torch.load with weights_only=True); re-save the state dict alone "
                "(torch.save(model.state_dict(), ...)) or use safetensors.") from None
        raise CheckpointError(f"Could not read checkpoint {path}: {error_summary(e, 300)}. The file "
                              f"may be truncated (re-download it) or not a weights file.") from e
    except Exception as e:
        raise CheckpointError(
            f"Could not read checkpoint {path}: {error_summary(e, 300)}. "
            f"The file may be truncated (re-download it) or not a PyTorch/safetensors weights file."
        ) from e


def read_state_dict(path_or_id: str) -> Dict[str, Tensor]:
    """Reads a checkpoint file (``safe_load``) and unwraps it to a flat state dict."""
    path = resolve(path_or_id)
    return unwrap(safe_load(path), path)


def unwrap(sd, where: str = "checkpoint") -> Dict[str, Tensor]:
    """{"state_dict": {...}}, {"model": {...}}, ... -> the flat dict of tensors."""
    for _ in range(3):
        if not isinstance(sd, dict) or any(k.endswith(("conv1.weight", "patch_embed.proj.weight")) for k in sd):
            break
        inner = next((sd[k] for k in _WRAPPERS if isinstance(sd.get(k), dict)), None)
        if inner is None:
            break
        sd = inner
    if not isinstance(sd, dict) or not any(isinstance(v, Tensor) for v in sd.values()):
        raise CheckpointError(f"{where} holds no state dict of tensors")
    return {k: v for k, v in sd.items() if isinstance(v, Tensor)}


def to_detectron2(sd: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """A tower's state dict under the keys of the Detectron2 model (``backbone.fpn.net.*``), so that
    ``train.init_checkpoint`` loads it in Detectron2's own tools; the pyramid and heads keep their initialization."""
    return {DETECTRON2_TOWER + k: v for k, v in sd.items()}


def split_detectron2(sd: Dict[str, Tensor]):
    """A Detectron2 model's state dict of one of our configs -> (tower, pyramid) state dicts with their own keys;
    ``None`` when ``sd`` is not such a model (no ``backbone.fpn.net.*`` keys)."""
    if not any(k.startswith(DETECTRON2_TOWER) for k in sd):
        return None
    tower = {k[len(DETECTRON2_TOWER):]: v for k, v in sd.items() if k.startswith(DETECTRON2_TOWER)}
    pyramid = {k[len(DETECTRON2_PYRAMID):]: v for k, v in sd.items()
               if k.startswith(DETECTRON2_PYRAMID) and not k.startswith(DETECTRON2_TOWER)}
    return tower, pyramid


def to_released_names(sd: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Any supported format -> released PE names, prefixes stripped, image-level heads dropped."""
    sd = dict(sd)
    changed = True
    while changed:
        changed = False
        for pre in _PREFIXES:
            if sd and all(k.startswith(pre) for k in sd):
                sd = {k[len(pre):]: v for k, v in sd.items()}
                changed = True
        if any(k.startswith("visual.") for k in sd):  # CLIP-style files: keep the vision tower only
            sd = {k[len("visual."):]: v for k, v in sd.items() if k.startswith("visual.")}
            changed = True
    if any(k.startswith(("blocks.", "patch_embed.")) for k in sd):  # timm
        out = {}
        for k, v in sd.items():
            for a, b in _TIMM_SWAPS:
                k = k.replace(a, b)
            if k == "class_embedding":
                v = v.reshape(-1)
            elif k == "positional_embedding":
                v = v.reshape(-1, v.shape[-1])
            out[k] = v
        sd = out
    elif "positional_embedding" in sd and sd["positional_embedding"].ndim == 3:  # detectron2 recipe files
        sd["positional_embedding"] = sd["positional_embedding"][0]
    return {k: v for k, v in sd.items() if not k.startswith(_HEAD_PREFIXES) and not k.startswith("rope")}


def guess_model(sd: Dict[str, Tensor]) -> str:
    """The released tower a (released-names) state dict looks like."""
    try:
        width = sd["conv1.weight"].shape[0]
        patch = sd["conv1.weight"].shape[-1]
        depth = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("transformer.resblocks."))
        cls = "class_embedding" in sd
        n = sd["positional_embedding"].shape[0] - int(cls)
    except (KeyError, ValueError, IndexError):
        return "not a PE vision tower"
    grid = int(round(math.sqrt(n)))
    cands = [s for s in SPECS.values() if s.width == width and s.depth == depth and s.cls_token == cls]
    exact = [s.name for s in cands if s.patch_size == patch and s.grid == grid]
    if exact:
        return " or ".join(exact)
    if cands:
        return " or ".join(s.name for s in cands) + f" (patch {patch}, {grid}x{grid} position table)"
    return f"an unknown PE-like tower (width {width}, depth {depth}, patch {patch}, class token {cls})"


def resample_patch_embed(w: Tensor, patch: int) -> Tensor:
    """conv1 kernel resampled to ``patch`` (bicubic, align_corners=False: the released 14 -> 16 conversion)."""
    if w.shape[-1] == patch and w.shape[-2] == patch:
        return w
    return F.interpolate(w.float(), size=(patch, patch), mode="bicubic", align_corners=False).to(w.dtype)


def resample_pos_table(pos: Tensor, cls: bool, grid: int, mode: str) -> Tensor:
    """Position table (cls + g*g, C) -> (cls + grid*grid, C): resized (bilinear / bicubic) or tiled."""
    prefix, table = pos[: int(cls)], pos[int(cls):]
    g = int(round(math.sqrt(table.shape[0])))
    if g * g != table.shape[0]:
        raise CheckpointError(f"position table with {table.shape[0]} patch rows is not a square grid")
    if g == grid:
        return pos
    t = table.reshape(1, g, g, -1).permute(0, 3, 1, 2).float()
    t = tile_grid(t, (grid, grid)) if mode == "tile" else resize_grid(t, (grid, grid), mode)
    t = t.permute(0, 2, 3, 1).reshape(grid * grid, -1).to(pos.dtype)
    return torch.cat([prefix, t], dim=0)


def adapt_state_dict(sd: Dict[str, Tensor], model, strict: bool = True) -> Dict[str, Tensor]:
    """Released-names state dict -> exactly the model's keys and shapes, or a CheckpointError saying why.

    ``strict=False`` lets keys be missing (they keep the model's values) or unexpected (dropped); shapes and
    dtypes must fit either way."""
    target = model.state_dict()
    sd = dict(sd)
    looks_like = guess_model(sd)
    bad_dtype = [f"{k}: {v.dtype}" for k, v in sd.items()
                 if k in target and target[k].is_floating_point() and not v.is_floating_point()]
    if bad_dtype:
        raise CheckpointError(
            f"Checkpoint tensors that should be floating-point weights are not ({len(bad_dtype)}): "
            + "; ".join(bad_dtype[:8]) + (" ..." if len(bad_dtype) > 8 else "")
            + ". Casting integers or booleans to weights would load garbage: this is not a weights file of "
            f"{model.name}.")
    if "conv1.weight" in sd:
        sd["conv1.weight"] = resample_patch_embed(sd["conv1.weight"], model.patch_size)
    if model.cls_token and "class_embedding" not in sd and "positional_embedding" in sd:
        raise CheckpointError(
            f"{model.name} has a class token but the checkpoint has none: it looks like {looks_like}")
    if "positional_embedding" in sd:
        pos = sd["positional_embedding"]
        if "class_embedding" in sd and not model.cls_token:
            pos = pos[1:]  # a class-token checkpoint into a model without one
            sd.pop("class_embedding")
        if pos.ndim == 2 and pos.shape[-1] == target["positional_embedding"].shape[-1]:
            pos = resample_pos_table(pos, model.cls_token, model.pos_grid, model.pos_embed_mode)
        sd["positional_embedding"] = pos
    check_fit(sd, target, strict, f"Checkpoint does not fit {model.name}; it looks like {looks_like}.",
              "Create the model that matches the file (pe_dense.create_model(NAME)), or pass the checkpoint of the "
              "model you created.")
    return sd


def check_fit(sd: Dict[str, Tensor], target: Dict[str, Tensor], strict: bool, title: str, fix: str):
    """Raises ``CheckpointError`` (``title``, then the shape mismatches, missing and unexpected keys, then ``fix``)
    when ``sd`` does not fit the ``target`` state dict: shapes always, keys when ``strict``."""
    missing = [k for k in target if k not in sd] if strict else []
    unexpected = [k for k in sd if k not in target] if strict else []
    wrong = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(target[k].shape)}"
             for k in target if k in sd and sd[k].shape != target[k].shape]
    if missing or unexpected or wrong:
        lines = [title]
        for what, items in (("shape mismatch", wrong), ("missing keys", missing), ("unexpected keys", unexpected)):
            if items:
                lines.append(f"  {what} ({len(items)}): " + listed(items, 8, "; "))
        lines.append("  " + fix)
        raise CheckpointError("\n".join(lines))


def load_checkpoint(model, path_or_id, strict: bool = True, assign: bool = False):
    """Loads any supported checkpoint into a ``PEViT`` (in place) and returns the model.

    ``path_or_id``: a file (``.pt``/``.pth``/``.safetensors``), a hub id (``facebook/PE-Spatial-B16-512``) or a
    model name, or an already read state dict. ``strict=False``: keys the file lacks keep the model's values and
    keys the model lacks are dropped, each listed in a warning; shapes and dtypes must still fit.
    ``assign=True``: the model's parameters become the checkpoint's tensors instead of being copied into (PyTorch's
    ``load_state_dict(assign=True)``): build the model on the meta device first (``with torch.device("meta"):``)
    and a 1.8B tower is in memory once, not twice.
    """
    sd = unwrap(path_or_id, "state dict") if isinstance(path_or_id, dict) else read_state_dict(path_or_id)
    sd = adapt_state_dict(to_released_names(sd), model, strict=strict)
    target = model.state_dict()
    if not strict:
        missing = [k for k in target if k not in sd]
        unexpected = [k for k in sd if k not in target]
        sd = {k: v for k, v in sd.items() if k in target}
        if missing or unexpected:
            import warnings

            warnings.warn(f"load_checkpoint(strict=False) into {model.name}: {len(missing)} key(s) not in the file "
                          f"keep the model's values {missing[:8]}; {len(unexpected)} unexpected key(s) dropped "
                          f"{unexpected[:8]}", stacklevel=2)
    with torch.no_grad():
        model.load_state_dict(sd, strict=strict, assign=assign)
    return model
