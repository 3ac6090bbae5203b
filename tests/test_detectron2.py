"""Detectron2 adapter (skipped without detectron2): backbone contract, every config, a short real training."""
import glob
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

d2 = pytest.importorskip("detectron2")

from detectron2.config import LazyConfig, instantiate  # noqa: E402

import pe_dense  # noqa: E402
from pe_dense.detectron2 import PEBackbone  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..")
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "detectron2", "*", "*.py")))
CONFIGS = [c for c in CONFIGS if os.sep + "common" + os.sep not in c
           and not os.path.basename(c).startswith("deta_")]  # the (Cascade) Mask R-CNN family; DETA: tests/test_deta.py


def test_backbone_contract():
    b = PEBackbone("PE-Spatial-T16-512", vit=dict(window_size=4, global_blocks=[11]), out_channels=32,
                   square_pad=128)
    shapes = b.output_shape()
    assert {k: v.stride for k, v in shapes.items()} == {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}
    assert all(v.channels == 32 for v in shapes.values())
    assert b.size_divisibility == 64
    assert b.padding_constraints == {"size_divisibility": 64, "square_size": 128}
    out = b(torch.randn(1, 3, 128, 128))
    for k, s in shapes.items():
        assert out[k].shape == (1, 32, 128 // s.stride, 128 // s.stride)
    with pytest.raises(ValueError, match="not a multiple of the pyramid's stride 64"):
        b(torch.randn(1, 3, 100, 128))


def test_imagelist_pads_to_the_stride_and_square():
    from detectron2.structures import ImageList

    b = PEBackbone("PE-Spatial-T16-512", vit=dict(window_size=4, global_blocks=[11]), out_channels=32,
                   square_pad=256)
    il = ImageList.from_tensors([torch.zeros(3, 200, 150)], b.size_divisibility,
                                padding_constraints=b.padding_constraints)
    assert tuple(il.tensor.shape[-2:]) == (256, 256)


def test_yacs_builder():
    from detectron2.config import get_cfg
    from detectron2.modeling import build_backbone

    from pe_dense.detectron2 import add_pe_config

    cfg = add_pe_config(get_cfg())
    cfg.MODEL.BACKBONE.NAME = "build_pe_backbone"
    cfg.MODEL.PE.NAME = "PE-Spatial-T16-512"
    cfg.MODEL.PE.SQUARE_PAD = 128
    b = build_backbone(cfg)
    assert isinstance(b, PEBackbone) and b.net.window_size == 16


def test_import_pe_dense_does_not_import_frameworks():
    import subprocess
    import sys

    code = "import sys, pe_dense; print('detectron2' in sys.modules, 'mmseg' in sys.modules)"
    assert subprocess.check_output([sys.executable, "-c", code], text=True).split() == ["False", "False"]


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.relpath(c, ROOT) for c in CONFIGS])
@pytest.mark.slow
def test_every_config_builds_and_trains_one_step(path, user_coco):
    cfg = LazyConfig.load(path)
    if "dataset" in cfg:  # configs/detectron2/custom: the user's data on the command line
        cfg = LazyConfig.apply_overrides(cfg, user_coco[1])
    name = cfg.model.backbone.model_name
    spec = pe_dense.get_spec(name)
    if spec.width > 1000:  # L and G: same code path, shrunk so that CPU tests stay small
        cfg.model.backbone.vit.window_size = min(cfg.model.backbone.vit.window_size, 4)
    cfg.model.backbone.square_pad = 128
    with torch.device("meta") if spec.depth == 50 else torch.device("cpu"):
        model = instantiate(cfg.model)
    assert isinstance(model.backbone, PEBackbone) and model.backbone.net.name == name
    assert model.backbone.net.patch_size == 16
    if spec.depth == 50:
        return  # 1.8B parameters: built on the meta device only (structure checked)
    cfg.optimizer.params.model = model
    opt = instantiate(cfg.optimizer)
    # layer-wise lr decay: one lr per tower layer (lr * decay ** (depth + 1 - layer)) and the heads' lr
    decay = instantiate(cfg.optimizer.params.lr_factor_func).keywords["lr_decay_rate"]
    lr = cfg.optimizer.lr
    want = {lr * decay ** (spec.depth + 1 - layer) for layer in range(spec.depth + 1)} | {lr}
    assert sorted({float(f"{g['lr']:.9e}") for g in opt.param_groups}) == sorted({float(f"{v:.9e}") for v in want})
    model.train()
    img = torch.rand(3, 128, 128) * 255
    inst = d2.structures.Instances((128, 128))
    inst.gt_boxes = d2.structures.Boxes(torch.tensor([[20.0, 30.0, 80.0, 90.0]]))
    inst.gt_classes = torch.tensor([0])
    inst.gt_masks = d2.structures.BitMasks(
        torch.zeros(1, 128, 128, dtype=torch.bool).index_fill_(1, torch.arange(30, 90), True))
    from detectron2.utils.events import EventStorage

    with EventStorage(0):
        losses = model([{"image": img, "instances": inst, "height": 128, "width": 128}])
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert model.backbone.net.transformer.resblocks[0].attn.in_proj_weight.grad is not None


