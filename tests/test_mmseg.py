"""MMSeg adapter (skipped without mmseg): registration, every config builds and runs, short real trainings with
the Runner (losses fall, metrics produced), resume, bad input."""
import glob
import json
import os
import subprocess
import sys

import pytest
import torch

mmseg = pytest.importorskip("mmseg")

from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402
from procs import free_port  # noqa: E402

import pe_dense.mmseg  # noqa: E402,F401

ROOT = os.path.join(os.path.dirname(__file__), "..")
# the configs that train (zero-shot/: training-free, tools/test.py only: tests/test_text_mmseg.py)
CONFIGS = sorted(c for c in glob.glob(os.path.join(ROOT, "configs", "mmseg", "*", "*.py"))
                 if "_base_" not in c and os.sep + "zero-shot" + os.sep not in c)
TOOL = [sys.executable, os.path.join(ROOT, "tools", "train_mmseg.py")]
SEG = os.path.join(ROOT, "configs", "mmseg", "embedded", "upernet_pe-spatial-t_shapes-128x128.py")
DEPTH = os.path.join(ROOT, "configs", "mmseg", "embedded", "dpt_pe-spatial-t_nyu-planes-120x160.py")


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.relpath(c, ROOT) for c in CONFIGS])
def test_every_config_builds_and_runs_forward(path):
    cfg = Config.fromfile(path)
    init_default_scope("mmseg")
    bb = cfg.model.backbone
    assert bb.type == "PETower" and cfg.custom_imports.imports == ["pe_dense.mmseg"]
    big = pe_dense.get_spec(bb.model_name).depth == 50
    bb.pretrained = None
    with torch.device("meta") if big else torch.device("cpu"):
        model = MODELS.build(cfg.model)
    if big:
        return  # 1.8B parameters: the structure is built on the meta device only
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        feats = model.extract_feat(x)
        out = model.decode_head.forward(feats)
    assert torch.isfinite(out).all()
    if cfg.model.type.endswith("DepthEstimator"):
        assert out.shape[1] == 1 and (out > 0).all()
    else:
        assert out.shape[1] == cfg.model.decode_head.num_classes


def test_layer_decay_constructor():
    from mmengine.optim import build_optim_wrapper

    cfg = Config.fromfile(SEG)
    init_default_scope("mmseg")
    model = MODELS.build(cfg.model)
    ow = build_optim_wrapper(model, dict(type="OptimWrapper", constructor="PELayerDecayOptimWrapperConstructor",
                                         optimizer=dict(type="AdamW", lr=1e-3, weight_decay=0.05),
                                         paramwise_cfg=dict(layer_decay_rate=0.5)))
    lrs = sorted({g["lr"] for g in ow.optimizer.param_groups})
    assert lrs[0] == pytest.approx(1e-3 * 0.5 ** 13) and lrs[-1] == pytest.approx(1e-3)
    with pytest.raises(KeyError, match="unknown paramwise_cfg keys"):
        build_optim_wrapper(model, dict(constructor="PELayerDecayOptimWrapperConstructor",
                                        optimizer=dict(type="AdamW", lr=1e-3), paramwise_cfg=dict(decay=0.5)))


def test_pretrained_through_init_cfg(tmp_path):
    src = pe_dense.create_model("PE-Spatial-T16-512")
    path = tmp_path / "pe.pt"
    torch.save({"state_dict": {"visual." + k: v for k, v in src.state_dict().items()}}, path)
    init_default_scope("mmseg")
    bb = MODELS.build(dict(type="PEBackbone", model_name="PE-Spatial-T16-512", out_indices=[11],
                           init_cfg=dict(type="Pretrained", checkpoint=str(path))))
    bb.init_weights()
    assert torch.equal(bb.vit.conv1.weight, src.conv1.weight)


