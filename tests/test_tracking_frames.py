"""Tracking on a user's own frames (``pe-dense track --frames DIR --mask PNG``), not the DAVIS layout."""
import json
import os
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import pe_dense
from pe_dense.cli import main as cli
from pe_dense.tracking import PropagationConfig, load_sequence, make_davis, pe_extractor, read_annotation
from pe_dense.tracking.evaluate import predict_sequence


def _user_video(tmp_path):
    """A generated sequence as a user has it: frames named frame1.jpg .. frame12.jpg (natural order, not DAVIS's
    00000.jpg) in one folder, and the first frame's mask in three forms: palette, 8-bit ids 5 and 9, colours."""

    root = make_davis(str(tmp_path / "davis"), num_sequences=1, frames=12)
    seq = load_sequence(root, sorted(os.listdir(os.path.join(root, "JPEGImages", "480p")))[0])
    frames = tmp_path / "my_video"
    frames.mkdir()
    for i, f in enumerate(seq.frames):
        shutil.copy(f, frames / f"frame{i + 1}.jpg")
    first = read_annotation(seq.first_annotation)
    assert sorted(np.unique(first).tolist()) == [0, 1, 2]
    ids = np.select([first == 1, first == 2], [5, 9], 0).astype(np.uint8)
    Image.fromarray(ids, mode="L").save(tmp_path / "ids.png")
    colours = np.zeros(first.shape + (3,), np.uint8)
    colours[first == 1], colours[first == 2] = (10, 200, 30), (250, 20, 20)  # colour order = object order
    Image.fromarray(colours).save(tmp_path / "colours.png")
    shutil.copy(seq.first_annotation, tmp_path / "palette.png")
    return seq, frames


def test_track_own_frames_from_any_mask_equals_the_davis_path(tmp_path):
    """``pe-dense track --frames DIR --mask PNG``: the same masks as the DAVIS pipeline on the same frames, whether
    the mask is a palette PNG, a PNG of instance ids (5 and 9) or a colour PNG; masks, GIF, MP4 written."""


    seq, frames = _user_video(tmp_path)
    torch.manual_seed(0)
    model = pe_dense.create_model("PE-Spatial-T16-512")
    weights = tmp_path / "t.pt"
    torch.save(model.state_dict(), weights)
    cfg = PropagationConfig(short_side=240)
    want = predict_sequence(seq, pe_extractor(model, "cpu"), model.patch_size, cfg)
    for mask in ("palette", "ids", "colours"):
        out = tmp_path / f"out_{mask}"
        cli(["track", "--frames", str(frames), "--mask", str(tmp_path / f"{mask}.png"), "--out", str(out),
             "--checkpoint", str(weights), "--short-side", "240", "--device", "cpu"])
        got = [np.array(Image.open(out / "masks" / f"frame{i + 1}.png")) for i in range(12)]
        assert all(np.array_equal(g, w) for g, w in zip(got, want)), mask
        assert Image.open(out / "masks" / "frame3.png").mode == "P"
        objects = json.load(open(out / "objects.json"))["objects"]
        assert objects == {"palette": {"1": 1, "2": 2}, "ids": {"1": 5, "2": 9},
                           "colours": {"1": [10, 200, 30], "2": [250, 20, 20]}}[mask]
        gif = Image.open(out / "overlay.gif")
        assert gif.n_frames == 12
        assert (out / "overlay.mp4").stat().st_size > 0
    pal = Image.open(tmp_path / "out_colours" / "masks" / "frame1.png").getpalette()
    assert pal[3:9] == [10, 200, 30, 250, 20, 20]  # the user's colours are the output's


def test_track_own_frames_refuses_bad_input(tmp_path, capsys):
    seq, frames = _user_video(tmp_path)
    Image.fromarray(np.zeros((240, 320), np.uint8), mode="L").save(tmp_path / "empty.png")
    Image.fromarray(np.zeros((100, 100), np.uint8) + 1, mode="L").save(tmp_path / "small.png")
    cases = [(["--mask", str(tmp_path / "empty.png")], "no object in it"),
             (["--mask", str(tmp_path / "small.png")], "frame of 240x320 but --mask .* is 100x100"),
             (["--mask", str(tmp_path / "nope.png")], "file not found"),
             ([], "--frames and --mask go together")]
    for extra, message in cases:
        with pytest.raises(SystemExit) as e:
            cli(["track", "--frames", str(frames), "--out", str(tmp_path / "o")] + extra)
        assert e.value.code == 2
        assert re.search(message, capsys.readouterr().err), message
        assert not (tmp_path / "o").exists()
