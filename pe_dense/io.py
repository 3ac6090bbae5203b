"""The ground floor: helpers every tool of the package shares, once. Imports nothing of ``pe_dense``.

- ``write_atomic`` / ``write_folder_atomic``: a file or a folder written whole or not at all. What is written goes to
  a temporary name beside the destination (``.NAME.tmp-PID-XXXX``, one scheme), which is renamed into place only
  once complete; on failure the destination is as it was and the temporary is removed.
- ``write_json`` / ``write_csv``: JSON and CSV files, written that way.
- ``weights_identity``: what a tower's weights were, for the records that resumed runs and caches compare.
- ``error_summary`` / ``listed``: one line saying what an exception was; the first few of many items.
- ``positive`` / ``int_list`` / ``size_list``: argparse types.
- ``default_device``: ``cuda`` when PyTorch sees a GPU, else ``cpu``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import uuid
from typing import Callable, List, Optional, Tuple


def temp_path(path: str) -> str:
    """A fresh temporary name beside ``path`` (same folder, so the final rename stays on one file system); hidden,
    and unique per process and call."""
    path = os.path.abspath(path).rstrip(os.sep)
    return os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _remove(path: str):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def write_atomic(path: str, write: Callable[[str], None]) -> str:
    """``write(tmp)`` writes the file at a temporary name beside ``path``, which then replaces ``path``. If ``write``
    raises (or is interrupted), ``path`` is untouched and the temporary is gone. Returns ``path``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = temp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        _remove(tmp)
    return path


def write_folder_atomic(path: str, fill: Callable[[str], None]) -> str:
    """``fill(tmp)`` fills a new temporary folder beside ``path``; when it returns, a folder already at ``path`` is
    removed and the new one renamed into place. If ``fill`` raises, ``path`` is untouched and the temporary folder is
    gone. Returns ``path``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = temp_path(path)
    os.makedirs(tmp)
    try:
        fill(tmp)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        _remove(tmp)
    return path


def write_json(path: str, obj, indent: int = 1, sort_keys: bool = False) -> str:
    """``obj`` as JSON at ``path``, written whole (``write_atomic``)."""
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=indent, sort_keys=sort_keys)
            f.write("\n")
    return write_atomic(path, write)


def write_csv(path: str, header: List[str], rows) -> str:
    """A CSV file (``header``, then ``rows``), written whole (``write_atomic``)."""
    import csv

    def write(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)
    return write_atomic(path, write)


def weights_identity(checkpoint: Optional[str] = None, model=None) -> str:
    """What the weights were, for the records that decide whether earlier outputs can be reused: a file by absolute
    path, size and modification time (a re-trained file at the same path differs), a hub id by name, a tower held in
    memory (``model``, no ``checkpoint``) by a hash of its tensors, else random initialization."""
    if checkpoint:
        path = os.path.abspath(os.path.expanduser(checkpoint))
        if os.path.isfile(path):
            st = os.stat(path)
            return f"{path} ({st.st_size} bytes, mtime {int(st.st_mtime)})"
        return str(checkpoint)
    if model is not None:
        import torch

        h = hashlib.sha1()
        for name, t in model.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return f"weights in memory (sha1 {h.hexdigest()[:16]})"
    return "random init"


def error_summary(e: BaseException, limit: int = 200) -> str:
    """``TypeName: the message's first line`` (cut at ``limit`` characters)."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:limit] if text else 'no message'}"


def listed(items, n: int = 5, sep: str = ", ") -> str:
    """The first ``n`` of ``items`` for a message, and how many more: ``a, b, c ... (+12 more)``."""
    items = list(items)
    return sep.join(str(i) for i in items[:n]) + (f" ... (+{len(items) - n} more)" if len(items) > n else "")


def positive(kind=int):
    """An argparse type: ``kind(s)`` that must be > 0."""
    def parse(s: str):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {s}")
        return v
    parse.__name__ = f"positive {kind.__name__}"
    return parse


def int_list(s: str) -> List[int]:
    """``'2,5,8,11'`` or ``'2 5 8 11'`` -> ``[2, 5, 8, 11]`` (an argparse type too)."""
    try:
        return [int(v) for v in str(s).replace(",", " ").split()] if s else []
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r}: write whole numbers separated by commas, e.g. '2,5,8,11'") from None


def size_list(s: str) -> List[Tuple[int, int]]:
    """``'224x224,200x333'`` (``'224'`` for a square) -> ``[(224, 224), (200, 333)]`` (an argparse type)."""
    sizes = []
    for part in str(s).replace(" ", "").split(","):
        h, _, w = part.partition("x")
        try:
            hw = (int(h), int(w or h))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{s!r}: write sizes as HxW, comma-separated, e.g. 224x224,200x333") \
                from None
        if min(hw) <= 0:
            raise argparse.ArgumentTypeError(f"{s!r}: sizes must be > 0")
        sizes.append(hw)
    return sizes


def default_device() -> str:
    """``"cuda"`` when PyTorch sees a GPU, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
