"""``pe-dense probe``: per-block frozen probes. Where the right block is known (a tower whose weights the test sets
so that the labels become linearly readable only from one block on), the probe must rank that block first."""
import json
import os
import re

import numpy as np
import pytest
import torch
from PIL import Image

import pe_dense
from pe_dense.probe import FeatureCache, ProbeError, probe, resolve_blocks, write_results

PLANTED = 6  # the block that makes the labels readable


def planted_tower(k=PLANTED):
    """PE-Spatial-T whose blocks are identities except block ``k``, whose attention averages a patch's brightness
    over the whole image (uniform attention: zero queries and keys) into channel 3. Before ``k`` a patch knows its
    own brightness only; from ``k`` on, also the image's mean. The labels below need both."""
    m = pe_dense.create_model("PE-Spatial-T16-512", out_indices=list(range(12)))
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        for n, p in m.named_parameters():
            if n.endswith(("ln_1.weight", "ln_2.weight")) or n == "ln_pre.weight":
                p.fill_(1.0)
        m.conv1.weight[0, 0] = 1.0 / 256  # channel 0: the patch's mean red value
        m.positional_embedding[:, 1], m.positional_embedding[:, 2] = 10.0, -10.0  # an anchor: LN ~ linear
        attn = m.transformer.resblocks[k].attn
        attn.in_proj_weight[2 * 192, 0] = 1.0  # head 0's value dim 0 = LN(x)[0]
        attn.out_proj.weight[3, 0] = 4.0  # -> channel 3: the mean over the image
    return m


