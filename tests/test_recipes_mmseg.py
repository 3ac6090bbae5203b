"""The MMSeg recipes train what they say: layer decay reaches the PE tower only (the DPT head's own ``conv1``
layers keep factor 1), and every ADE20K / NYUv2 / KITTI config's train and val dataloaders load a miniature
dataset written in the real layout, through the tool as a user runs it (Albu transforms included)."""
import glob
import os
import sys

import pytest
import torch

pytest.importorskip("mmseg")

from mmengine.config import Config  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402

import pe_dense.mmseg  # noqa: E402,F401
from pe_dense.mmseg.train import main as train_mmseg  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from minidata import write_ade, write_kitti, write_nyu, write_user_depth, write_user_seg  # noqa: E402
from recipe_checks import assert_layer_decay  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..")
MM = os.path.join(ROOT, "configs", "mmseg")
# the configs that train (zero-shot/: training-free, tools/test.py only: tests/test_text_mmseg.py)
CONFIGS = sorted(c for c in glob.glob(os.path.join(MM, "*", "*.py"))
                 if "_base_" not in c and os.sep + "zero-shot" + os.sep not in c)
BENCHMARK = [c for c in CONFIGS if os.sep + "embedded" + os.sep not in c]


def rel(c):
    return os.path.relpath(c, MM)


@pytest.mark.parametrize("path", CONFIGS, ids=[rel(c) for c in CONFIGS])
def test_layer_decay_reaches_the_tower_only(path):
    cfg = Config.fromfile(path)
    init_default_scope("mmseg")
    cfg.model.backbone.pretrained = None
    with torch.device("meta"):
        model = MODELS.build(cfg.model)
    ow = build_optim_wrapper(model, cfg.optim_wrapper)
    base = cfg.optim_wrapper.optimizer.lr
    decay = cfg.optim_wrapper.paramwise_cfg.get("layer_decay_rate", 1.0)
    factor = {id(p): g["lr"] / base for g in ow.optimizer.param_groups for p in g["params"]}
    vit, depth = model.backbone.vit, model.backbone.vit.depth
    tower = {id(p): n for n, p in vit.named_parameters()}
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trained and all(id(p) in factor for _, p in trained)
    assert_layer_decay(trained, factor, tower, depth, decay)
    if "dpt" in rel(path):  # the defect this guards against: DPT's fusion convs are named conv1
        assert any(".conv1." in n and id(p) not in tower for n, p in trained)


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("mmseg_data"))
    write_ade(root)
    write_nyu(root)
    write_kitti(root)
    write_user_seg(os.path.join(root, "data", "my_segmentation"))  # configs/mmseg/custom: their default data_root
    write_user_depth(os.path.join(root, "data", "my_depth"), fmt="png")
    return root


@pytest.mark.parametrize("path", BENCHMARK, ids=[rel(c) for c in BENCHMARK])
def test_every_config_loads_data_through_the_tool(path, layouts, monkeypatch, capsys):
    """``tools/train_mmseg.py CONFIG --check-data`` from a folder holding ``data/`` as the configs expect: the
    pre-flight checks pass, and the train and val loaders each yield a batch."""
    monkeypatch.chdir(layouts)
    train_mmseg([path, "--check-data", "--work-dir", os.path.join(layouts, "wd"), "--cfg-options",
                 "train_dataloader.num_workers=0", "train_dataloader.persistent_workers=False",
                 "val_dataloader.num_workers=0", "val_dataloader.persistent_workers=False"])
    out = capsys.readouterr().out
    assert "check-data: ok" in out, out
    cfg = Config.fromfile(path)
    bs = cfg.train_dataloader.batch_size
    assert f"train_dataloader: a batch of {bs}," in out, out
    label = "gt_depth_map" if cfg.model.type.endswith("DepthEstimator") else "gt_sem_seg"
    assert label in out
