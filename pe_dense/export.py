"""ONNX export of a PE tower (taps as configured) and, optionally, ViTDet's simple feature pyramid.

With ``dynamic=True`` the batch, the height and the width are graph inputs: the position table resize (or its
tiling), the RoPE angles, the padding to the patch and to the windows are computed inside the graph from the
input's size (``pe_dense.modeling.vit.exporting`` makes the model take its general path while it is traced), so
one file serves every image size, multiples of the patch or not.

Written with ``torch.onnx.export(dynamo=True)`` (``torch.export`` + onnxscript), opset 18 or newer, atomically
(a temporary folder beside the destination, then renamed; towers over 2 GB get an external ``.data`` file beside
the ``.onnx``). ``check_onnx`` runs the file in onnxruntime (CPU) against PyTorch at other sizes; ``latency``
times both on the same input. Needs ``pip install 'pe-dense[onnx]'`` (onnx, onnxscript, onnxruntime).
"""
from __future__ import annotations

import os
import shutil
import time
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .errors import PEDenseError
from .io import error_summary, temp_path
from .modeling.pyramid import SimpleFeaturePyramid
from .modeling.vit import PEViT, ceil_div

MIN_OPSET = 18  # torch.onnx's exporter writes 18+; onnx has no down-conversion of its Pad/Resize to 17


class ExportError(PEDenseError):
    """A model or a setting that cannot be exported as asked (the message says why and what to do)."""


def _tower(model: nn.Module) -> PEViT:
    net = model.net if isinstance(model, SimpleFeaturePyramid) else model
    if not isinstance(net, PEViT):
        raise ExportError(f"export takes a PEViT or a SimpleFeaturePyramid over one, got {type(model).__name__}")
    return net


def output_names(model: nn.Module) -> List[str]:
    """The graph's outputs: ``block{i}`` per tap (and ``block{i}_class_token`` with ``return_class_token``), or
    the pyramid's levels ``p2``..``p6``."""
    if isinstance(model, SimpleFeaturePyramid):
        return list(model.strides)
    names = []
    for i in model.out_indices:
        names.append(f"block{i}")
        if model.return_class_token:
            names.append(f"block{i}_class_token")
    return names


