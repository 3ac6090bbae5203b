"""Random weights for the large towers (L: 0.3 B, G: 1.8 B parameters) without the memory of them: every tensor of a
tower built on the meta device becomes a view into one random pool of 64 MB, at an offset of its own (so that no two
tensors, blocks included, are equal), and the tower takes these views with ``load_state_dict(assign=True)``. A parity
or precision test then holds one pool, not a 7 GB tower (let alone two), and spends no time initializing one.

Values: 0.02 x N(0, 1) (the scale of PE's and timm's initializations), norm weights 1 + that, LayerScale its
initial value + that."""
import torch

POOL = 16_000_000  # > the largest tensor of any tower (G's MLP: 8960 x 1536)
_POOLS = {}


def pool(dtype=torch.float32) -> torch.Tensor:
    if dtype not in _POOLS:
        base = 0.02 * torch.randn(POOL, generator=torch.Generator().manual_seed(0))
        _POOLS[dtype] = base if dtype == torch.float32 else base.to(dtype)
    return _POOLS[dtype]


def pooled_state(state: dict, norm_weight=lambda k: False, layerscale=lambda k: False, ls_init=0.1,
                 dtype=torch.float32) -> dict:
    """``state``: a tower's state dict (meta tensors: names and shapes). ``norm_weight(key)`` / ``layerscale(key)``
    say which tensors centre on 1 / on ``ls_init``; ``dtype=torch.bfloat16`` gives exactly what ``.bfloat16()`` of the
    fp32 weights gives, still as views (of the pool cast once)."""
    out = {}
    for j, (k, t) in enumerate(state.items()):
        n = t.numel()
        o = (j * 1_000_003) % (POOL - n)
        v = pool()[o:o + n].view(t.shape)
        if norm_weight(k):
            out[k] = (1 + v).to(dtype)
        elif layerscale(k):
            out[k] = (ls_init + v).to(dtype)
        else:
            out[k] = pool(dtype)[o:o + n].view(t.shape)
    return out


def pe_norm(k):
    return k.endswith(".weight") and k.split(".")[-2] in ("ln_pre", "ln_1", "ln_2")


def pe_layerscale(k):
    return k.endswith(".gamma")


def pooled_pe(name: str, dtype=torch.float32, **kw):
    """A pe_dense tower ``create_model(name, **kw)`` whose weights are pool views (``pooled_state``)."""
    import pe_dense

    with torch.device("meta"):
        model = pe_dense.create_model(name, **kw)
    spec = pe_dense.get_spec(name)
    sd = pooled_state(model.state_dict(), pe_norm, pe_layerscale, spec.ls_init or 0.0, dtype)
    model.load_state_dict(sd, assign=True)
    assert not any(t.is_meta for t in list(model.parameters()) + list(model.buffers()))
    return model