def test_missing_image_in_dataset_json(tmp_path):
    from pe_dense.data.shapes_coco import make_shapes_coco
    from pe_dense.detectron2.data import register_coco_checked

    files = make_shapes_coco(str(tmp_path / "s"), splits={"val": 3}, size=64)
    js, imgs = files["val"]
    os.remove(os.path.join(imgs, "00001.jpg"))
    with pytest.raises(FileNotFoundError, match=r"1 image\(s\) named in .* are missing .*00001.jpg"):
        register_coco_checked("pe_test_missing", js, imgs)


@pytest.mark.slow
def test_short_training_resume_and_evaluation(tmp_path):
    """The real tool on the embedded default: a few iterations, checkpoint, resume, COCO evaluation, pictures."""
    import subprocess
    import sys

    cfg = os.path.join(ROOT, "configs", "detectron2", "shapes", "mask_rcnn_pe_spatial_t_shapes.py")
    out = str(tmp_path / "run")
    env = dict(os.environ, PE_DENSE_DATA=str(tmp_path / "data"))
    tool = [sys.executable, os.path.join(ROOT, "tools", "train_net.py"), "--config-file", cfg]
    opts = [f"train.output_dir={out}", "train.checkpointer.period=4", "train.log_period=2"]
    subprocess.run(tool + opts + ["train.max_iter=4", "train.eval_period=0"], check=True, env=env, cwd=ROOT)
    assert os.path.isfile(os.path.join(out, "model_0000003.pth"))
    r = subprocess.run(tool + ["--resume"] + opts + ["train.max_iter=6", "train.eval_period=6"], env=env,
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    log = r.stdout + r.stderr
    assert "Starting training from iteration 4" in log
    metrics = [json.loads(line) for line in open(os.path.join(out, "metrics.json"))]
    assert any("bbox/AP" in m for m in metrics)
    pictures = glob.glob(os.path.join(out, "vis", "*.png"))
    assert len(pictures) == 4  # visualize(num_images=4): the first four val images, predictions drawn
    assert all(Image.open(p).mode == "RGB" for p in pictures)


def _detectron2_tools():
    src = os.environ.get("PE_DENSE_DETECTRON2_SRC") or os.path.join(
        os.environ.get("PE_DENSE_HOME", os.path.join(os.path.expanduser("~"), ".cache", "pe_dense")),
        "src", "detectron2-02b5c4e")
    tool = os.path.join(src, "tools", "lazyconfig_train_net.py")
    if not os.path.isfile(tool):
        pytest.skip(f"Detectron2's source (its tools/) is not at {src}: bash scripts/setup.sh puts it there")
    return tool


@pytest.mark.slow
def test_detectron2_own_tool_trains_the_shapes_config_from_converted_pe_weights(tmp_path):
    """Detectron2's ``tools/lazyconfig_train_net.py``, untouched: nothing but our config file, and PE weights in the
    released format converted with ``pe-dense convert --to detectron2`` as ``train.init_checkpoint``."""
    import subprocess
    import sys

    from pe_dense.cli import main as cli

    src = pe_dense.create_model("PE-Spatial-T16-512")
    released = tmp_path / "PE-Spatial-T16-512.pt"
    torch.save({"visual." + k: v for k, v in src.state_dict().items()}, released)
    d2_ckpt = tmp_path / "pe_t_d2.pth"
    cli(["convert", str(released), str(d2_ckpt), "--model", "PE-Spatial-T16-512", "--to", "detectron2"])
    sd = torch.load(d2_ckpt, weights_only=True)["model"]
    assert torch.equal(sd["backbone.fpn.net.conv1.weight"], src.conv1.weight)

    cfg = os.path.join(ROOT, "configs", "detectron2", "shapes", "mask_rcnn_pe_spatial_t_shapes.py")
    out = tmp_path / "run"
    env = dict(os.environ, PE_DENSE_DATA=str(tmp_path / "data"))
    r = subprocess.run([sys.executable, _detectron2_tools(), "--config-file", cfg, f"train.output_dir={out}",
                        "train.max_iter=4", "train.eval_period=4", "train.log_period=2",
                        f"train.init_checkpoint={d2_ckpt}"], env=env, cwd=ROOT, capture_output=True, text=True)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-4000:]
    assert "Starting training from iteration 0" in log
    assert "Some model parameters or buffers are not found in the checkpoint" in log  # heads: not in a PE file
    assert "[pe_dense] partial load:" in log  # the tower-only file checked whole and the rest said by name
    assert "backbone.fpn.net" not in log.split("are not found in the checkpoint")[1].split("\n\n")[0]
    metrics = [json.loads(line) for line in open(out / "metrics.json")]
    assert any("bbox/AP" in m for m in metrics) and all(np.isfinite(m["total_loss"]) for m in metrics
                                                          if "total_loss" in m)