class _Flat(nn.Module):
    """The model with its outputs as a flat tuple in ``output_names`` order."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model(x)
        if isinstance(out, dict):
            return tuple(out.values())
        flat = []
        for o in out:
            flat.extend(o if isinstance(o, tuple) else (o,))
        return tuple(flat)


def _check_exportable(model: nn.Module, size: Tuple[int, int], opset: int):
    net = _tower(model)
    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset}: torch.onnx writes opset {MIN_OPSET} and newer (onnx cannot convert its "
                          f"Pad and Resize down to {opset}); use --opset {MIN_OPSET} or higher")
    if isinstance(model, SimpleFeaturePyramid) and model.square_pad:
        raise ExportError(f"the pyramid pads every input to a fixed {model.square_pad}x{model.square_pad} square "
                          f"(square_pad): that fixes the size the graph takes. Export it with square_pad=0 (the "
                          f"padding to the stride is in the graph) and pad images yourself if you need the square")
    if min(size) < net.patch_size:
        raise ExportError(f"export size {size[0]}x{size[1]} is smaller than one patch ({net.patch_size} px)")
    if next(net.parameters()).dtype != torch.float32:
        raise ExportError(f"the tower's weights are {next(net.parameters()).dtype}: export in float32 (model.float()); "
                          f"onnxruntime's CPU kernels run float32")


def _save_atomic(program, path: str):
    """Writes ``path`` (and ``path``.data when the weights are over 2 GB) through a temporary folder beside it, so
    an interrupted export leaves the destination as it was."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = temp_path(path)
    os.makedirs(tmp)
    try:
        program.save(os.path.join(tmp, os.path.basename(path)))
        names = sorted(os.listdir(tmp), key=lambda n: n == os.path.basename(path))  # the .onnx last
        for name in names:
            os.replace(os.path.join(tmp, name), os.path.join(parent, name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _name_dims(graph, names: Dict[str, str]):
    """Renames the exporter's symbols (``s53``) to ``names`` (``height``) in every shape of the graph, so that the
    file reads ``image [batch, 3, height, width]`` and outputs ``((height + 15)//16)``."""
    import re

    import onnx_ir as ir

    pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")
    values = list(graph.inputs) + list(graph.outputs) + [v for node in graph for v in node.outputs]
    for v in values:
        if v.shape is None:
            continue
        dims = [ir.SymbolicDim(pattern.sub(lambda m: names[m.group(1)], d.value))
                if isinstance(d, ir.SymbolicDim) and d.value else d for d in v.shape]
        v.shape = ir.Shape(dims)


def trace_size(size: Tuple[int, int], patch: int, window: int = 0, table: int = 0) -> Tuple[int, int]:
    """The input size a dynamic export is traced at: ``torch.export`` takes a size of 0 or 1 for a constant, and
    may tie equal sizes, so every derived size must be >= 2 and distinct: at least 2 windows (or 5 tokens) per
    side, height != width, neither equal to the position ``table``'s side, and sides that are not multiples of
    the patch (the padding is then not zero)."""
    rows = max(ceil_div(size[0], patch), 2 * window + 3, 5)
    cols = max(ceil_div(size[1], patch), 2 * window + 3, 5) + 3
    rows += rows == table
    cols += cols in (table, rows)
    return rows * patch - patch // 2 + 1, cols * patch - patch // 2 + 3


def export_onnx(model: nn.Module, path: str, size: Tuple[int, int] = (512, 512), dynamic: bool = True,
                opset: int = MIN_OPSET, optimize: bool = False) -> Dict:
    """Exports ``model`` (a ``PEViT`` or a ``SimpleFeaturePyramid`` over one) to ``path``.

    Args:
        size: (H, W): with ``dynamic=False`` the only size the graph takes (batch 1); with ``dynamic=True`` the
            graph takes any size and is traced at ``trace_size(size, ...)``, batch 2.
        dynamic: batch, height and width as graph dimensions.
        opset: ONNX opset (18 or newer).
        optimize: run onnxscript's graph optimizer (slow on windowed towers; onnxruntime optimizes at load anyway).
    Returns a dict: path, outputs (names), inputs (name and shape as written), opset, seconds.
    """
    size = (int(size[0]), int(size[1]))
    _check_exportable(model, size, opset)
    net = _tower(model)
    model = model.eval()
    H, W = size
    if dynamic:
        H, W = trace_size(size, net.patch_size, net.window_size, net.pos_grid)
    x = torch.randn(2 if dynamic else 1, 3, H, W)
    names = output_names(model)
    shapes = None
    if dynamic:
        # Dim.DYNAMIC, not named Dims: tracing checks whether a view's dims can be 1 (one window per side), which
        # named Dims reject although the ONNX graph (Reshape, Pad, Resize from shapes) holds for every size;
        # check_onnx verifies that at other sizes, one-window sizes included in the tests
        D = torch.export.Dim.DYNAMIC
        shapes = ({0: D, 2: D, 3: D},)
    t0 = time.time()
    try:
        import onnxscript  # noqa: F401  (torch.onnx's dynamo exporter needs it)
    except ImportError as e:
        raise ExportError(f"ONNX export needs onnx and onnxscript: pip install 'pe-dense[onnx]' ({e})") from None
    try:  # torch.export first, so that a model it cannot trace fails here (torch.onnx would fall back to a draft)
        exported = torch.export.export(_Flat(model), (x,), dynamic_shapes=shapes)
    except Exception as e:
        raise ExportError(f"torch.export cannot trace this model: {error_summary(e)}; nothing was written") from e
    program = torch.onnx.export(exported, dynamo=True, opset_version=opset, input_names=["image"],
                                output_names=names, optimize=optimize, verbose=False)
    inp = program.model.graph.inputs[0]
    if dynamic:
        fixed = [i for i in (0, 2, 3) if isinstance(inp.shape[i], int)]
        if fixed:
            raise ExportError(f"the traced graph fixed input dimension(s) {fixed} of (B, 3, H, W): the model has a "
                              f"path that depends on the size it was traced at; nothing was written")
        _name_dims(program.model.graph, {str(inp.shape[i]): n for i, n in ((0, "batch"), (2, "height"),
                                                                              (3, "width"))})
    graph_inputs = [(v.name, [d if isinstance(d, int) else str(d) for d in v.shape])
                    for v in program.model.graph.inputs]
    written = program.model.opset_imports.get("", None)
    if written != opset:
        raise ExportError(f"asked for opset {opset}, the exporter wrote {written}; nothing was written")
    _save_atomic(program, path)
    return {"path": path, "outputs": names, "inputs": graph_inputs, "opset": opset, "traced": (H, W),
            "seconds": time.time() - t0, "dynamic": dynamic}


def onnx_session(path: str):
    """An onnxruntime CPU session of ``path`` (errors-only logging), for ``check_onnx`` and ``latency``."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError("checking the file needs onnxruntime: pip install 'pe-dense[onnx]' (or skip with "
                          "--no-check)") from None
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only (its constant-folding notes are not for users)
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _torch_outputs(model: nn.Module, x: torch.Tensor) -> List[torch.Tensor]:
    with torch.no_grad():
        return list(_Flat(model.eval())(x))


def default_check_sizes(size: Tuple[int, int], patch: int, window: int = 0) -> List[Tuple[int, int]]:
    """Three sizes other than ``size`` for the parity check: smaller, larger, and one that is a multiple of
    neither the patch nor the window (``window`` tokens)."""
    H, W = size
    odd = (H - patch + 3, W + 2 * patch + 5)
    step = patch * (window or 1)
    return [(max(patch, H - 2 * patch), W + patch), odd, (H + step + patch, max(patch, W - step + 2 * patch))]


def _as_session(path_or_session):
    return onnx_session(path_or_session) if isinstance(path_or_session, (str, os.PathLike)) else path_or_session


def check_onnx(path: str, model: nn.Module, sizes: Sequence[Tuple[int, int]], batch: int = 1,
               seed: int = 0) -> List[Dict]:
    """Runs ``path`` (a file, or its ``onnx_session``) in onnxruntime (CPU) and ``model`` in PyTorch on the same
    random images at each size; per size the largest absolute difference over all outputs and the output shapes."""
    sess = _as_session(path)
    names = [o.name for o in sess.get_outputs()]
    g = torch.Generator().manual_seed(seed)
    rows = []
    for h, w in sizes:
        x = torch.randn(batch, 3, h, w, generator=g)
        ref = _torch_outputs(model, x)
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
        if len(got) != len(ref):
            raise ExportError(f"{path} has {len(got)} outputs, the model {len(ref)}")
        diff = 0.0
        for name, o, r in zip(names, got, ref):
            if tuple(o.shape) != tuple(r.shape):
                raise ExportError(f"{path} at {h}x{w}: output {name} is {tuple(o.shape)}, PyTorch gives "
                                  f"{tuple(r.shape)}")
            diff = max(diff, float((torch.from_numpy(o) - r).abs().max()))
        rows.append({"size": (h, w), "max_abs_diff": diff, "shapes": {n: tuple(o.shape) for n, o in zip(names, got)}})
    return rows


def latency(path: str, model: nn.Module, size: Tuple[int, int], batch: int = 1, rounds: int = 5) -> Dict:
    """Median wall time of one forward, onnxruntime (CPU; ``path`` a file or its ``onnx_session``) vs PyTorch eager
    (CPU, fp32, no_grad), on the same input, each after one warm-up run, with each library's default thread
    count."""
    sess = _as_session(path)
    x = torch.randn(batch, 3, *size)
    feed = {sess.get_inputs()[0].name: x.numpy()}
    model = model.eval()

    def median(fn):
        fn()
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return sorted(times)[len(times) // 2]

    with torch.no_grad():
        t_torch = median(lambda: model(x))
    t_ort = median(lambda: sess.run(None, feed))
    return {"size": tuple(size), "batch": batch, "onnxruntime_ms": 1e3 * t_ort, "torch_ms": 1e3 * t_torch,
            "speedup": t_torch / t_ort, "torch_threads": torch.get_num_threads()}


def load_for_export(model, checkpoint: str, pyramid: bool) -> str:
    """Tower weights from any supported file; with a pyramid, a Detectron2 checkpoint of one of our configs (or a
    released PE detector, ``pe_dense.detector_checkpoint``) also gives the pyramid's weights (keys ``backbone.fpn.*``).
    The heads are not exported. Returns what the pyramid's weights are."""
    from .checkpoint import DETECTRON2_PYRAMID, load_checkpoint, read_state_dict, split_detectron2
    from .detector_checkpoint import from_released, is_released_layout

    sd = read_state_dict(checkpoint)
    if is_released_layout(sd):  # its RoPE buffers hold no weights: this tower computes its own
        sd, _ = from_released(sd, model if pyramid else None)
    parts = split_detectron2(sd)
    if parts is None:  # a tower alone
        load_checkpoint(model.net if pyramid else model, sd)
        return "random init (the file holds a tower only)" if pyramid else ""
    tower, rest = parts  # a Detectron2 model of ours: tower + pyramid + heads
    load_checkpoint(model.net if pyramid else model, tower)
    if not pyramid:
        return ""
    missing, unexpected = model.load_state_dict(rest, strict=False)
    missing = [k for k in missing if not k.startswith("net.")]  # the tower: loaded above
    if missing or unexpected:
        raise ExportError(f"{checkpoint}: its pyramid ({DETECTRON2_PYRAMID}*) does not fit --pyramid's (256 channels, "
                          f"p2..p6): missing {missing[:4]}, unexpected {unexpected[:4]}")
    return f"from {checkpoint}"


def run_export(model: str, out: str, checkpoint: Optional[str] = None, pyramid: bool = False,
               blocks: Optional[List[int]] = None, size: Optional[int] = None, dynamic: bool = False,
               opset: int = 18, optimize: bool = False, check: bool = True,
               check_sizes: Optional[List[Tuple[int, int]]] = None, atol: float = 1e-4, rounds: int = 5,
               overrides: Optional[dict] = None) -> dict:
    """``pe-dense export``: the tower (and pyramid) of ``model`` as ONNX at ``out``; then, unless ``check`` is off,
    onnxruntime against PyTorch at ``check_sizes`` (default: three around ``size``) within ``atol``, and latency."""
    from .factory import create_model
    from .specs import get_spec

    if not out.endswith(".onnx"):
        raise ExportError(f"{out}: the output is an ONNX file; give it a .onnx name")
    spec = get_spec(model)
    kw = dict(overrides or {})
    if blocks:
        kw["out_indices"] = list(blocks)
    tower = create_model(model, **kw)
    net = SimpleFeaturePyramid(tower) if pyramid else tower
    pyramid_weights = "random init (no --checkpoint)" if pyramid else ""
    if checkpoint:
        pyramid_weights = load_for_export(net, checkpoint, pyramid)
    size = (size, size) if size else (spec.img_size, spec.img_size)
    sizes = check_sizes or default_check_sizes(size, tower.patch_size, tower.window_size)
    print(f"exporting {model} ({tower.extra_repr()})" + (" + simple feature pyramid" if pyramid else ""))
    info = export_onnx(net, out, size, dynamic=dynamic, opset=opset, optimize=optimize)
    print(f"  traced at {info['traced'][0]}x{info['traced'][1]}, opset {opset}, " +
          ("dynamic batch, height and width" if dynamic else "fixed size, batch 1 (add --dynamic for any size)"))
    mb = sum(os.path.getsize(p) for p in (out, out + ".data") if os.path.exists(p)) / 2**20
    print(f"wrote {out} ({mb:.1f} MB) in {info['seconds']:.0f} s: input {info['inputs'][0][0]} "
          f"{info['inputs'][0][1]}, outputs {', '.join(info['outputs'])}")
    print(f"weights: {checkpoint or 'random init (no --checkpoint)'}" +
          (f"; pyramid: {pyramid_weights}" if pyramid_weights else ""))
    if not check:
        return info
    if not dynamic:
        sizes = [size]
    session = onnx_session(out)  # loaded once for the check and the timing
    rows = check_onnx(session, net, sizes)
    worst = max(r["max_abs_diff"] for r in rows)
    for r in rows:
        print(f"  onnxruntime vs PyTorch at {r['size'][0]}x{r['size'][1]}: max |diff| {r['max_abs_diff']:.2e}")
    if worst > atol:
        raise ExportError(f"{out} differs from PyTorch by {worst:.2e} > --atol {atol}: the file is kept for "
                          f"inspection, do not use it")
    t = latency(session, net, size, rounds=rounds)
    print(f"  latency at {size[0]}x{size[1]}, batch 1, CPU: onnxruntime {t['onnxruntime_ms']:.1f} ms, PyTorch "
          f"{t['torch_ms']:.1f} ms ({t['speedup']:.2f}x; median of {rounds})")
    return {**info, "check": rows, "latency": t}
