"""Replacing a private function of an upstream library (Detectron2, mmengine), guarded (ground floor).

pe_dense replaces a few private functions of the pinned upstream versions (see where ``replace`` is called). A private
function can change or vanish in any release; replacing it blindly would then break a run far from the cause, or
silently do nothing. ``replace`` first checks that the function exists and takes the parameters the replacement was
written for, and otherwise stops with ``UpstreamChangedError`` naming the function and the pinned version.
"""
from __future__ import annotations

import inspect
from typing import Callable, Sequence

from .errors import PEDenseError

MARK = "__pe_dense_replaces__"
FIX = "bash scripts/setup.sh installs the pinned versions"
MMENGINE = "mmengine==0.10.7"
DETECTRON2 = "Detectron2 at commit 02b5c4e"


class UpstreamChangedError(PEDenseError):
    """An upstream function that pe_dense replaces is not what it was written for (another version installed)."""


def replace(owner, name: str, new: Callable, params: Sequence[str], pinned: str) -> Callable:
    """Sets ``owner.name = new`` after checking that ``owner.name`` exists and its parameters start with ``params``
    (names, in order). Idempotent: a second call keeps the first replacement. Returns the function replaced (the
    upstream one), which ``new`` may call; it is also ``new.__pe_dense_replaces__``."""
    where = f"{getattr(owner, '__module__', '')}.{getattr(owner, '__qualname__', getattr(owner, '__name__', owner))}"
    where = f"{where.strip('.')}.{name}"
    old = getattr(owner, name, None)
    if old is None:
        raise UpstreamChangedError(f"{where} is not there: pe_dense replaces it for {pinned}, and this installation "
                                   f"differs; install {pinned} ({FIX})")
    if getattr(old, MARK, None) is not None:
        return getattr(old, MARK)
    got = list(inspect.signature(old).parameters)
    if got[: len(params)] != list(params):
        raise UpstreamChangedError(f"{where} takes ({', '.join(got)}), pe_dense's replacement was written for "
                                   f"({', '.join(params)}, ...) as in {pinned}; install {pinned} ({FIX})")
    setattr(new, MARK, old)
    setattr(owner, name, new)
    return old


def replaced(owner, name: str) -> bool:
    """Whether ``owner.name`` is pe_dense's replacement."""
    return getattr(getattr(owner, name, None), MARK, None) is not None
