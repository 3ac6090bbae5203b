"""Assertions shared by the recipe tests of both frameworks."""
import pytest


def assert_layer_decay(trained, factor, tower_local, depth, decay):
    """Every trained parameter's lr factor follows the rule: block i of the PE tower decay^(depth - i), the
    embedding layer (patch embedding, position table, class token, ln_pre) decay^(depth + 1), everything outside
    the tower exactly 1. ``trained``: [(name, param)]; ``factor``: id(param) -> lr factor; ``tower_local``:
    id(param) -> its name inside the tower, for tower parameters only. Returns how many were outside the tower."""
    outside = 0
    for name, p in trained:
        local = tower_local.get(id(p))
        if local is None:
            outside += 1
            assert factor[id(p)] == pytest.approx(1.0), name  # pyramid, necks, heads (a conv1 there too)
        elif local.startswith("transformer.resblocks."):
            assert factor[id(p)] == pytest.approx(decay ** (depth - int(local.split(".")[2]))), name
        else:
            assert factor[id(p)] == pytest.approx(decay ** (depth + 1)), name
    return outside
