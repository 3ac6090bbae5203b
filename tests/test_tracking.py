"""Tracking: J&F on hand-built cases, propagation with oracle features, the PE pipeline on the embedded set."""
import os
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import pe_dense
from pe_dense.tracking import (
    DavisError,
    PropagationConfig,
    evaluate_davis,
    f_measure,
    j_measure,
    load_sequence,
    make_davis,
    pe_extractor,
    read_annotation,
    run_propagation,
    statistics,
)
from pe_dense.tracking.evaluate import finalize, score_sequence


def square(shape=(100, 100), top=20, left=20, size=40):
    m = np.zeros(shape, bool)
    m[top: top + size, left: left + size] = True
    return m


def test_j_hand_built():
    gt = square()
    assert j_measure(gt, gt) == 1.0
    assert j_measure(square(left=30), gt) == pytest.approx(30 * 40 / (50 * 40))  # 1200 / 2000
    assert j_measure(np.zeros_like(gt), np.zeros_like(gt)) == 1.0  # both empty
    assert j_measure(np.zeros_like(gt), gt) == 0.0
    stack = j_measure(np.stack([gt, square(left=30)]), np.stack([gt, gt]))
    assert stack.shape == (2,) and stack.tolist() == pytest.approx([1.0, 0.6])


def test_f_hand_built():
    gt = square()  # boundary ring of 160 pixels; tolerance ceil(0.008 * 141.4) = 2 px
    assert f_measure(gt, gt) == 1.0
    assert f_measure(square(left=21), gt) == 1.0  # 1 px off: within tolerance
    # shifted by 10 px: 33 + 33 top/bottom pixels and 4 near the corners match, on both sides: 70 / 160
    assert f_measure(square(left=30), gt) == pytest.approx(70 / 160)
    assert f_measure(np.zeros_like(gt), gt) == 0.0  # precision 1, recall 0
    assert f_measure(np.zeros_like(gt), np.zeros_like(gt)) == 1.0
    assert f_measure(square(left=30), gt, bound_th=10) == 1.0  # bound_th >= 1: pixels
    out = f_measure(np.stack([gt, square(left=30)]), np.stack([gt, gt]))
    assert out.shape == (2,) and out.tolist() == pytest.approx([1.0, 70 / 160])
    with pytest.raises(ValueError, match="differ in shape"):
        f_measure(gt, gt[:50])


def test_statistics_mean_recall_decay():
    m, r, d = statistics(np.array([1.0] * 4 + [0.0] * 4))
    assert (m, r, d) == (0.5, 0.5, 1.0)


@pytest.fixture(scope="module")
def davis(tmp_path_factory):
    return make_davis(str(tmp_path_factory.mktemp("davis")), num_sequences=2, frames=8, size=(96, 128))


def _gt(root, seq):
    s = load_sequence(root, seq)
    return s, np.stack([read_annotation(a) for a in s.annotations])


def test_ground_truth_as_prediction_scores_one(davis, tmp_path):
    seq, gt = _gt(davis, "synthetic-01")
    assert gt.max() == 3  # objects 1..3, occluding one another
    shutil.copytree(os.path.join(davis, "Annotations", "480p", seq.name), tmp_path / seq.name)
    rows = score_sequence(seq, str(tmp_path / seq.name))
    assert len(rows) == 3
    assert all(r["J_mean"] == 1.0 and r["F_mean"] == 1.0 for r in rows)


def test_void_is_background_as_davis2017_evaluation(davis, tmp_path):
    """davis2017-evaluation's semi-supervised mode maps void (255) to background in the ground truth and passes no
    void mask: an object predicted over void pixels counts as a false positive."""
    from pe_dense.tracking.davis import write_annotation

    root = tmp_path / "davis"
    shutil.copytree(davis, root)
    seq, gt = _gt(str(root), "synthetic-01")
    pred_dir = tmp_path / "pred"
    shutil.copytree(os.path.join(root, "Annotations", "480p", seq.name), pred_dir)
    obj1 = gt == 1
    assert obj1[1:-1].any()
    for t, path in enumerate(seq.annotations):  # the ground truth marks object 1's pixels void
        if 0 < t < len(seq.annotations) - 1:
            write_annotation(path, np.where(obj1[t], 255, gt[t]))
    rows = {r["object"]: r for r in score_sequence(load_sequence(str(root), seq.name), str(pred_dir))}
    # object 1 is absent from the ground truth (void = background) but predicted: J = 0 on every scored frame where
    # it is visible, where excluding void would have scored it 1.0
    visible = obj1[1:-1].reshape(len(obj1) - 2, -1).any(1)
    assert rows[1]["J"][visible].max() == 0.0
    assert rows[2]["J_mean"] == 1.0 and rows[3]["J_mean"] == 1.0


