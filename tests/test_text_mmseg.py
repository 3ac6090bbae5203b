"""Segment by text in MMSeg: the zero-shot protocol's configs (ADE20K-150, Pascal VOC 21, Pascal Context 59,
COCO-Stuff 171) load their test data in the real layouts; MMSeg's own tools/test.py evaluates PETextSegmentor with a
PE-Core CLIP file as its checkpoint argument (a vision-only file is refused); and the segmentor returns a planted
tower's classes (tests/test_segment.py) through mmengine's checkpoint loader and MMSeg's post-processing, with the
background threshold at its closed form."""
import glob
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("mmseg")
pytest.importorskip("open_clip")

from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402

import pe_dense  # noqa: E402
import pe_dense.mmseg  # noqa: E402,F401

sys.path.insert(0, os.path.dirname(__file__))
import minidata  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..")
ZS = sorted(glob.glob(os.path.join(ROOT, "configs", "mmseg", "zero-shot", "*.py")))
# CPU size: PE-Core-T, the class name alone, images at a short side of 64, windows of 48
SMALL = ["model.clip.model_name=PE-Core-T16-384", "model.prompts=none", "model.test_cfg.crop_size=(48,48)",
         "model.test_cfg.stride=(32,32)", "test_dataloader.dataset.pipeline.1.scale=(512,64)",
         "test_dataloader.num_workers=0", "test_dataloader.persistent_workers=False"]
ROOTS = {"ade20k-150": "ade/ADEChallengeData2016", "voc21": "VOCdevkit/VOC2012", "context59": "VOCdevkit/VOC2010",
         "coco-stuff171": "coco_stuff164k"}


def _name(path):
    return os.path.basename(path)[len("text_pe-core-l_"):-3]


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("zs_data"))
    for write in (minidata.write_ade, minidata.write_voc, minidata.write_context, minidata.write_coco_stuff):
        write(root)
    return root


def test_there_is_a_config_per_protocol_dataset():
    assert sorted(_name(p) for p in ZS) == sorted(ROOTS)


@pytest.mark.parametrize("path", ZS, ids=_name)
def test_zero_shot_config_loads_its_test_data_and_builds(path, layouts):
    """The test dataloader yields a batch from the dataset's real layout (short side 336 by default), and the model
    builds with the dataset's classes from its metainfo (VOC's background not prompted)."""
    from mmengine.runner import Runner

    cfg = Config.fromfile(path)
    init_default_scope("mmseg")
    cfg.test_dataloader.dataset.data_root = os.path.join(layouts, "data", ROOTS[_name(path)])
    cfg.test_dataloader.num_workers = 0
    cfg.test_dataloader.persistent_workers = False
    batch = next(iter(Runner.build_dataloader(cfg.test_dataloader)))
    img, sample = batch["inputs"][0], batch["data_samples"][0]
    assert min(img.shape[-2:]) == 336 and "gt_sem_seg" in sample
    assert sample.gt_sem_seg.data.shape[-2:] == (96, 128)  # labels at the original size, as the metric reads them
    cfg.model.clip.model_name = "PE-Core-T16-384"
    model = MODELS.build(cfg.model)
    ds = type(Runner.build_dataloader(cfg.test_dataloader).dataset)
    assert model.class_names == list(ds.METAINFO["classes"])
    names = [n.strip() for n in model.class_names]  # metainfo names carry stray spaces (ADE20K's 'bed ')
    assert model.segmenter.names == (names[1:] if cfg.model.background is not None else names)


@pytest.mark.slow
def test_mmsegs_own_test_tool_evaluates_the_text_segmentor(tmp_path, layouts):
    from test_clip import _perturbed_openclip
    from test_mmseg import _mim_tool

    ckpt = tmp_path / "open_clip_pe_core_t.pt"
    torch.save(_perturbed_openclip().state_dict(), ckpt)
    cfg = [p for p in ZS if _name(p) == "ade20k-150"][0]
    data = [f"test_dataloader.dataset.data_root={layouts}/data/ade/ADEChallengeData2016"]
    r = subprocess.run([sys.executable, _mim_tool("test.py"), cfg, str(ckpt), "--work-dir", str(tmp_path / "wd"),
                        "--cfg-options"] + SMALL + data, cwd=str(tmp_path), capture_output=True, text=True)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-4000:]
    assert "mIoU" in log and "aAcc" in log

    spatial = tmp_path / "spatial.pt"
    torch.save(pe_dense.create_model("PE-Spatial-T16-512").state_dict(), spatial)
    r = subprocess.run([sys.executable, _mim_tool("test.py"), cfg, str(spatial), "--work-dir", str(tmp_path / "wd2"),
                        "--cfg-options"] + SMALL + data, cwd=str(tmp_path), capture_output=True, text=True)
    assert r.returncode != 0 and "no text tower" in r.stdout + r.stderr


def _segmentor(classes, background=None):
    cfg = Config.fromfile(ZS[0]).model
    cfg.update(classes=classes, background=background, prompts="none",
               clip=dict(model_name="PE-Core-T16-384", checkpoint=None), test_cfg=dict(mode="whole"))
    init_default_scope("mmseg")
    return MODELS.build(cfg).eval()


def test_text_segmentor_returns_the_planted_classes(tmp_path):
    """The planted tower's file goes through mmengine's load_checkpoint (as tools/test.py loads its argument) into the
    segmentor, whose prediction after MMSeg's post-processing is the planted stripes; with the background class first
    and exp(logit_scale) at 1, a threshold above e / (e + e^c1 + e^c2) labels every pixel background (0), one below
    labels the stripes 1..3."""
    from mmengine.runner.checkpoint import load_checkpoint
    from mmseg.structures import SegDataSample
    from test_segment import _planted_clip, _stripes

    clip, text = _planted_clip()
    with torch.no_grad():
        clip.logit_scale.zero_()
    torch.save(clip.state_dict(), tmp_path / "planted.pt")
    img, truth = _stripes()
    expected = np.kron(truth, np.ones((16, 16), np.int64))
    cos = text @ text.t()
    best = (1 / cos.exp().sum(1)).max().item() * np.e
    for classes, background, want in ((["red", "green", "blue"], None, expected),
                                      (["background", "red", "green", "blue"], best / 2, expected + 1),
                                      (["background", "red", "green", "blue"], best + 0.01, 0 * expected)):
        seg = _segmentor(classes, background)
        load_checkpoint(seg, str(tmp_path / "planted.pt"), map_location="cpu")
        data = dict(inputs=[torch.from_numpy(img[..., ::-1].copy()).permute(2, 0, 1)],
                    data_samples=[SegDataSample(metainfo=dict(ori_shape=(64, 96), img_shape=(64, 96),
                                                               pad_shape=(64, 96), padding_size=[0, 0, 0, 0]))])
        with torch.no_grad():
            out = seg.test_step(data)[0]
        np.testing.assert_array_equal(out.pred_sem_seg.data[0].numpy(), want)


def test_text_segmentor_refusals():
    from pe_dense.errors import PEDenseError

    with pytest.raises(PEDenseError, match="training-free"):
        _segmentor(["a", "b"]).loss(torch.zeros(1, 3, 32, 32), [])
    with pytest.raises(PEDenseError, match=r"probability in \(0, 1\)"):
        _segmentor(["background", "a"], background=2.0)
    with pytest.raises(PEDenseError, match="empty class list"):
        _segmentor("")