def write_planted(root, task, n_train=32, n_val=16, seed=0, side=6):
    """Images of side x side uniform 16-px patches, red = g + d (g per image, d per patch: +-0.08..0.12).
    seg (ADE layout):
    class 1 where d > 0 (the patch is brighter than its image's mean), else 0; depth (NYU layout): 2 + 6 g metres."""
    rng = np.random.default_rng(seed)
    splits = ("training", "validation") if task == "seg" else ("train", "test")
    for split, n in zip(splits, (n_train, n_val)):
        for d in ("images", "annotations"):
            os.makedirs(os.path.join(root, d, split), exist_ok=True)
        for i in range(n):
            g = rng.uniform(0.25, 0.75)
            # half the patches brighter than the image's mean, half darker, by similar amounts (smaller than the
            # spread of g: a patch's own brightness does not tell which)
            sign = rng.permutation(np.repeat([-1.0, 1.0], side * side // 2)).reshape(side, side)
            dev = sign * rng.uniform(0.08, 0.12, (side, side))
            dev -= dev.mean()  # the image's mean is g exactly
            red = np.kron(g + dev, np.ones((16, 16)))
            img = np.stack([red, np.full_like(red, 0.5), np.full_like(red, 0.5)], -1)
            Image.fromarray((img * 255).round().astype(np.uint8)).save(os.path.join(root, "images", split, f"{i}.png"))
            if task == "seg":
                lab = np.kron((dev > 0).astype(np.uint8) + 1, np.ones((16, 16), np.uint8))  # ADE: stored class + 1
                Image.fromarray(lab).save(os.path.join(root, "annotations", split, f"{i}.png"))
            else:
                mm = np.full(red.shape, (2 + 6 * g) * 1000, np.float64).round().astype(np.uint16)
                Image.fromarray(mm).save(os.path.join(root, "annotations", split, f"{i}.png"))
    return root


def brightness_oracle(root):
    """The best mIoU (%, mmseg's: per class over all validation pixels, classes 0 and 1) that any rule on a patch's
    own brightness of the interval kind scores on the validation set, the interval chosen on that set itself. Before
    the planted block a linear probe sees LN([red / 256, 10, -10, 0, ...]): a linear read-out of it is
    (a red + b) / sqrt(c red^2 + d) + e, whose sign changes at most twice in red, so it is such a rule (up to the
    blending of neighbouring patches' logits by the upsampling at patch borders)."""
    reds, labels = [], []
    for f in sorted(os.listdir(os.path.join(root, "images", "validation"))):
        img, ann = (np.asarray(Image.open(os.path.join(root, d, "validation", f))) for d in ("images", "annotations"))
        reds.append(img[::16, ::16, 0].ravel())
        labels.append(ann[::16, ::16].ravel() - 1)  # ADE: stored class + 1
    red, label = np.concatenate(reds).astype(float), np.concatenate(labels)

    def miou(pred):
        return 100 * np.mean([((pred == c) & (label == c)).sum() / ((pred == c) | (label == c)).sum() for c in (0, 1)])

    v = np.unique(red)
    cuts = np.concatenate([[v[0] - 1], (v[:-1] + v[1:]) / 2, [v[-1] + 1]])
    best = 0.0
    for i, lo in enumerate(cuts):
        for hi in cuts[i:]:
            inside = (red > lo) & (red < hi)
            best = max(best, miou(inside.astype(int)), miou((~inside).astype(int)))
    return best


@pytest.mark.parametrize("task", ["seg", "depth"])
@pytest.mark.slow
def test_probe_ranks_the_planted_block_first(tmp_path, task):
    data = write_planted(str(tmp_path / "data"), task)
    r = probe(task, "PE-Spatial-T16-512", data=data, model=planted_tower(), size=96, epochs=30,
              cache_root=str(tmp_path / "cache"), progress=False)
    assert r.best()["block"] == PLANTED, [(row["block"], row[r.metric]) for row in r.rows]
    before = [row[r.metric] for row in r.rows if row["block"] < PLANTED]
    after = [row[r.metric] for row in r.rows if row["block"] >= PLANTED]
    assert len(set(before)) == 1 and len(set(after)) == 1  # identical blocks, identical probes: seeded
    if task == "seg":
        # the known answer: before the planted block no probe can beat the best rule on a patch's own brightness (67.6
        # on these images), from it on the probe must (the image's mean is there); 40.8 and 81.5 when measured
        oracle = brightness_oracle(data)
        assert before[0] <= oracle + 1 and after[0] > oracle, (before[0], after[0], oracle)
    else:
        assert after[0] < 0.1 * before[0]  # RMSE: 0.002 and 0.68 m when measured
    files = write_results([r], str(tmp_path / "out"))
    saved = json.load(open(files["json"]))[0]
    assert saved["best"]["block"] == PLANTED and len(saved["rows"]) == 12
    plot = np.asarray(Image.open(files["png"]).convert("RGB"))
    assert plot.shape == (480, 768, 3)  # 6.4 x 4 inches at 120 dpi
    # the curve and the best block's ring, in matplotlib's first colour (#1f77b4): a blank or empty plot has none
    assert (np.abs(plot.astype(int) - (31, 119, 180)).sum(-1) < 30).sum() > 500


def test_second_probe_reuses_the_cache_and_resumes_an_interrupted_one(tmp_path):
    data = write_planted(str(tmp_path / "data"), "seg", n_train=8, n_val=4)
    kw = dict(data=data, model=planted_tower(), size=96, epochs=2, cache_root=str(tmp_path / "cache"),
              progress=False)
    first = probe("seg", "PE-Spatial-T16-512", **kw)
    assert first.tower_seconds > 0

    def scores(r):
        return [{k: v for k, v in row.items() if k != "probe_seconds"} for row in r.rows]

    again = probe("seg", "PE-Spatial-T16-512", **kw)
    assert again.tower_seconds == 0 and scores(again) == scores(first)  # no forward: features from the cache
    files = sorted(f for f in os.listdir(first.cache_dir) if f.endswith(".safetensors"))
    assert len(files) == 8
    os.remove(os.path.join(first.cache_dir, files[3]))  # as if killed before the 4th image was written
    with open(os.path.join(first.cache_dir, files[5]), "wb") as f:
        f.write(b"cut short")
    resumed = probe("seg", "PE-Spatial-T16-512", **kw)
    assert 0 < resumed.tower_seconds and scores(resumed) == scores(first)


def test_tracking_probe_equals_the_davis_pipeline_per_block(tmp_path):
    """J&F per block from cached features (fp32) equals evaluate_davis with a tower tapping that block."""
    from pe_dense.tracking import PropagationConfig, evaluate_davis, make_davis, pe_extractor

    root = make_davis(str(tmp_path / "davis"), num_sequences=1, frames=8)
    torch.manual_seed(0)
    tower = pe_dense.create_model("PE-Spatial-T16-512", out_indices=[2, 11])
    r = probe("track", "PE-Spatial-T16-512", data=root, model=tower, blocks=[2, 11], size=240,
              cache_root=str(tmp_path / "cache"), cache_dtype=torch.float32, progress=False)
    for row in r.rows:
        one = pe_dense.create_model("PE-Spatial-T16-512", out_indices=[row["block"]])
        one.load_state_dict(tower.state_dict())
        ref = evaluate_davis(root, str(tmp_path / f"ref{row['block']}"), pe_extractor(one, "cpu"), 16,
                             PropagationConfig(short_side=240), progress=False)
        assert row["J&F"] == pytest.approx(ref["summary"]["J&F-Mean"], abs=1e-9)


def test_blocks_and_cache_memory(tmp_path):
    assert resolve_blocks("all", 12) == list(range(12)) and resolve_blocks("-1, 3", 12) == [3, 11]
    with pytest.raises(ProbeError, match="block 12 is outside the tower's 12 blocks"):
        resolve_blocks([12], 12)
    # the cache reads one block of one image: a 24-block L-sized file is never loaded whole
    cache = FeatureCache(str(tmp_path), dict(model="x", task="seg"))
    cache.write(0, {b: torch.full((1024, 32, 32), float(b), dtype=torch.float16) for b in range(24)},
                torch.zeros(512, 512, dtype=torch.int16))
    got = cache.read(0, [17])
    assert list(got) == [17] and got[17].shape == (1024, 32, 32) and float(got[17][0, 0, 0]) == 17.0
    assert cache.label(0).dtype == torch.int64


def test_probe_cli_on_the_embedded_set(tmp_path, capsys, monkeypatch):
    from pe_dense.cli import main as cli

    monkeypatch.setenv("PE_DENSE_DATA", str(tmp_path / "data"))
    cli(["probe", "seg", "--blocks", "5,11", "--epochs", "1", "--cache", str(tmp_path / "cache"), "--out",
         str(tmp_path / "out"), "--model", "PE-Spatial-T16-512", "PE-Core-T16-384"])
    out = capsys.readouterr().out
    assert out.count("best block:") == 2 and "model.backbone.out_indices=[" in out
    assert sorted(os.listdir(tmp_path / "out")) == ["probe_seg.csv", "probe_seg.json", "probe_seg.png"]
    rows = open(tmp_path / "out" / "probe_seg.csv").read().splitlines()
    assert rows[0].startswith("model,block,mIoU") and len(rows) == 5  # 2 models x 2 blocks
    with pytest.raises(SystemExit):
        cli(["probe", "depth", "--data", str(tmp_path / "nowhere")])
    assert "image folder not found" in capsys.readouterr().err


def test_probe_cli_depth_and_track_on_folders_in_the_datasets_layouts(tmp_path, capsys):
    """``pe-dense probe depth --data`` on a folder in NYUv2's layout and ``probe track --data`` on one in DAVIS-2017's
    (JPEGImages/480p, Annotations/480p, ImageSets/2017): each writes its table, plot and files and names a block."""
    from pe_dense.cli import main as cli
    from pe_dense.tracking import make_davis

    nyu = write_planted(str(tmp_path / "nyu"), "depth", n_train=8, n_val=4)
    davis = make_davis(str(tmp_path / "davis"), num_sequences=1, frames=6)
    for task, data, metric in (("depth", nyu, "rmse"), ("track", davis, "J&F")):
        out = tmp_path / f"out_{task}"
        cli(["probe", task, "--data", data, "--blocks", "5,11", "--epochs", "2", "--size", "96" if task == "depth"
             else "160", "--cache", str(tmp_path / "cache"), "--out", str(out)])
        printed = capsys.readouterr().out
        assert f"data {data}, blocks 5,11" in printed and re.search(rf"best block: (5|11) \({metric} ", printed)
        assert sorted(os.listdir(out)) == [f"probe_{task}.csv", f"probe_{task}.json", f"probe_{task}.png"]
        rows = open(out / f"probe_{task}.csv").read().splitlines()
        assert rows[0].startswith(f"model,block,{metric}") and len(rows) == 3, rows  # 2 blocks