def test_pretrained_true_means_the_released_weights_of_the_model_name():
    init_default_scope("mmseg")
    bb = MODELS.build(dict(type="PEBackbone", model_name="PE-Spatial-S16-512", pretrained=True, out_indices=[11]))
    assert type(bb).__name__ == "PETower"  # the former name builds the same class: older configs keep working
    assert bb.pretrained == "facebook/PE-Spatial-S16-512" == pe_dense.get_spec("PE-Spatial-S16-512").hub_id


def test_embedded_sets_follow_pe_dense_data(tmp_path, monkeypatch):
    """One rule for the generated sets of both frameworks: ``$PE_DENSE_DATA/NAME``."""
    from pe_dense.mmseg.datasets import embedded_root

    monkeypatch.setenv("PE_DENSE_DATA", str(tmp_path))
    root = embedded_root("PENYUPlanesDataset")
    assert root == str(tmp_path / "nyu_planes") and os.listdir(os.path.join(root, "images"))
    pytest.importorskip("detectron2")
    from pe_dense.detectron2.data import register_shapes_coco

    files = register_shapes_coco()
    assert all(js.startswith(str(tmp_path / "shapes_coco")) for js, _ in files.values())


def test_unknown_model_in_config():
    init_default_scope("mmseg")
    with pytest.raises(KeyError, match="Unknown PE model 'PE-Spatial-Q16-512'. Valid names"):
        MODELS.build(dict(type="PEBackbone", model_name="PE-Spatial-Q16-512"))


def _run(args, env=None):
    r = subprocess.run(TOOL + args, cwd=ROOT, capture_output=True, text=True,
                       env=dict(os.environ, **(env or {})))
    return r, r.stdout + r.stderr


# A 12-iteration run spends 10 of them in the configs' warm-up (lr x0.1): too little to see learning reliably.
# The short-run tests warm up over 2 iterations and fix the seed (loss then falls by 0.2-0.5 over 12 its, 4 seeds).
SEEDED_WARMUP = ["randomness.seed=0", "param_scheduler.0.end=2", "param_scheduler.1.begin=2"]


def _scalars(work_dir):
    path = sorted(glob.glob(os.path.join(work_dir, "*", "vis_data", "scalars.json")))[-1]
    return [json.loads(line) for line in open(path)]