def test_convert_to_detectron2_of_a_patch_14_tower_loads_into_a_patch_16_config(tmp_path, capsys):
    """The released L and G files are patch 14, the detection recipes run patch 16: ``convert --to detectron2``
    resamples conv1 (bicubic) and the file loads into a Detectron2 model through its own checkpointer, every tower
    key found. At a CPU test's size: T's width with a patch-14 kernel, the released files' layout."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import instantiate

    from pe_dense.cli import main as cli

    src = pe_dense.create_model("PE-Spatial-T16-512", patch_size=14, img_size=448)  # 32 x 32 table, as L14-448
    released = tmp_path / "released14.pt"
    torch.save({"state_dict": {"visual." + k: v for k, v in src.state_dict().items()}}, released)
    d2_ckpt = tmp_path / "pe_d2.pth"
    cli(["convert", str(released), str(d2_ckpt), "--model", "PE-Spatial-T16-512", "--to", "detectron2"])
    assert "patch 16, position table 32x32" in capsys.readouterr().out
    cfg = LazyConfig.load(os.path.join(ROOT, "configs", "detectron2", "shapes", "mask_rcnn_pe_spatial_t_shapes.py"))
    model = instantiate(cfg.model)
    loaded = DetectionCheckpointer(model).load(str(d2_ckpt))
    assert loaded is not None
    tower = model.backbone.net
    want = torch.nn.functional.interpolate(src.conv1.weight, size=(16, 16), mode="bicubic", align_corners=False)
    assert tower.patch_size == 16 and torch.equal(tower.conv1.weight, want)
    mine = tower.state_dict()
    for k, v in src.state_dict().items():  # the 32 x 32 position table as it was (tiled per window at run time)
        if k != "conv1.weight":
            assert torch.equal(mine[k], v), k


def test_convert_to_detectron2_refuses_other_extensions(tmp_path):
    from pe_dense.cli import main as cli

    src = pe_dense.create_model("PE-Spatial-T16-512")
    torch.save(src.state_dict(), tmp_path / "pe.pt")
    with pytest.raises(SystemExit):
        cli(["convert", str(tmp_path / "pe.pt"), str(tmp_path / "pe.safetensors"), "--to", "detectron2"])
    assert not os.path.exists(tmp_path / "pe.safetensors")


@pytest.mark.slow
def test_two_process_cpu_training_and_resume(tmp_path):
    """``tools/train_net.py --num-gpus 2`` on a CPU machine: Detectron2's launch (gloo), DDP, both ranks step,
    one checkpoint, and ``--resume`` continues."""
    import subprocess
    import sys

    cfg = os.path.join(ROOT, "configs", "detectron2", "shapes", "mask_rcnn_pe_spatial_t_shapes.py")
    out = tmp_path / "run"
    env = dict(os.environ, PE_DENSE_DATA=str(tmp_path / "data"), OMP_NUM_THREADS="1")
    from procs import free_port

    # a free port each time: Detectron2's default is one per user, which a second run beside this one also takes
    tool = [sys.executable, os.path.join(ROOT, "tools", "train_net.py"), "--num-gpus", "2", "--config-file", cfg,
            "--dist-url", f"tcp://127.0.0.1:{free_port()}"]
    opts = [f"train.output_dir={out}", "train.checkpointer.period=3", "train.log_period=1", "train.eval_period=0",
            "dataloader.train.total_batch_size=2"]
    r = subprocess.run(tool + opts + ["train.max_iter=3"], env=env, cwd=ROOT, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    for log in ("log.txt", "log.txt.rank1"):
        assert "Starting training from iteration 0" in open(out / log).read(), log
    assert sorted(os.listdir(out)).count("model_0000002.pth") == 1
    metrics = [json.loads(line) for line in open(out / "metrics.json")]
    assert [m["iteration"] for m in metrics if "total_loss" in m] == [0, 1, 2]
    assert all(np.isfinite(m["total_loss"]) for m in metrics if "total_loss" in m)
    tool[-1] = f"tcp://127.0.0.1:{free_port()}"
    r = subprocess.run(tool + ["--resume"] + opts + ["train.max_iter=5"], env=env, cwd=ROOT, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "Starting training from iteration 3" in open(out / "log.txt.rank1").read()
    metrics = [json.loads(line) for line in open(out / "metrics.json")]
    assert [m["iteration"] for m in metrics if "total_loss" in m][-2:] == [3, 4]
