"""Mixed precision and compilation on CPU (issue 10's CPU part): bf16 autocast and pure-bf16 forwards agree with fp32
per tapped block, the precision-sensitive parts stay fp32, inductor compiles the native and the windowed setting
without a graph break and agrees with eager, compiled blocks (regional compilation) train as eager ones in both
frameworks' tools, and a bf16-autocast training step runs in both frameworks (mmengine's own AmpOptimWrapper).

Bounds (stated per tapped block, measured on random weights since no PE weights can be downloaded here; every tower
met them with a margin of 5x or more): bf16 autocast cosine >= 0.9995 and relative L2 error <= 0.02; pure bf16
weights and inputs cosine >= 0.999 and relative error <= 0.04.
"""
import os
import sys

import pytest
import torch
import torch.nn.functional as F

import pe_dense
from pe_dense.specs import SPECS

sys.path.insert(0, os.path.dirname(__file__))
from pooled import pooled_pe  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..")
BIG = {n for n, s in SPECS.items() if s.width >= 1536}  # the 1.8B towers
NAMES = list(SPECS)
# Precision is a property of the numerical architecture, not of the name, so one tower per architecture (patch, width,
# heads, MLP, class token, LayerScale; the deepest of those that differ only in depth, whose blocks cover the others'):
# PE-Core-T/S/B/L are PE-Spatial-T/S/B/L's blocks with another position table (resampled here anyway), PE-Lang-G is
# PE-Spatial-G's block 47 times. 7 of the 12: bf16 matmuls run at ~1/6 of fp32's speed on a CPU without bf16
# instructions (this project's AMD machine), so each tower tested twice costs minutes of the suite's budget.
ARCHS = {}
for _n, _s in sorted(SPECS.items(), key=lambda item: -item[1].depth):
    ARCHS.setdefault((_s.patch_size, _s.width, _s.heads, _s.mlp_dim, _s.cls_token, _s.ls_init), _n)
ARCHS = [n for n in SPECS if n in ARCHS.values()]


def _stats(a, r):
    a, r = a.float().flatten(), r.float().flatten()
    return F.cosine_similarity(a, r, dim=0).item(), ((a - r).norm() / r.norm()).item()


def _taps(depth):
    return [depth // 4 - 1, depth // 2 - 1, 3 * depth // 4 - 1, depth - 1]


@pytest.mark.parametrize("name", ARCHS)
@pytest.mark.parametrize("setting", ["native", "vitdet"])
def test_bf16_agrees_with_fp32_per_tapped_block(name, setting):
    """Every block at full depth (the error grows with depth), on a small grid: a block's rounding is per token (the
    matmuls reduce over the width and the MLP, the softmax over the keys), so 100 tokens show what 1024 do; G, whose
    bf16 blocks take a minute at 100 tokens here, gets 36 / 49."""
    spec = pe_dense.get_spec(name)
    taps = _taps(spec.depth)
    big = name in BIG
    if setting == "native":  # global attention everywhere, the table resampled to a 10 x 10 grid (6 x 6 for G)
        kw, size = {}, spec.patch_size * (6 if big else 10)
    else:  # windows of 4 tokens, the tapped blocks global, a grid the windows do not divide: 10 (padded to 12), G 7
        kw, size = dict(window_size=4, global_blocks=taps), spec.patch_size * (7 if big else 10)
    torch.manual_seed(0)
    if big:  # weights as views into one random pool (tests/pooled.py): no 7 GB tower, nor its 3.7 GB bf16 copy
        model = pooled_pe(name, out_indices=taps, **kw).eval()
        bf16 = pooled_pe(name, torch.bfloat16, out_indices=taps, **kw).eval()  # equal to model.bfloat16()
    else:
        model = pe_dense.create_model(name, out_indices=taps, **kw).eval()
    model.requires_grad_(False)  # autocast keeps a bf16 copy of each weight that requires grad until it exits
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            amp = model(x)
        pure = (bf16 if big else model.bfloat16())(x.bfloat16())
    for i, (a, p, r) in enumerate(zip(amp, pure, ref)):
        cos, rel = _stats(a, r)
        assert cos >= 0.9995 and rel <= 0.02, (taps[i], cos, rel)
        cos, rel = _stats(p, r)
        assert p.dtype == torch.bfloat16 and cos >= 0.999 and rel <= 0.04, (taps[i], cos, rel)


def test_precision_sensitive_parts_stay_fp32():
    """LayerNorm runs in fp32 under autocast (autocast's own rule); RoPE is built and applied in fp32 and the
    position table resampled in fp32 also with bf16 weights (as the released code rotates in fp32)."""
    from pe_dense.modeling import apply_rope, rope_table

    model = pe_dense.create_model("PE-Spatial-T16-512", out_indices=[1]).eval()
    seen = {}

    def record(key):
        def hook(module, inputs, output):
            seen[key] = output.dtype  # returns None: the output is left as it is
        return hook

    model.ln_pre.register_forward_hook(record("ln_pre"))
    model.transformer.resblocks[0].ln_1.register_forward_hook(record("ln_1"))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.randn(1, 3, 96, 128))
    assert seen == {"ln_pre": torch.float32, "ln_1": torch.float32}
    table = rope_table((6, 8), 32)
    assert table.dtype == torch.float32
    q = torch.randn(1, 2, 48, 32)
    exact = apply_rope(q.double(), table.double()).float()
    assert (apply_rope(q.bfloat16(), table).float() - exact).abs().max() <= (q.abs().max() * 2 ** -7).item()
    bf = model.bfloat16()
    want = F.interpolate(model.positional_embedding[1:].float().reshape(1, 32, 32, -1).permute(0, 3, 1, 2),
                         size=(6, 8), mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)[0]
    assert torch.equal(bf.position_table(6, 8), want.bfloat16())  # resampled in fp32, rounded once