@pytest.mark.slow
def test_segmentation_short_training_interrupted_and_resumed(tmp_path):
    wd = str(tmp_path / "seg")
    data = str(tmp_path / "ade_shapes")
    opts = ["--cfg-options", f"train_dataloader.dataset.data_root={data}", f"val_dataloader.dataset.data_root={data}",
            f"test_dataloader.dataset.data_root={data}", "default_hooks.logger.interval=2"] + SEEDED_WARMUP
    r, log = _run([SEG, "--work-dir", wd] + opts + ["train_cfg.max_iters=12", "train_cfg.val_interval=12",
                                                    "default_hooks.checkpoint.interval=6"])
    assert r.returncode == 0, log[-3000:]
    losses = [s["loss"] for s in _scalars(wd) if "loss" in s]
    assert sum(losses[-2:]) < sum(losses[:2])  # the loss falls
    assert any("mIoU" in s for s in _scalars(wd))
    assert glob.glob(os.path.join(wd, "*", "vis_data", "vis_image", "*.png"))  # pictures of predictions
    # the same work dir again without --resume: refused, nothing overwritten
    r, log = _run([SEG, "--work-dir", wd] + opts)
    assert r.returncode == 2 and "--resume" in log
    # resume after a kill mid-write of the last checkpoint: that one is skipped with a warning, iteration 6's is used
    last = os.path.join(wd, "iter_12.pth")
    data = open(last, "rb").read()
    open(last, "wb").write(data[: len(data) // 3])
    r, log = _run([SEG, "--work-dir", wd, "--resume"] + opts + ["train_cfg.max_iters=14",
                                                                "train_cfg.val_interval=14"])
    assert r.returncode == 0, log[-3000:]
    assert "WARNING" in log and "skipping" in log and "iter_12.pth" in log
    assert "resumed" in log.lower() and "Iter(train) [ 8/14]" in log and "Iter(train) [ 2/14]" not in log
    assert "Iter(train) [14/14]" in log


@pytest.mark.slow
def test_two_seeded_runs_print_equal_figures(tmp_path):
    """The same config, seed and machine: the same losses and the same mIoU, to the last digit logged."""
    data = str(tmp_path / "ade_shapes")
    figures = []
    for run in ("a", "b"):
        wd = str(tmp_path / run)
        r, log = _run([SEG, "--work-dir", wd, "--cfg-options", f"train_dataloader.dataset.data_root={data}",
                       f"val_dataloader.dataset.data_root={data}", "train_cfg.max_iters=4", "train_cfg.val_interval=4",
                       "default_hooks.logger.interval=1", "default_hooks.checkpoint.interval=4"] + SEEDED_WARMUP)
        assert r.returncode == 0, log[-3000:]
        figures.append([{k: v for k, v in s.items() if k in ("loss", "mIoU", "aAcc", "step")} for s in _scalars(wd)])
    assert len([f for f in figures[0] if "loss" in f]) == 4 and any("mIoU" in f for f in figures[0])
    assert figures[0] == figures[1]


@pytest.mark.parametrize("config", [DEPTH, DEPTH.replace("dpt_pe", "linear-bins_pe")], ids=["dpt", "linear-bins"])
@pytest.mark.slow
def test_depth_short_training_reports_all_metrics(tmp_path, config):
    wd = str(tmp_path / "depth")
    data = str(tmp_path / "nyu_planes")
    r, log = _run([config, "--work-dir", wd, "--cfg-options", f"train_dataloader.dataset.data_root={data}",
                   f"val_dataloader.dataset.data_root={data}", f"test_dataloader.dataset.data_root={data}",
                   "train_cfg.max_iters=12", "train_cfg.val_interval=12", "default_hooks.logger.interval=2",
                   "default_hooks.checkpoint.interval=12"] + SEEDED_WARMUP)
    assert r.returncode == 0, log[-3000:]
    scalars = _scalars(wd)
    losses = [s["loss"] for s in scalars if "loss" in s]
    assert sum(losses[-2:]) < sum(losses[:2])  # the loss falls
    final = [s for s in scalars if "rmse" in s][-1]
    for k in ("d1", "d2", "d3", "abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog"):
        assert k in final


@pytest.mark.slow
def test_bad_data_is_refused_before_training(tmp_path):
    from PIL import Image

    from pe_dense.data.seg_depth import make_ade_shapes

    data = make_ade_shapes(str(tmp_path / "d"), n_train=4, n_val=2, size=32)
    base = [SEG, "--work-dir", str(tmp_path / "wd"), "--cfg-options"]
    roots = [f"{k}.dataset.{o}" for k in ("train_dataloader", "val_dataloader", "test_dataloader")
             for o in (f"data_root={data}", "generate=False")]
    r, log = _run(base + [f"train_dataloader.dataset.data_root={tmp_path / 'nowhere'}",
                          "train_dataloader.dataset.generate=False"])
    assert r.returncode == 2 and "image folder not found" in log
    lab = os.path.join(data, "annotations", "training", "shapes_00001.png")
    Image.fromarray((torch.ones(32, 32) * 9).byte().numpy()).save(lab)
    r, log = _run(base + roots)
    assert r.returncode == 2 and "shapes_00001.png has label value(s) outside the 4 classes: [9]" in log
    os.remove(lab)
    r, log = _run(base + roots)
    assert r.returncode == 2 and "without a label" in log and "shapes_00001.jpg" in log
    assert not os.path.exists(tmp_path / "wd")  # nothing written


def _mim_tool(name):
    path = os.path.join(os.path.dirname(mmseg.__file__), ".mim", "tools", name)
    if not os.path.isfile(path):
        pytest.skip(f"mmseg's own tools are not in this install ({path})")
    return path


# the frameworks' own tools and launchers: 4 iterations, the config's schedule
FOUR_ITERS = ["train_cfg.max_iters=4", "train_cfg.val_interval=4", "default_hooks.checkpoint.interval=4",
              "default_hooks.logger.interval=1"]


@pytest.mark.slow
def test_mmseg_own_train_and_test_tools(tmp_path):
    """MMSegmentation's own ``tools/train.py`` and ``tools/test.py`` (shipped in the package under .mim/tools) run our
    config as it is: ``custom_imports`` brings the plugin in."""
    wd = tmp_path / "wd"
    r = subprocess.run([sys.executable, _mim_tool("train.py"), SEG, "--work-dir", str(wd), "--cfg-options"]
                       + FOUR_ITERS, cwd=str(tmp_path), capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert (wd / "iter_4.pth").is_file()
    r = subprocess.run([sys.executable, _mim_tool("test.py"), SEG, str(wd / "iter_4.pth"), "--work-dir",
                        str(tmp_path / "test")], cwd=str(tmp_path), capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "mIoU" in r.stdout + r.stderr


LINEAR_ADE = os.path.join(ROOT, "configs", "mmseg", "ade20k", "linear_pe-spatial-t_8xb2-40k_ade20k-512x512.py")
# the ADE20K linear probe at CPU size, on a miniature ADEChallengeData2016 (tests/minidata.write_ade)
LINEAR_ADE_SMALL = ["model.backbone.pretrained=None", "model.data_preprocessor.size=(64,64)",
                    "model.test_cfg.mode=whole", "train_dataloader.dataset.pipeline.2.scale=(256,64)",
                    "train_dataloader.dataset.pipeline.3.crop_size=(64,64)",
                    "val_dataloader.dataset.pipeline.1.scale=(256,64)"]


@pytest.mark.parametrize("case", ["linear ADE20K, SyncBN", "depth"])
@pytest.mark.slow
def test_torchrun_two_cpu_processes_and_resume(case, tmp_path):
    """``torchrun --nproc_per_node 2 tools/train_mmseg.py CONFIG --launcher pytorch`` on a CPU machine: mmengine's
    DDP over gloo, both ranks, a checkpoint, then ``--resume``. The ADE20K linear probe's config asks for SyncBN
    (``sync_bn="torch"``): mmengine converts its head's BatchNorm under DDP, which on CPUs runs as BatchNorm, said
    in the log. (The embedded segmentation config runs under mmseg's own dist_train.sh below.)"""
    wd = tmp_path / "wd"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if case == "depth":
        cfg, extra = DEPTH, []
    else:
        import minidata

        minidata.write_ade(str(tmp_path))
        cfg, extra = LINEAR_ADE, LINEAR_ADE_SMALL + [
            f"{k}.dataset.data_root={tmp_path}/data/ade/ADEChallengeData2016"
            for k in ("train_dataloader", "val_dataloader", "test_dataloader")]
    run = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", free_port()]
    r = subprocess.run(run + TOOL[1:] + [cfg, "--launcher", "pytorch", "--work-dir", str(wd), "--cfg-options"]
                       + FOUR_ITERS + extra, env=env, capture_output=True, text=True, timeout=900)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-4000:]
    assert "Distributed training: True" in log and "GPU number: 2" in log
    if case != "depth":
        assert "no GPU: SyncBN layers run as BatchNorm" in log
    assert (wd / "iter_4.pth").is_file()
    more = [s.replace("max_iters=4", "max_iters=6") for s in FOUR_ITERS]
    run[-1] = free_port()
    r = subprocess.run(run + TOOL[1:] + [cfg, "--launcher", "pytorch", "--work-dir", str(wd), "--resume",
                                        "--cfg-options"] + more + extra, env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "resumed epoch: 0, iter: 4" in r.stdout + r.stderr
    assert (wd / "iter_6.pth").is_file()


def test_linear_probe_warms_up_over_1500_iterations_then_decays():
    """The ADE20K linear configs' schedule as mmengine runs it: lr from 1e-3 x 1e-6 up to 1e-3 over 1500 iterations
    (linear), then poly (power 1) down to 0 at 40k."""
    from mmengine.optim import OptimWrapper
    from mmengine.registry import PARAM_SCHEDULERS

    cfg = Config.fromfile(LINEAR_ADE)
    init_default_scope("mmseg")
    wrapper = OptimWrapper(torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.optim_wrapper.optimizer.lr))
    schedulers = [PARAM_SCHEDULERS.build(dict(s, optimizer=wrapper)) for s in cfg.param_scheduler]
    lrs = []
    for _ in range(cfg.train_cfg.max_iters):
        lrs.append(wrapper.param_groups[0]["lr"])
        for s in schedulers:
            s.step()
    assert lrs[0] == pytest.approx(1e-9)
    for it in (500, 1000, 1499):  # mmengine's LinearLR reaches the full lr one step early (t / 1499)
        assert lrs[it] == pytest.approx(1e-3 * (1e-6 + (1 - 1e-6) * it / 1500), rel=1e-3)
    assert lrs[1499] == pytest.approx(1e-3)
    for it in (1500, 20750, 30000):
        assert lrs[it] == pytest.approx(1e-3 * (1 - (it - 1500) / 38500), rel=1e-3)
    assert lrs[-1] < 1e-7


@pytest.mark.slow
def test_mmseg_own_dist_train_sh(tmp_path):
    """mmseg's ``dist_train.sh CONFIG 2`` (torch.distributed.launch, two processes) on CPUs."""
    wd = tmp_path / "wd"
    env = dict(os.environ, OMP_NUM_THREADS="1", PORT=free_port())
    r = subprocess.run(["bash", _mim_tool("dist_train.sh"), SEG, "2", "--work-dir", str(wd), "--cfg-options"]
                       + FOUR_ITERS, env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=900)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-4000:]
    assert "GPU number: 2" in log and (wd / "iter_4.pth").is_file()


def test_nyu_dpt_evaluates_with_flip_over_sliding_crops():
    """The NYU DPT configs' ``slide_flip`` test mode, through PEDepthEstimator: each crop's depth is the mean of
    its own and its mirror image's (checked where crops span the width: then that equals flipping the whole image),
    and the crops' overlaps are averaged back to the input's size."""
    from mmseg.structures import SegDataSample

    path = os.path.join(ROOT, "configs", "mmseg", "nyu", "dpt_pe-spatial-t_4xb8-25k_nyu-480x480.py")
    cfg = Config.fromfile(path)
    assert cfg.model.test_cfg.mode == "slide_flip"
    init_default_scope("mmseg")
    cfg.model.backbone.pretrained = None
    cfg.model.test_cfg.update(crop_size=(64, 64), stride=(32, 32))  # the recipe's 480 crops, CPU-sized
    model = MODELS.build(cfg.model).eval()
    x = torch.rand(1, 3, 128, 64) * 255

    def predict(inputs, mode):
        model.test_cfg.mode = mode
        meta = dict(img_shape=(128, 64), ori_shape=(128, 64), pad_shape=(128, 64))
        with torch.no_grad():
            return model.predict(inputs, [SegDataSample(metainfo=meta)])[0].pred_depth_map.data

    both = predict(x, "slide_flip")
    assert both.shape == (1, 128, 64) and (both > 0).all()
    # PEDepthEstimator runs mode "slide" as slide (mmseg 1.2.2's DepthEstimator.inference falls through to whole)
    plain = predict(x, "slide")
    want = (plain + predict(x.flip(3), "slide").flip(-1)) / 2
    assert torch.allclose(both, want, atol=1e-5), (both - want).abs().max()
    assert not torch.allclose(plain, predict(x, "whole"), atol=1e-3)
    assert not torch.allclose(both, plain, atol=1e-3)  # the flip changes something


def test_whole_model_checkpoints_load_the_tower_whole_or_stop(tmp_path, capsys):
    """load_from / resume / model-level init_cfg (mmengine's loader, also the Runner's copy of it) and predict's
    init_model: a file whose PE tower is partial, or tower weights alone, stops with the keys named instead of
    mmengine's warning and a tower at random; heads of another dataset load as a partial load that says so;
    inside whole_checkpoints() (pe-dense predict) every tensor of the model is required."""
    import mmengine.runner.runner as runner_module
    from mmengine.runner.checkpoint import load_checkpoint

    from pe_dense.checkpoint import CheckpointError
    from pe_dense.mmseg.checkpoint import whole_checkpoints
    from pe_dense.patches import replaced

    assert replaced(runner_module, "_load_checkpoint_to_model")  # Runner.load_checkpoint (load_from, resume)
    cfg = Config.fromfile(SEG)
    init_default_scope("mmseg")
    cfg.model.backbone.pretrained = None
    model = MODELS.build(cfg.model)
    sd = model.state_dict()
    partial = {k: v for k, v in sd.items() if ".resblocks.5." not in k}
    torch.save({"state_dict": partial, "meta": {}}, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match=r"missing \(\d+\): backbone\.vit\.transformer\.resblocks\.5\."):
        load_checkpoint(model, str(tmp_path / "partial.pth"))
    tower = {k[len("backbone.vit."):]: v for k, v in sd.items() if k.startswith("backbone.vit.")}
    torch.save(tower, tmp_path / "tower.pth")
    with pytest.raises(CheckpointError, match=r"PE tower weights alone.*model\.backbone\.pretrained=FILE"):
        load_checkpoint(model, str(tmp_path / "tower.pth"))
    no_head = {k: v for k, v in sd.items() if not k.startswith("decode_head.conv_seg.")}
    torch.save({"state_dict": no_head}, tmp_path / "no_head.pth")
    load_checkpoint(model, str(tmp_path / "no_head.pth"))  # e.g. another dataset's classifier: allowed, and said
    said = capsys.readouterr()
    assert "[pe_dense] partial load: 2 tensor(s) of the model keep their initialization: decode_head.conv_seg" in \
        said.out + said.err
    with whole_checkpoints(), pytest.raises(CheckpointError, match=r"missing \(2\): decode_head\.conv_seg\."):
        load_checkpoint(model, str(tmp_path / "no_head.pth"))


def test_the_all_background_baseline_is_the_closed_form(tmp_path, monkeypatch):
    """The bar the demo's segmentation must clear, against its closed form on the embedded validation set: every
    pixel predicted class 0 gives IoU(0) = |gt == 0| / |valid| and IoU 0 for every other class present in the labels
    (classes absent from both are left out, as mmseg's nan-mean does), aAcc = |gt == 0| / |valid|."""
    import copy

    import numpy as np
    from mmseg.registry import DATASETS

    from pe_dense.mmseg.baselines import _labels_only, trivial_baseline

    monkeypatch.setenv("PE_DENSE_DATA", str(tmp_path / "data"))
    cfg = Config.fromfile(SEG)
    init_default_scope("mmseg")
    val = DATASETS.build(_labels_only(copy.deepcopy(cfg.val_dataloader.dataset)))
    labels = np.concatenate([np.asarray(val.prepare_data(i)["gt_seg_map"]).ravel() for i in range(len(val))])
    valid = labels[labels != 255]
    background = (valid == 0).mean()
    present = len(np.unique(valid))
    got = trivial_baseline(cfg)
    assert got["aAcc"] == pytest.approx(100 * background, abs=0.01)
    assert got["mIoU"] == pytest.approx(100 * background / present, abs=0.01)
