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

import pe_dense.mmseg  # noqa: E402,F401
from mmseg.registry import MODELS  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..")
CONFIGS = sorted(c for c in glob.glob(os.path.join(ROOT, "configs", "mmseg", "*", "*.py")) if "_base_" not in c)
TOOL = [sys.executable, os.path.join(ROOT, "tools", "train_mmseg.py")]
SEG = os.path.join(ROOT, "configs", "mmseg", "embedded", "upernet_pe-spatial-t_shapes-128x128.py")
DEPTH = os.path.join(ROOT, "configs", "mmseg", "embedded", "dpt_pe-spatial-t_nyu-planes-120x160.py")


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.relpath(c, ROOT) for c in CONFIGS])
def test_every_config_builds_and_runs_forward(path):
    cfg = Config.fromfile(path)
    init_default_scope("mmseg")
    bb = cfg.model.backbone
    assert bb.type == "PEBackbone" and cfg.custom_imports.imports == ["pe_dense.mmseg"]
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
    if cfg.model.type == "DepthEstimator":
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
SHORT = ["randomness.seed=0", "param_scheduler.0.end=2", "param_scheduler.1.begin=2"]


def _scalars(work_dir):
    path = sorted(glob.glob(os.path.join(work_dir, "*", "vis_data", "scalars.json")))[-1]
    return [json.loads(line) for line in open(path)]


def test_segmentation_short_training_interrupted_and_resumed(tmp_path):
    wd = str(tmp_path / "seg")
    data = str(tmp_path / "ade_shapes")
    opts = ["--cfg-options", f"train_dataloader.dataset.data_root={data}", f"val_dataloader.dataset.data_root={data}",
            f"test_dataloader.dataset.data_root={data}", "default_hooks.logger.interval=2"] + SHORT
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


@pytest.mark.parametrize("config", [DEPTH, DEPTH.replace("dpt_pe", "linear-bins_pe")], ids=["dpt", "linear-bins"])
def test_depth_short_training_reports_all_metrics(tmp_path, config):
    wd = str(tmp_path / "depth")
    data = str(tmp_path / "nyu_planes")
    r, log = _run([config, "--work-dir", wd, "--cfg-options", f"train_dataloader.dataset.data_root={data}",
                   f"val_dataloader.dataset.data_root={data}", f"test_dataloader.dataset.data_root={data}",
                   "train_cfg.max_iters=12", "train_cfg.val_interval=12", "default_hooks.logger.interval=2",
                   "default_hooks.checkpoint.interval=12"] + SHORT)
    assert r.returncode == 0, log[-3000:]
    scalars = _scalars(wd)
    losses = [s["loss"] for s in scalars if "loss" in s]
    assert sum(losses[-2:]) < sum(losses[:2])  # the loss falls
    final = [s for s in scalars if "rmse" in s][-1]
    for k in ("d1", "d2", "d3", "abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog"):
        assert k in final


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


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


SHORT = ["train_cfg.max_iters=4", "train_cfg.val_interval=4", "default_hooks.checkpoint.interval=4",
         "default_hooks.logger.interval=1"]


def test_mmseg_own_train_and_test_tools(tmp_path):
    """MMSegmentation's own ``tools/train.py`` and ``tools/test.py`` (shipped in the package under .mim/tools) run our
    config as it is: ``custom_imports`` brings the plugin in."""
    wd = tmp_path / "wd"
    r = subprocess.run([sys.executable, _mim_tool("train.py"), SEG, "--work-dir", str(wd), "--cfg-options"] + SHORT,
                       cwd=str(tmp_path), capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert (wd / "iter_4.pth").is_file()
    r = subprocess.run([sys.executable, _mim_tool("test.py"), SEG, str(wd / "iter_4.pth"), "--work-dir",
                        str(tmp_path / "test")], cwd=str(tmp_path), capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "mIoU" in r.stdout + r.stderr


@pytest.mark.parametrize("cfg", [SEG, DEPTH], ids=["segmentation", "depth"])
def test_torchrun_two_cpu_processes_and_resume(cfg, tmp_path):
    """``torchrun --nproc_per_node 2 tools/train_mmseg.py CONFIG --launcher pytorch`` on a CPU machine: mmengine's
    DDP over gloo, both ranks, a checkpoint, then ``--resume``."""
    wd = tmp_path / "wd"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", _free_port()]
    r = subprocess.run(run + TOOL[1:] + [cfg, "--launcher", "pytorch", "--work-dir", str(wd), "--cfg-options"] + SHORT,
                       env=env, capture_output=True, text=True, timeout=900)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-4000:]
    assert "Distributed training: True" in log and "GPU number: 2" in log
    assert (wd / "iter_4.pth").is_file()
    more = [s.replace("max_iters=4", "max_iters=6") for s in SHORT]
    run[-1] = _free_port()
    r = subprocess.run(run + TOOL[1:] + [cfg, "--launcher", "pytorch", "--work-dir", str(wd), "--resume",
                                        "--cfg-options"] + more, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "resumed epoch: 0, iter: 4" in r.stdout + r.stderr
    assert (wd / "iter_6.pth").is_file()


def test_mmseg_own_dist_train_sh(tmp_path):
    """mmseg's ``dist_train.sh CONFIG 2`` (torch.distributed.launch, two processes) on CPUs."""
    wd = tmp_path / "wd"
    env = dict(os.environ, OMP_NUM_THREADS="1", PORT=_free_port())
    r = subprocess.run(["bash", _mim_tool("dist_train.sh"), SEG, "2", "--work-dir", str(wd), "--cfg-options"] + SHORT,
                       env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=900)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-4000:]
    assert "GPU number: 2" in log and (wd / "iter_4.pth").is_file()