@pytest.mark.slow
def test_inductor_compiles_without_graph_breaks_and_agrees():
    """The ViTDet setting holds both block kinds (windowed blocks 0, 2 and global blocks 1, 3, whose attention is the
    native tower's), so one compiled tower covers both; the native tower with its class token is compiled with
    fullgraph=True in test_benchmark.py (``--compile both``). A native-only run here cost the suite 47 s more."""
    setting = "vitdet"
    torch._dynamo.reset()
    kw = dict(window_size=4, global_blocks=[1, 3])
    model = pe_dense.create_model("PE-Spatial-T16-512", out_indices=[1, 3], **kw).eval()
    compiled = torch.compile(model, fullgraph=True)  # inductor, the default backend; a graph break raises
    with torch.no_grad():
        for h, w in [(128, 128), (144, 96), (160, 112)]:  # new sizes recompile (automatic dynamic shapes)
            x = torch.randn(1, 3, h, w)
            for got, want in zip(compiled(x), model(x)):
                assert got.shape == want.shape and (got - want).abs().max().item() < 1e-4, (setting, h, w)


def test_detectron2_model_trains_a_step_under_bf16_autocast(tmp_path, monkeypatch):
    """Detectron2's AMPTrainer asserts CUDA (``[AMPTrainer] CUDA is required``): on CPU its step is run by hand,
    forward under ``torch.autocast("cpu", bfloat16)`` as AMPTrainer does on GPUs."""
    pytest.importorskip("detectron2")
    from detectron2.config import LazyConfig, instantiate
    from detectron2.utils.events import EventStorage

    monkeypatch.setenv("PE_DENSE_DATA", str(tmp_path))
    cfg = LazyConfig.load(os.path.join(ROOT, "configs", "detectron2", "shapes", "mask_rcnn_pe_spatial_t_shapes.py"))
    cfg.dataloader.train.total_batch_size = 2
    cfg.dataloader.train.num_workers = 0
    model = instantiate(cfg.model).train()
    cfg.optimizer.params.model = model
    optim = instantiate(cfg.optimizer)
    batch = next(iter(instantiate(cfg.dataloader.train)))
    with EventStorage(0), torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model(batch)
    total = sum(losses.values())
    assert torch.isfinite(total) and set(losses) >= {"loss_cls", "loss_box_reg", "loss_mask"}
    total.backward()
    grads = [p.grad for p in model.backbone.net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    optim.step()


def test_detectron2_amp_precision_key_builds_the_trainer():
    """``train.amp.precision`` picks AMPTrainer's autocast dtype: float16 (the recipes' default, loss-scaled as
    Detectron2 does it) or bfloat16 (no loss scaling); AMP off builds SimpleTrainer; a wrong value is refused by
    name."""
    pytest.importorskip("detectron2")
    from detectron2.config import LazyConfig
    from detectron2.engine import AMPTrainer, SimpleTrainer

    from pe_dense.detectron2.train import amp_precision, build_trainer

    cfg = LazyConfig.load(os.path.join(ROOT, "configs", "detectron2", "COCO", "mask_rcnn_pe_spatial_b_100ep.py"))
    assert cfg.train.amp.enabled and amp_precision(cfg) == torch.float16  # the released recipe: fp16 AMP
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for value, dtype in [("bfloat16", torch.bfloat16), ("bf16", torch.bfloat16), ("float16", torch.float16),
                         ("torch.float16", torch.float16), (torch.bfloat16, torch.bfloat16)]:
        cfg.train.amp.precision = value
        assert amp_precision(cfg) == dtype, value
        trainer = build_trainer(cfg, model, iter([]), opt)
        assert type(trainer) is AMPTrainer and trainer.precision == dtype
        if dtype == torch.bfloat16:
            assert not trainer.grad_scaler.is_enabled()
    for bad in ["float8", "fp32", 16]:
        cfg.train.amp.precision = bad
        with pytest.raises(ValueError, match=r"train\.amp\.precision=.*float16.*bfloat16"):
            amp_precision(cfg)
    cfg.train.amp.enabled = False
    with pytest.raises(ValueError, match=r"train\.amp\.precision"):  # refused with AMP off too
        amp_precision(cfg)
    cfg.train.amp.precision = "bfloat16"
    assert amp_precision(cfg) is None and type(build_trainer(cfg, model, iter([]), opt)) is SimpleTrainer


def test_detectron2_amp_trainer_runs_bf16_steps(tmp_path, monkeypatch):
    """Detectron2's own ``AMPTrainer``, built by ``build_trainer`` from the shapes recipe with
    ``train.amp.precision=bfloat16``, runs two training steps of a PE Mask R-CNN. AMPTrainer asserts CUDA and
    autocasts through ``torch.cuda.amp.autocast``: on this CPU machine those two are pointed at the CPU (the
    assertion, only it, hears that CUDA is there; autocast is ``torch.autocast("cpu", bfloat16)``); the rest of its
    step is AMPTrainer's own (its disabled GradScaler, its metrics). The blocks' linear layers run in bf16, the weights
    stay fp32 and move."""
    pytest.importorskip("detectron2")
    from detectron2.config import LazyConfig, instantiate
    from detectron2.engine import AMPTrainer
    from detectron2.utils.events import EventStorage

    from pe_dense.detectron2.train import build_trainer

    monkeypatch.setenv("PE_DENSE_DATA", str(tmp_path))
    cfg = LazyConfig.load(os.path.join(ROOT, "configs", "detectron2", "shapes", "mask_rcnn_pe_spatial_t_shapes.py"))
    cfg = LazyConfig.apply_overrides(cfg, ["train.amp.enabled=True", "train.amp.precision=bfloat16"])
    cfg.dataloader.train.total_batch_size = 2
    cfg.dataloader.train.num_workers = 0
    torch.manual_seed(0)
    model = instantiate(cfg.model).train()
    cfg.optimizer.params.model = model
    trainer = build_trainer(cfg, model, instantiate(cfg.dataloader.train), instantiate(cfg.optimizer))
    assert type(trainer) is AMPTrainer and trainer.precision == torch.bfloat16
    before = [p.detach().clone() for p in model.backbone.net.parameters()]
    real_is_available = torch.cuda.is_available

    def is_available():  # True for AMPTrainer.run_step's assertion only (the optimizer asks too, and must hear False)
        return sys._getframe(1).f_code is AMPTrainer.run_step.__code__ or real_is_available()

    monkeypatch.setattr(torch.cuda, "is_available", is_available)
    monkeypatch.setattr(torch.cuda.amp, "autocast", lambda dtype: torch.autocast("cpu", dtype=dtype))
    seen = set()

    def record(module, inputs, output):
        if isinstance(module, torch.nn.Linear) and torch.is_tensor(output):
            seen.add(output.dtype)

    handles = [m.register_forward_hook(record) for m in model.backbone.net.modules()]
    try:
        with EventStorage(0) as storage:
            trainer.storage = storage
            for trainer.iter in range(2):
                trainer.run_step()
                storage.step()
    finally:
        for h in handles:
            h.remove()
    assert seen == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.backbone.net.parameters()))
    assert {"loss_cls", "loss_box_reg", "loss_mask"} <= set(storage.histories())


