"""PE-Core as CLIP: ``create_clip(name, pretrained)``, the tokenizer, the image transform, and loading the released
CLIP checkpoints whole.

Files read (the same files and hub ids as the vision weights: ``facebook/PE-Core-*`` holds the whole CLIP model):
- the released layout: ``visual.*`` (the vision tower under the released names, ``visual.ln_post``,
  ``visual.attn_pool.*``, ``visual.proj``) beside the text tower's keys (``token_embedding.weight``,
  ``positional_embedding``, ``transformer.resblocks.N.*``, ``ln_final.*``, ``text_projection``) and ``logit_scale``;
- OpenCLIP's layout (``open_clip.create_model('PE-Core-T-16-384', ...)``, the ``timm/PE-Core-*`` hub files):
  ``visual.trunk.*`` under timm's names (``attn_pool.latent``, ``attn_pool.q`` / ``kv``, ``head.weight``), ``text.*``.
A file is loaded whole or refused naming the keys; a vision-only file (PE-Spatial, timm's image tower) is refused
saying that a text tower is needed.

The tokenizer is OpenCLIP's ``SimpleTokenizer`` (OpenAI CLIP's BPE, lower-cased, ``ftfy``-cleaned), which the released
``core/vision_encoder/tokenizer.py`` copies; padded with 0 and cut to the model's context length with the
end-of-text token kept last.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable, Dict, List, Sequence, Union

import torch

from .checkpoint import (
    CheckpointError,
    check_fit,
    guess_model,
    read_state_dict,
    resample_pos_table,
    to_released_names,
    unwrap,
)
from .errors import PEDenseError
from .factory import model_kwargs
from .io import listed
from .modeling.clip import PECLIP
from .specs import ATTN_POOL_HEADS, PIXEL_MEAN, PIXEL_STD, get_spec, get_text_spec, list_clip_models

Tensor = torch.Tensor

# timm's names of the image head -> the released ones (timm's eva.py _convert_pe, inverted)
_TIMM_HEAD = [("attn_pool.latent", "attn_pool.probe"), ("attn_pool.proj.", "attn_pool.attn.out_proj."),
              ("attn_pool.norm.", "attn_pool.layernorm."), ("attn_pool.mlp.fc1.", "attn_pool.mlp.c_fc."),
              ("attn_pool.mlp.fc2.", "attn_pool.mlp.c_proj.")]
_TEXT_KEYS = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.", "text_projection")


def create_clip(name: str, pretrained: Union[None, bool, str, dict] = None, **overrides) -> PECLIP:
    """A released PE-Core model as CLIP (vision tower with its attention-pooling head and projection, text tower).

    Args:
        name: one of ``pe_dense.list_clip_models()`` (PE-Core-T16-384 ... PE-Core-G14-448).
        pretrained: None/False (random init), True (the released weights, ``facebook/NAME``), or a path / hub id /
            state dict in the released or OpenCLIP layout (``load_clip``).
        overrides: vision-tower arguments of ``create_model`` that keep the released image embedding meaningful
            (``img_size``, ``act_checkpoint``, ``ln_eps``, ``fit``; e.g. ``fit="resize"``).
    """
    spec, text = get_spec(name), get_text_spec(name)
    allowed = {"img_size", "act_checkpoint", "ln_eps", "fit", "compile_blocks"}
    bad = sorted(set(overrides) - allowed)
    if bad:
        raise PEDenseError(f"create_clip does not take {bad}: the image embedding needs the released tower "
                           f"(global attention, its class token, every block); it takes {sorted(allowed)}")
    vision = dict(model_kwargs(spec.name, **overrides), output_dim=spec.output_dim, pool_heads=ATTN_POOL_HEADS)
    model = PECLIP(vision, dict(context_length=text.context_length, width=text.width, heads=text.heads,
                                layers=text.layers, output_dim=text.output_dim, mlp_ratio=text.mlp_ratio,
                                vocab_size=text.vocab_size, eps=vision.get("ln_eps", 1e-5)))
    if pretrained:
        load_clip(model, spec.hub_id if pretrained is True else pretrained)
    return model


def clip_state_dict(sd: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """A CLIP checkpoint in the released or OpenCLIP layout -> the released keys (``PECLIP``'s)."""
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    if not any(k.startswith("visual.") for k in sd) and any(
            k.endswith(("conv1.weight", "patch_embed.proj.weight")) for k in sd):  # a vision tower alone
        return {"visual." + k: v for k, v in to_released_names(sd).items()}
    visual = {k[len("visual."):]: v for k, v in sd.items() if k.startswith("visual.")}
    rest = {k: v for k, v in sd.items() if not k.startswith("visual.")}
    if any(k.startswith("text.") for k in rest):  # OpenCLIP: the text tower under text.
        rest = {(k[len("text."):] if k.startswith("text.") else k): v for k, v in rest.items()}
    heads = {}
    if any(k.startswith("trunk.") for k in visual):  # OpenCLIP over timm: visual.trunk.<timm names>
        trunk = {k[len("trunk."):]: v for k, v in visual.items() if k.startswith("trunk.")}
        for k, v in trunk.items():
            if k == "norm.weight" or k == "norm.bias":
                heads["ln_post." + k.split(".")[1]] = v
            elif k == "head.weight":
                heads["proj"] = v.t()
            elif k == "head.bias":
                if v.abs().max() > 0:
                    raise CheckpointError("the image head has a non-zero bias (timm's head.bias): PE-Core's "
                                          "projection has none, so this is not a PE-Core CLIP file")
            elif k.startswith("attn_pool."):
                if k.startswith(("attn_pool.q.", "attn_pool.kv.")):
                    continue
                for a, b in _TIMM_HEAD:
                    k = k.replace(a, b)
                heads[k] = v
        for part in ("weight", "bias"):
            if f"attn_pool.q.{part}" in trunk and f"attn_pool.kv.{part}" in trunk:
                heads[f"attn_pool.attn.in_proj_{part}"] = torch.cat(
                    [trunk[f"attn_pool.q.{part}"], trunk[f"attn_pool.kv.{part}"]])
        tower = {k: v for k, v in trunk.items() if not k.startswith(("norm.", "head.", "attn_pool.", "fc_norm."))}
    else:
        heads = {k: v for k, v in visual.items() if k.startswith(("ln_post.", "attn_pool.")) or k == "proj"}
        tower = {k: v for k, v in visual.items() if k not in heads}
    out = {"visual." + k: v for k, v in to_released_names(tower).items()} if tower else {}
    out.update({"visual." + k: v for k, v in heads.items()})
    out.update(rest)
    return out


def load_clip(model: PECLIP, path_or_id, strict: bool = True) -> PECLIP:
    """Loads a PE-Core CLIP checkpoint into ``model`` whole, or raises ``CheckpointError`` naming the keys; a file
    with no text tower is refused saying what is needed."""
    raw = unwrap(path_or_id, "state dict") if isinstance(path_or_id, dict) else read_state_dict(path_or_id)
    sd = clip_state_dict(raw)
    if not any(k.startswith(_TEXT_KEYS) for k in sd):
        tower = guess_model(to_released_names(raw))
        raise CheckpointError(
            f"{path_or_id if isinstance(path_or_id, str) else 'the state dict'} has no text tower (it looks like "
            f"{tower}): text needs a PE-Core CLIP checkpoint ({', '.join(list_clip_models())}: the released "
            f"facebook/PE-Core-* files or OpenCLIP's timm/PE-Core-* files), not a vision tower alone (PE-Spatial, "
            f"PE-Lang, or timm's image model).")
    if any(k.startswith("visual.") for k in sd) and not any(k.startswith(("visual.attn_pool.", "visual.proj"))
                                                          for k in sd):
        raise CheckpointError("the checkpoint's vision tower has no image head (attn_pool, proj): it is not a "
                              "PE-Core CLIP file")
    target = model.state_dict()
    pos = sd.get("visual.positional_embedding")
    if pos is not None and pos.shape != target["visual.positional_embedding"].shape:
        v = model.visual
        sd["visual.positional_embedding"] = resample_pos_table(pos, v.cls_token, v.pos_grid, v.pos_embed_mode)
    check_fit(sd, target, strict, f"Checkpoint does not fit {model.name} as CLIP.",
              f"Create the CLIP model that matches the file (pe_dense.create_clip(NAME), NAME one of "
              f"{', '.join(list_clip_models())}).")
    with torch.no_grad():
        model.load_state_dict({k: v for k, v in sd.items() if k in target}, strict=strict)
    return model


@lru_cache(maxsize=None)
def _tokenizer():
    try:
        from open_clip.tokenizer import SimpleTokenizer
    except ImportError as e:
        raise PEDenseError("the text tokenizer is OpenCLIP's: pip install 'pe-dense[text]' (open-clip-torch)") from e
    return SimpleTokenizer()


def tokenize(texts: Union[str, Sequence[str]], context_length: int) -> Tensor:
    """Texts -> (N, context_length) int64 token ids as the released tokenizer gives them (start and end-of-text
    tokens, zero padding; a longer text is cut with its end-of-text token kept last)."""
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        raise PEDenseError("no texts to tokenize (an empty list)")
    bad = [t for t in texts if not isinstance(t, str)]
    if bad:
        raise PEDenseError(f"texts must be strings, got {listed([repr(b) for b in bad], 3)}")
    return _tokenizer()(texts, context_length=context_length)


def image_transform(image_size: int):
    """The released PE-Core image transform (``core/vision_encoder/transforms.py``): a PIL image squashed to
    ``image_size`` x ``image_size`` (bilinear), to RGB, scaled to [0, 1], normalized with mean 0.5 / std 0.5."""
    import torchvision.transforms as T

    return T.Compose([T.Resize((image_size, image_size), interpolation=T.InterpolationMode.BILINEAR),
                      T.Lambda(lambda x: x.convert("RGB")), T.ToTensor(), T.Normalize(PIXEL_MEAN, PIXEL_STD)])


def templates(which: str = "imagenet80") -> List[Callable[[str], str]]:
    """Prompt templates: ``imagenet80`` (CLIP's 80 ImageNet prompts, the zero-shot protocol's ensemble), ``simple``
    (its 7-prompt subset), ``none`` (the class name alone), or a text file with one template per line holding
    ``{}`` where the class name goes."""
    import os

    if which in ("imagenet80", "simple"):
        try:
            from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES
        except ImportError as e:
            raise PEDenseError("the prompt templates are OpenCLIP's: pip install 'pe-dense[text]'") from e
        return list(OPENAI_IMAGENET_TEMPLATES if which == "imagenet80" else SIMPLE_IMAGENET_TEMPLATES)
    if which == "none":
        return [lambda c: c]
    if not os.path.isfile(which):
        raise PEDenseError(f"templates {which!r}: give imagenet80, simple, none, or a text file with one template "
                           f"per line holding {{}} where the class name goes")
    lines = [ln.strip() for ln in open(which, encoding="utf-8") if ln.strip() and not ln.startswith("#")]
    bad = [ln for ln in lines if ln.count("{}") != 1]
    if not lines or bad:
        raise PEDenseError(f"{which}: every template needs exactly one {{}} where the class name goes"
                           + (f" (not: {listed(bad, 3)})" if bad else " (the file has none)"))
    return [lambda c, t=t: t.format(c) for t in lines]


def parse_classes(spec: Union[str, Sequence[str]]) -> List[str]:
    """Class names from ``"sky,road,person"``, a list of names, a ``.txt`` file (one name per line; ``#`` lines
    skipped) or a ``.json`` file (a list of names, or an object with ``classes``, as MMSeg's metainfo). Names are
    stripped; an empty list, an empty name and a repeated name are refused."""
    import json
    import os

    names = spec
    if isinstance(spec, str):
        if os.path.isfile(spec):
            if spec.endswith(".json"):
                obj = json.load(open(spec, encoding="utf-8"))
                names = obj.get("classes") if isinstance(obj, dict) else obj
                if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                    raise PEDenseError(f"{spec}: a class-names .json holds a list of strings or "
                                       f"{{\"classes\": [...]}}")
            elif spec.endswith(".txt"):
                names = [ln.strip() for ln in open(spec, encoding="utf-8") if not ln.startswith("#")]
                names = [n for n in names if n]
            else:
                raise PEDenseError(f"{spec}: class names come as \"a,b,c\", a .txt file (one per line) or a .json "
                                   f"file (a list); this file is neither")
        elif spec.endswith((".txt", ".json")) and "," not in spec:
            raise FileNotFoundError(f"class-names file not found: {spec}")
        else:
            names = spec.split(",")
    names = [str(n).strip() for n in names]
    if not names or names == [""]:
        raise PEDenseError("an empty class list: give class names, e.g. --classes \"sky,road,person\"")
    empty = [i for i, n in enumerate(names) if not n]
    if empty:
        raise PEDenseError(f"empty class name at position(s) {empty} of {names}: check the commas")
    seen, dup = set(), []
    for n in names:
        if n.lower() in seen:
            dup.append(n)
        seen.add(n.lower())
    if dup:
        raise PEDenseError(f"class names repeated: {listed(dup)} (each class once)")
    return names


def zero_shot_weights(model: PECLIP, classnames: Sequence[str], prompts: Sequence = ("{}",),
                      batch: int = 256) -> Tensor:
    """(num_classes, D) unit text embeddings: each class's prompts (``str.format`` templates or callables, e.g.
    ``templates("imagenet80")``) encoded, normalized, averaged and normalized again (CLIP's prompt ensemble)."""
    if not classnames:
        raise PEDenseError("an empty class list: give at least one class name")
    ctx = model.context_length
    device = model.logit_scale.device
    out = []
    with torch.no_grad():
        for name in classnames:
            texts = [t(name) if callable(t) else t.format(name) for t in prompts]
            emb = torch.cat([model.encode_text(tokenize(texts[i:i + batch], ctx).to(device), normalize=True)
                             for i in range(0, len(texts), batch)])
            out.append(torch.nn.functional.normalize(emb.mean(0), dim=-1))
    return torch.stack(out)