def test_oracle_features_recover_the_masks(davis):
    seq, gt = _gt(davis, "synthetic-00")
    patch, (H, W) = 8, gt.shape[1:]
    k = int(gt.max())

    def oracle(i):  # the patch's majority label, one-hot: a perfect feature map
        small = Image.fromarray(gt[i]).resize((W // patch, H // patch), Image.NEAREST)
        return F.one_hot(torch.from_numpy(np.array(small)).long(), k + 1).float()

    first = oracle(0).permute(2, 0, 1)
    cfg = PropagationConfig(radius=12, topk=5)
    for i, probs in enumerate(run_propagation(oracle, len(gt), first, cfg), start=1):
        want = oracle(i).permute(2, 0, 1)
        # every patch gets exactly its true label (sources with identical features share it) ...
        assert torch.equal(probs.argmax(0), want.argmax(0)), f"frame {i}"
        assert torch.allclose(probs, want, atol=1e-5)
        # ... so the masks are those of the ground truth, up to the patch grid's resolution
        assert np.array_equal(finalize(probs, patch, (H, W)).numpy(), finalize(want, patch, (H, W)).numpy())
        for obj in range(1, k + 1):
            assert j_measure(finalize(probs, patch, (H, W)).numpy() == obj, gt[i] == obj) > 0.5


def test_pe_features_on_the_embedded_set_with_resume(davis, tmp_path):
    model = pe_dense.create_model("PE-Spatial-T16-512", out_indices=[5])
    cfg = PropagationConfig(short_side=96)
    out = str(tmp_path / "out")
    res = evaluate_davis(davis, out, pe_extractor(model, "cpu"), 16, cfg, progress=False)
    assert res["frames"] == 2 * 7
    assert len(res["rows"]) == 2 + 3  # objects of the two sequences
    # the scores are those of the written masks, computed here with the metric functions directly
    seq = load_sequence(davis, "synthetic-00")
    first = np.array(Image.open(seq.first_annotation))
    objects = range(1, int(first[first != 255].max()) + 1)
    scored = [i for i, a in enumerate(seq.annotations) if a is not None and 0 < i < len(seq.frames) - 1]
    for obj, row in zip(objects, [r for r in res["rows"] if r["sequence"] == "synthetic-00"]):
        masks = [(np.array(Image.open(os.path.join(out, "synthetic-00", f"{i:05d}.png"))) == obj,
                  np.array(Image.open(seq.annotations[i])) == obj) for i in scored]
        assert row["J_mean"] == pytest.approx(np.mean([j_measure(p, g) for p, g in masks]), abs=1e-6)
        assert row["F_mean"] == pytest.approx(np.mean([f_measure(p, g) for p, g in masks]), abs=1e-6)
    want = (np.mean([r["J_mean"] for r in res["rows"]]) + np.mean([r["F_mean"] for r in res["rows"]])) / 2
    assert res["summary"]["J&F-Mean"] == pytest.approx(want)
    files = sorted(os.listdir(os.path.join(out, "synthetic-00")))
    assert files == [f"{i:05d}.png" for i in range(8)]
    ids = Image.open(os.path.join(out, "synthetic-00", "00004.png"))
    assert ids.mode == "P" and np.array(ids).max() <= 2
    for f in ("per_sequence.csv", "summary.csv", "overlays/synthetic-00.jpg"):
        assert os.path.isfile(os.path.join(out, f)), f
    again = evaluate_davis(davis, out, pe_extractor(model, "cpu"), 16, cfg, progress=False)
    assert again["frames"] == 0 and again["summary"] == res["summary"]  # resumed: nothing recomputed


def _copy(davis, tmp_path):
    root = str(tmp_path / "d")
    shutil.copytree(davis, root)
    return root


def test_missing_frame_is_named(davis, tmp_path):
    root = _copy(davis, tmp_path)
    os.remove(os.path.join(root, "JPEGImages", "480p", "synthetic-00", "00003.jpg"))
    with pytest.raises(DavisError, match="missing 00003"):
        evaluate_davis(root, str(tmp_path / "o"), None, 16, progress=False)
    assert not os.path.exists(tmp_path / "o" / "synthetic-01")  # everything is checked before anything is written


def test_missing_first_annotation_and_missing_root(davis, tmp_path):
    root = _copy(davis, tmp_path)
    os.remove(os.path.join(root, "Annotations", "480p", "synthetic-01", "00000.png"))
    with pytest.raises(DavisError, match="first-frame annotation .* is missing"):
        load_sequence(root, "synthetic-01")
    with pytest.raises(DavisError, match="DAVIS root not found"):
        evaluate_davis(str(tmp_path / "nowhere"), str(tmp_path / "o"), None, 16, progress=False)


def test_unknown_ids_and_non_palette_annotations(davis, tmp_path):
    root = _copy(davis, tmp_path)
    path = os.path.join(root, "Annotations", "480p", "synthetic-00", "00002.png")
    ids = np.array(Image.open(path))
    ids[0, 0] = 7
    pe_dense.tracking.write_annotation(path, ids)
    with pytest.raises(DavisError, match=r"unknown object id\(s\) \[7\]"):
        read_annotation(path, num_objects=2)
    Image.fromarray(ids).convert("L").save(path)
    with pytest.raises(DavisError, match="palette"):
        read_annotation(path)


def test_empty_first_frame_mask(davis, tmp_path):
    root = _copy(davis, tmp_path)
    path = os.path.join(root, "Annotations", "480p", "synthetic-00", "00000.png")
    pe_dense.tracking.write_annotation(path, np.zeros((96, 128), np.uint8))
    model = pe_dense.create_model("PE-Spatial-T16-512", out_indices=[0])
    out = tmp_path / "o"
    with pytest.raises(DavisError, match="has no object"):
        evaluate_davis(root, str(out), pe_extractor(model, "cpu"), 16, PropagationConfig(short_side=96),
                       progress=False)
    assert not (out / "synthetic-00").exists()
    assert not out.exists() or not [p for p in os.listdir(out) if p.startswith(".synthetic-00")]