def test_train_net_refuses_a_wrong_amp_precision(tmp_path):
    pytest.importorskip("detectron2")
    import subprocess

    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "train_net.py"), "--config-file",
                        os.path.join(ROOT, "configs", "detectron2", "shapes", "mask_rcnn_pe_spatial_t_shapes.py"),
                        f"train.output_dir={tmp_path / 'out'}", "train.amp.precision=float8"],
                       env={**os.environ, "PE_DENSE_DATA": str(tmp_path / "data")}, capture_output=True, text=True)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "train.amp.precision='float8'" in r.stderr and "bfloat16" in r.stderr
    assert not os.path.exists(tmp_path / "out")


def test_mmseg_model_trains_a_step_under_bf16_autocast():
    """mmengine's AmpOptimWrapper asserts a GPU/NPU/MLU/MUSA device; on CPU the step runs with mmengine's own
    ``autocast(device_type="cpu", dtype=bfloat16)`` and a plain OptimWrapper."""
    pytest.importorskip("mmseg")
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    from mmengine.runner.amp import autocast
    from mmengine.structures import PixelData
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample

    cfg = Config.fromfile(os.path.join(ROOT, "configs", "mmseg", "embedded", "upernet_pe-spatial-t_shapes-128x128.py"))
    init_default_scope("mmseg")
    model = MODELS.build(cfg.model).train()
    ow = build_optim_wrapper(model, cfg.optim_wrapper)
    samples = []
    for _ in range(2):
        s = SegDataSample(metainfo=dict(img_shape=(128, 128), ori_shape=(128, 128), pad_shape=(128, 128)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, 4, (1, 128, 128)))
        samples.append(s)
    data = dict(inputs=[torch.randint(0, 255, (3, 128, 128), dtype=torch.uint8) for _ in range(2)],
                data_samples=samples)
    with autocast(device_type="cpu", dtype=torch.bfloat16):
        data = model.data_preprocessor(data, True)
        losses = model(**data, mode="loss")
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss)
    ow.update_params(loss)
    assert all(torch.isfinite(p).all() for p in model.backbone.parameters())


