"""Faults and bad input, tried as an attacker would: no code from a file, no silent overwrite, no stale result,
no silently wrong data, and a clear early error for each bad input (issue 15)."""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import pe_dense
from pe_dense.checkpoint import CheckpointError, RefusedFileError, resolve, safe_load

ROOT = os.path.join(os.path.dirname(__file__), "..")
sys.path.insert(0, os.path.dirname(__file__))


class Payload:
    """Unpickling this runs ``touch MARKER``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _crafted(tmp_path, name="evil.pkl"):
    marker = str(tmp_path / "code_ran")
    path = str(tmp_path / name)
    with open(path, "wb") as f:
        pickle.dump({"model": {"w": Payload(marker)}, "__author__": "x", "iteration": 3}, f)
    return path, marker


# ---------------------------------------------------------------- 1. no code from a file
@pytest.mark.parametrize("name", ["evil.pkl", "evil.pth", "evil.pt", "evil.bin"])
def test_crafted_pickles_are_refused_whatever_the_extension(tmp_path, name):
    path, marker = _crafted(tmp_path, name)
    with pytest.raises(RefusedFileError, match="Refused .*could run code") as e:
        safe_load(path)
    assert "weights_only=False" not in str(e.value) and e.value.__cause__ is None
    with pytest.raises(RefusedFileError):
        pe_dense.load_checkpoint(pe_dense.create_model("PE-Spatial-T16-512"), path)
    assert not os.path.exists(marker)


def test_model_zoo_pkl_of_numpy_arrays_still_loads(tmp_path):
    path = str(tmp_path / "zoo.pkl")
    with open(path, "wb") as f:
        pickle.dump({"model": {"w": np.ones((2, 3), np.float32)}, "__author__": "Detectron2 zoo"}, f)
    assert safe_load(path)["model"]["w"].shape == (2, 3)


def test_detectron2_checkpointer_is_hardened(tmp_path):
    pytest.importorskip("detectron2")
    from detectron2.checkpoint import DetectionCheckpointer

    import pe_dense.detectron2  # noqa: F401  (hardens every DetectionCheckpointer)

    path, marker = _crafted(tmp_path)
    with pytest.raises(RefusedFileError):
        DetectionCheckpointer(torch.nn.Linear(2, 3)).load(path)
    assert not os.path.exists(marker)


def _train_net(args, env, cwd=ROOT):
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "train_net.py"), "--config-file",
                           os.path.join(ROOT, "configs", "detectron2", "shapes", "mask_rcnn_pe_spatial_t_shapes.py")]
                          + args, env=env, cwd=cwd, capture_output=True, text=True)


def test_train_net_refuses_code_on_resume_and_overwrite_without_resume(tmp_path):
    pytest.importorskip("detectron2")
    out = tmp_path / "run"
    out.mkdir()
    path, marker = _crafted(out)
    (out / "last_checkpoint").write_text("evil.pkl")
    env = dict(os.environ, PE_DENSE_DATA=str(tmp_path / "data"))
    opts = [f"train.output_dir={out}", "train.max_iter=1", "train.eval_period=0"]
    # 2. without --resume: refused, nothing written
    before = sorted(os.listdir(out))
    r = _train_net(opts, env)
    assert r.returncode == 2 and "--resume" in r.stderr and "train.output_dir=NEW_DIR" in r.stderr, r.stderr[-2000:]
    assert sorted(os.listdir(out)) == before
    # 1. --resume with last_checkpoint naming a crafted pickle: refused, the payload never runs
    r = _train_net(["--resume"] + opts, env)
    assert r.returncode != 0 and "Refused" in r.stdout + r.stderr and "could run code" in r.stdout + r.stderr
    assert not os.path.exists(marker)


def test_detectron2_resume_skips_a_truncated_checkpoint_and_warns_when_none(tmp_path, caplog):
    pytest.importorskip("detectron2")
    from pe_dense.detectron2.train import SafeCheckpointer

    model = torch.nn.Linear(2, 3)
    ck = SafeCheckpointer(model, str(tmp_path))
    with torch.no_grad():
        model.weight.fill_(1.0)
    ck.save("model_0000001")
    with torch.no_grad():
        model.weight.fill_(3.0)
    ck.save("model_0000003")  # last_checkpoint names it
    data = open(tmp_path / "model_0000003.pth", "rb").read()
    open(tmp_path / "model_0000003.pth", "wb").write(data[: len(data) // 2])  # killed mid-write
    with torch.no_grad():
        model.weight.zero_()
    with caplog.at_level("WARNING"):
        assert ck.resume()
    assert torch.all(model.weight == 1.0)
    assert any("skipping" in r.message and "model_0000003.pth" in r.message and r.levelname == "WARNING"
               for r in caplog.records)
    empty = SafeCheckpointer(model, str(tmp_path / "none"))
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert not empty.resume()
    assert any("no readable checkpoint" in r.message and r.levelname == "WARNING" for r in caplog.records)


def test_mmseg_resume_skips_a_truncated_checkpoint(tmp_path, caplog):
    pytest.importorskip("mmseg")
    from pe_dense.mmseg.train import resume_checkpoint

    for i in (2, 4):
        torch.save({"meta": {"iter": i}}, tmp_path / f"iter_{i}.pth")
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "iter_4.pth"))
    assert resume_checkpoint(str(tmp_path)) == str(tmp_path / "iter_4.pth")
    data = open(tmp_path / "iter_4.pth", "rb").read()
    open(tmp_path / "iter_4.pth", "wb").write(data[:-40])
    assert resume_checkpoint(str(tmp_path)) == str(tmp_path / "iter_2.pth")
    assert resume_checkpoint(str(tmp_path / "empty")) is None


def test_mmseg_loads_refuse_code(tmp_path):
    """mmengine's local loader (resume, load_from, init_cfg) reads through safe_load; a crafted file named by
    last_checkpoint is refused, pickle or zip."""
    pytest.importorskip("mmseg")
    from mmengine.runner.checkpoint import CheckpointLoader

    import pe_dense.mmseg  # noqa: F401
    from pe_dense.mmseg.train import resume_checkpoint

    path, marker = _crafted(tmp_path, "iter_8.pth")  # a plain pickle
    (tmp_path / "last_checkpoint").write_text(path)
    with pytest.raises(RefusedFileError):
        resume_checkpoint(str(tmp_path))
    torch.save({"state_dict": {"w": Payload(marker)}}, str(tmp_path / "iter_9.pth"))  # torch's zip format
    with pytest.raises(RefusedFileError, match="could run code"):
        CheckpointLoader.load_checkpoint(str(tmp_path / "iter_9.pth"))
    assert not os.path.exists(marker)


# ---------------------------------------------------------------- 3. no stale result
def test_track_refuses_results_of_other_settings(tmp_path, capsys):
    from pe_dense.cli import main
    from pe_dense.tracking import make_davis

    davis = make_davis(str(tmp_path / "davis"))
    out = str(tmp_path / "out")
    base = ["track", "--davis", davis, "--out", out, "--short-side", "64", "--no-overlays"]
    main(base + ["--block", "3"])
    first = capsys.readouterr().out
    settings = json.load(open(os.path.join(out, "settings.json")))
    assert settings["block"] == 3 and settings["model"] == "PE-Spatial-T16-512" and settings["short_side"] == 64
    main(base + ["--block", "3"])  # same settings: resumed, nothing propagated again
    assert "frames propagated" not in capsys.readouterr().out and "frames propagated" in first
    with pytest.raises(SystemExit) as e:
        main(base + ["--block", "5"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "block: 3 there, 5 now" in err and "--no-resume" in err
    main(base + ["--block", "5", "--no-resume"])  # recomputed, and said so
    assert "recomputing every sequence" in capsys.readouterr().out
    assert json.load(open(os.path.join(out, "settings.json")))["block"] == 5
    os.remove(os.path.join(out, "settings.json"))  # outputs of unknown origin are not resumed either
    with pytest.raises(SystemExit):
        main(base + ["--block", "5"])
    assert "without a record of their settings" in capsys.readouterr().err


# ---------------------------------------------------------------- 4. no silently wrong data
def test_integer_and_bool_tensors_are_not_cast_to_weights(tmp_path):
    from safetensors.torch import save_file

    model = pe_dense.create_model("PE-Spatial-T16-512")
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd["conv1.weight"] = torch.ones_like(sd["conv1.weight"], dtype=torch.int32)
    sd["ln_pre.weight"] = torch.ones_like(sd["ln_pre.weight"], dtype=torch.bool)
    save_file(sd, str(tmp_path / "ints.safetensors"))
    with pytest.raises(CheckpointError, match=r"conv1.weight: torch.int32; ln_pre.weight: torch.bool"):
        pe_dense.load_checkpoint(model, str(tmp_path / "ints.safetensors"))


def test_strict_false_is_honoured():
    src = pe_dense.create_model("PE-Spatial-T16-512")
    sd = {k: v for k, v in src.state_dict().items() if not k.startswith("transformer.resblocks.11.")}
    sd["extra.weight"] = torch.ones(3)
    dst = pe_dense.create_model("PE-Spatial-T16-512")
    kept = dst.transformer.resblocks[11].mlp.c_fc.weight.clone()
    with pytest.raises(CheckpointError, match="missing keys"):
        pe_dense.load_checkpoint(dst, sd)
    with pytest.warns(UserWarning, match="strict=False.*keep the model's values.*unexpected key"):
        pe_dense.load_checkpoint(dst, sd, strict=False)
    assert torch.equal(dst.conv1.weight, src.conv1.weight)
    assert torch.equal(dst.transformer.resblocks[11].mlp.c_fc.weight, kept)
    bad = dict(sd, **{"conv1.weight": torch.zeros(5, 3, 16, 16)})
    with pytest.raises(CheckpointError, match="shape mismatch"):
        pe_dense.load_checkpoint(dst, bad, strict=False)


def test_model_arguments_out_of_range():
    for kw, msg in [(dict(window_size=4, global_blocks=[12]), r"global_blocks \[12\].*\[12\] out of range"),
                    (dict(window_size=4, global_blocks=[-13]), "out of range"),
                    (dict(patch_size=0), "patch_size must be >= 1"),
                    (dict(img_size=8), "smaller than one patch"),
                    (dict(drop_path_rate=1.0), r"drop_path_rate must be in \[0, 1\)"),
                    (dict(drop_path_rate=-0.1), r"drop_path_rate must be in \[0, 1\)")]:
        with pytest.raises(ValueError, match=msg):
            pe_dense.create_model("PE-Spatial-T16-512", **kw)


def test_input_dtypes_and_empty_images():
    model = pe_dense.create_model("PE-Spatial-T16-512", out_indices=[1]).eval()
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        ref = model(x)[0]
        assert torch.allclose(model(x.double())[0], ref, atol=1e-5)  # cast to the weights' dtype
        assert torch.allclose(model(x.half())[0], model(x.half().float())[0])
        with pytest.raises(TypeError, match=r"expects float images .* got torch.uint8"):
            model((x * 50 + 128).clamp(0, 255).to(torch.uint8))
        with pytest.raises(ValueError, match=r"empty image \(0x64\)"):
            model(torch.zeros(1, 3, 0, 64))


# ---------------------------------------------------------------- clear errors, early: data
def test_coco_json_categories_image_ids_and_polygons(tmp_path):
    pytest.importorskip("detectron2")
    from minidata import write_coco

    from pe_dense.detectron2.data import check_coco

    write_coco(str(tmp_path))
    js = str(tmp_path / "coco" / "annotations" / "instances_val2017.json")
    imgs = str(tmp_path / "coco" / "val2017")
    check_coco(js, imgs)
    good = json.load(open(js))

    def bad(edit):
        data = json.loads(json.dumps(good))
        edit(data)
        json.dump(data, open(js, "w"))

    bad(lambda d: d["annotations"][0].update(category_id=999))
    with pytest.raises(ValueError, match=r"category id\(s\) that 'categories' does not define: 999 \(1 annotation"):
        check_coco(js, imgs)
    bad(lambda d: d["annotations"][1].update(segmentation=[[1, 1, 5, 5]]))
    with pytest.raises(ValueError, match=r"degenerate polygon .* annotation ids " + str(good["annotations"][1]["id"])):
        check_coco(js, imgs)
    bad(lambda d: d["annotations"][0].update(segmentation=[]))
    with pytest.raises(ValueError, match="empty or degenerate polygon"):
        check_coco(js, imgs)
    bad(lambda d: d["annotations"][0].update(image_id=424242))
    with pytest.raises(ValueError, match="name an image id that 'images' does not define"):
        check_coco(js, imgs)


def test_train_net_checks_the_val_json_before_training(tmp_path):
    """A degenerate polygon in the *validation* file used to fail the final evaluation after all the training."""
    pytest.importorskip("detectron2")
    from pe_dense.data.shapes_coco import make_shapes_coco

    data = str(tmp_path / "data")
    files = make_shapes_coco(os.path.join(data, "shapes_coco"))  # where the config finds it: $PE_DENSE_DATA/NAME
    js = files["val"][0]
    d = json.load(open(js))
    d["annotations"][2]["segmentation"] = [[3, 3, 9, 9]]
    json.dump(d, open(js, "w"))
    out = tmp_path / "run"
    r = _train_net([f"train.output_dir={out}", "train.max_iter=1"], dict(os.environ, PE_DENSE_DATA=data))
    assert r.returncode == 2 and "degenerate polygon" in r.stderr and js in r.stderr, r.stderr[-2000:]
    assert not out.exists()


def test_segmentation_labels_outside_the_classes_are_the_ones_listed(tmp_path):
    pytest.importorskip("mmseg")
    from mmengine.config import Config

    from pe_dense.data.seg_depth import make_ade_shapes
    from pe_dense.mmseg.train import DataError, check_data

    data = make_ade_shapes(str(tmp_path / "d"), n_train=2, n_val=1, size=32)
    lab = os.path.join(data, "annotations", "training", "shapes_00001.png")
    arr = np.zeros((32, 32), np.uint8)
    arr[:8], arr[8:16], arr[16:24] = 1, 2, 9  # 1 and 2 are classes 0 and 1 (reduce_zero_label); 9 is not
    arr[24:28], arr[28:] = 0, 255  # 0 and 255 are ignored (reduce_zero_label maps both to 255)
    Image.fromarray(arr).save(lab)
    cfg = Config.fromfile(os.path.join(ROOT, "configs", "mmseg", "embedded", "upernet_pe-spatial-t_shapes-128x128.py"))
    for k in ("train_dataloader", "val_dataloader", "test_dataloader"):
        cfg[k].dataset.data_root = data
        cfg[k].dataset.generate = False
    with pytest.raises(DataError, match=r"shapes_00001.png has label value\(s\) outside the 4 classes: \[9\] "):
        check_data(cfg, num_classes=4)
    arr[16:24] = 4  # class 3: valid, with 0 and 255 beside it
    Image.fromarray(arr).save(lab)
    check_data(cfg, num_classes=4)


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_depth_maps_must_be_16_bit_single_channel(tmp_path, mode):
    pytest.importorskip("mmseg")
    from minidata import write_nyu
    from mmengine.config import Config

    from pe_dense.mmseg.train import DataError, check_data

    write_nyu(str(tmp_path))
    cfg = Config.fromfile(os.path.join(ROOT, "configs", "mmseg", "nyu", "dpt_pe-spatial-t_4xb8-25k_nyu-480x480.py"))
    for k in ("train_dataloader", "val_dataloader", "test_dataloader"):
        cfg[k].dataset.data_root = str(tmp_path / "data" / "nyu")
    check_data(cfg)  # uint16 millimetres: fine
    ann = tmp_path / "data" / "nyu" / "annotations" / "train"
    path = sorted(ann.iterdir())[0]
    Image.new(mode, (16, 12)).save(path)
    what = "8-bit" if mode == "L" else "3-channel 8-bit"
    with pytest.raises(DataError, match=f"is a {what} image; depth maps must be single-channel 16-bit"):
        check_data(cfg)
    # the dataset itself refuses it too, so mmseg's own tools stop as well
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS

    init_default_scope("mmseg")
    with pytest.raises(DataError, match=f"is a {what} image"):
        DATASETS.build(cfg.train_dataloader.dataset)


def test_davis_sequences_are_all_checked_before_the_first_is_processed(tmp_path):
    from pe_dense.tracking import DavisError, evaluate_davis, make_davis

    davis = make_davis(str(tmp_path / "davis"))
    out = tmp_path / "o"
    frame = os.path.join(davis, "JPEGImages", "480p", "synthetic-01", "00004.jpg")
    Image.new("RGB", (64, 48)).save(frame)  # another size than the sequence
    with pytest.raises(DavisError, match="00004.jpg: frame of 48x64 but the first-frame annotation is"):
        evaluate_davis(davis, str(out), None, 16, progress=False)
    open(frame, "w").write("not a jpeg")
    with pytest.raises(DavisError, match="00004.jpg: cannot read this frame"):
        evaluate_davis(davis, str(out), None, 16, progress=False)
    assert not (out / "synthetic-00").exists()  # the first sequence was not processed


# ---------------------------------------------------------------- clear errors, early: files and the CLI
def test_empty_checkpoint_and_paths_that_are_not_hub_ids(tmp_path, monkeypatch):
    import pe_dense.checkpoint as ckpt

    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="the file is empty"):
        pe_dense.load_checkpoint(pe_dense.create_model("PE-Spatial-T16-512"), str(tmp_path / "empty.pt"))

    def no_hub(*a, **k):
        raise AssertionError("the hub was contacted")

    monkeypatch.setattr(ckpt, "_hub_fetch", no_hub)
    for path in ("weights/pe", "weights/pe.pt", str(tmp_path / "nowhere.safetensors")):
        with pytest.raises(FileNotFoundError, match="no such file; hub ids are ORG/NAME"):
            resolve(path)


def test_offline_hub_id_fails_at_once_from_the_cache(monkeypatch):
    import huggingface_hub

    import pe_dense.checkpoint as ckpt

    calls = []

    def fake_download(**kw):
        calls.append(kw)
        raise huggingface_hub.errors.LocalEntryNotFoundError("not in the cache")

    monkeypatch.setattr(ckpt, "_hub_reachable", lambda *a, **k: False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    with pytest.raises(CheckpointError, match=r"offline: the hub is unreachable(.|\n)*Download PE-Spatial-T16-512"):
        resolve("facebook/PE-Spatial-T16-512")
    assert calls == [dict(repo_id="facebook/PE-Spatial-T16-512", filename="PE-Spatial-T16-512.pt",
                          local_files_only=True)]


def test_features_cli_bad_inputs_are_one_line(tmp_path, capsys):
    from pe_dense.cli import main

    (tmp_path / "bad.jpg").write_text("not an image")
    for args, msg in [(["features", str(tmp_path / "bad.jpg")], "bad.jpg: cannot read this image"),
                      (["features", "--out", str(tmp_path / "x.gif")], "--out"),
                      (["features", "--size", "0"], "must be > 0"),
                      (["info", "PE-Spatial-T16-512", "--size", "-3"], "must be > 0"),
                      (["track", "--short-side", "0"], "must be > 0")]:
        with pytest.raises(SystemExit) as e:
            main(args)
        err = capsys.readouterr().err
        assert e.value.code == 2 and msg in err, (args, err)
        assert len([ln for ln in err.splitlines() if "error" in ln]) == 1
    assert not (tmp_path / "x.gif").exists()


def test_features_cli_caps_the_long_side(tmp_path, capsys):
    from pe_dense.cli import main
    from pe_dense.data.images import to_tensor

    Image.new("RGB", (2048, 16)).save(tmp_path / "strip.png")
    x = to_tensor(Image.open(tmp_path / "strip.png").convert("RGB"), short_side=448, multiple=16, max_side=1792)
    assert x.shape[-2:] == (16, 1792)
    main(["features", str(tmp_path / "strip.png"), "--out", str(tmp_path / "f.jpg")])
    out = capsys.readouterr().out
    assert "long side is capped at 1792" in out and Image.open(tmp_path / "f.jpg").format == "JPEG"