@pytest.mark.slow
def test_compile_blocks_matches_eager_in_training_with_one_graph_per_block_kind():
    """``compile_blocks=True`` (regional compilation, inductor): forward and gradients equal eager's (fp32, 1e-4 /
    1e-6), the twelve blocks share two compiled graphs (windowed, global), and the parameter names are unchanged
    (checkpoints load either way)."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    kw = dict(window_size=4, global_blocks=[2, 5, 8, 11], out_indices=[5, 11])
    eager = pe_dense.create_model("PE-Spatial-T16-512", **kw).train()
    compiled = pe_dense.create_model("PE-Spatial-T16-512", compile_blocks=True, **kw).train()
    assert list(compiled.state_dict()) == list(eager.state_dict())
    compiled.load_state_dict(eager.state_dict())
    x = torch.randn(2, 3, 128, 160)
    outs = {}
    for name, m in (("eager", eager), ("compiled", compiled)):
        maps = m(x)
        sum(f.square().mean() for f in maps).backward()
        outs[name] = maps
    for got, want in zip(outs["compiled"], outs["eager"]):
        assert (got - want).abs().max().item() < 1e-4
    for (n, a), b in zip(eager.named_parameters(), compiled.parameters()):
        if a.grad is not None:
            assert (a.grad - b.grad).abs().max().item() < 1e-6, n
    assert counters["stats"]["unique_graphs"] == 2


@pytest.mark.slow
def test_compiled_blocks_train_in_detectron2s_and_mmsegs_tools(tmp_path):
    """Where users train: ``model.backbone.vit.compile_blocks=True`` on Detectron2's command line and
    ``model.backbone.compile_blocks=True`` in MMSeg's --cfg-options run the real tools with compiled blocks (the
    detector and the segmentor around them stay eager)."""
    import subprocess
    import sys

    pytest.importorskip("detectron2")
    pytest.importorskip("mmseg")
    env = dict(os.environ, PE_DENSE_DATA=str(tmp_path / "data"))
    d2 = os.path.join(ROOT, "configs", "detectron2", "shapes", "mask_rcnn_pe_spatial_t_shapes.py")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "train_net.py"), "--config-file", d2,
                        f"train.output_dir={tmp_path / 'd2'}", "train.max_iter=2", "train.eval_period=0",
                        "train.log_period=1", "model.backbone.vit.compile_blocks=True"],
                       env=env, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert os.path.isfile(tmp_path / "d2" / "model_final.pth")
    seg = os.path.join(ROOT, "configs", "mmseg", "embedded", "upernet_pe-spatial-t_shapes-128x128.py")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "train_mmseg.py"), seg, "--work-dir",
                        str(tmp_path / "seg"), "--cfg-options", "model.backbone.compile_blocks=True",
                        "train_cfg.max_iters=2", "train_cfg.val_interval=2", "default_hooks.logger.interval=1",
                        "default_hooks.checkpoint.interval=2"], env=env, cwd=ROOT, capture_output=True, text=True)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-3000:]
    assert "Iter(train) [2/2]" in log and "mIoU" in log


def test_mmengines_amp_optim_wrapper_trains_a_pe_config(tmp_path, monkeypatch):
    """mmengine's own ``AmpOptimWrapper(dtype="bfloat16")``, built by the Runner of ``tools/train_mmseg.py`` from a PE
    config's ``--cfg-options``, trains two iterations. Its one GPU dependency is an assertion on the device, bypassed
    here; the rest is the real wrapper: its autocast (on CPU, bf16: the blocks' linear layers run in bf16), its
    GradScaler (which disables itself without CUDA) and its update."""
    pytest.importorskip("mmseg")
    import mmengine.optim.optimizer.amp_optimizer_wrapper as amp
    from mmengine.optim import AmpOptimWrapper

    from pe_dense.mmseg.train import main as train

    monkeypatch.setattr(amp, "is_cuda_available", lambda: True)
    monkeypatch.setenv("PE_DENSE_DATA", str(tmp_path / "data"))
    seen = set()

    def record(module, inputs, output):
        if isinstance(module, torch.nn.Linear) and module.training and torch.is_tensor(output):
            seen.add(output.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        runner = train([os.path.join(ROOT, "configs", "mmseg", "embedded", "upernet_pe-spatial-t_shapes-128x128.py"),
                        "--work-dir", str(tmp_path / "wd"), "--cfg-options", "optim_wrapper.type=AmpOptimWrapper",
                        "optim_wrapper.dtype=bfloat16", "train_cfg.max_iters=2", "train_cfg.val_interval=2",
                        "default_hooks.logger.interval=1", "default_hooks.checkpoint.interval=2"])
    finally:
        handle.remove()
    assert isinstance(runner.optim_wrapper, AmpOptimWrapper) and runner.optim_wrapper.cast_dtype == torch.bfloat16
    assert seen == {torch.bfloat16}
    assert runner.iter == 2
    assert all(torch.isfinite(p).all() for p in runner.model.parameters())
