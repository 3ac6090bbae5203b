"""DINOv2's frozen linear depth probe, as the configs/mmseg/nyu/linear-bins_* recipes run it: the class token per tap
(against timm's reference), the bins head with "linear" normalization, SigLoss and the gradient loss (against
direct computations written out here), the schedule's learning rate (against mmcv's warm-up x cosine formula)."""
import math
import os

import numpy as np
import pytest
import torch

import pe_dense
from pe_dense.modeling.heads import LinearBinsHead
from pe_dense.modeling.losses import EPS, gradient_loss, sig_loss

ROOT = os.path.join(os.path.dirname(__file__), "..")


@pytest.mark.parametrize("name", ["PE-Core-T16-384", "PE-Spatial-T16-512"])
def test_class_token_per_tap_matches_timm(name):
    timm = pytest.importorskip("timm")
    ref = timm.create_model(pe_dense.get_spec(name).timm_name, pretrained=False, num_classes=0).eval()
    ours = pe_dense.create_model(name, out_indices=[2, 5, 8, 11], return_class_token=True).eval()
    pe_dense.load_checkpoint(ours, ref.state_dict())
    size = pe_dense.get_spec(name).img_size
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        want = ref.forward_intermediates(x, indices=[2, 5, 8, 11], return_prefix_tokens=True, norm=False,
                                         intermediates_only=True)
        got = ours(x)
    for (m, t), (wm, wp) in zip(got, want):
        assert t.shape == (1, ours.width)
        assert (m - wm).abs().max() < 1e-4 and (t - wp[:, 0]).abs().max() < 1e-4


def test_class_token_needs_a_tower_that_runs_one():
    with pytest.raises(ValueError, match="PE-Spatial-G14-448 has no class token"):
        pe_dense.create_model("PE-Spatial-G14-448", return_class_token=True, out_indices=[0])
    with pytest.raises(ValueError, match="runs no class token"):
        pe_dense.create_model("PE-Spatial-T16-512", return_class_token=True, window_size=8, use_cls_token=False)


def _dinov2_depth(logits, min_depth, max_depth):
    """DINOv2's ``depth_pred`` (classify, UD bins, norm_strategy="linear"), written out."""
    bins = torch.linspace(min_depth, max_depth, logits.shape[1])
    p = torch.relu(logits) + 0.1
    p = p / p.sum(dim=1, keepdim=True)
    return torch.einsum("ikmn,k->imn", p, bins).unsqueeze(1)


def test_linear_bins_head_is_dinov2s():
    torch.manual_seed(0)
    head = LinearBinsHead([8, 8], n_bins=16, min_depth=1e-3, max_depth=10.0, upsample=4, class_token=True)
    maps = [torch.randn(2, 8, 3, 5) for _ in range(2)]
    toks = [torch.randn(2, 8) for _ in range(2)]
    out = head([(m, t) for m, t in zip(maps, toks)])
    # DINOv2's order: each tap with its token broadcast, the taps concatenated, x4 bilinear, 1x1 conv
    x = torch.cat([torch.cat([m, t[:, :, None, None].expand_as(m)], 1) for m, t in zip(maps, toks)], 1)
    x = torch.nn.functional.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)
    want = _dinov2_depth(head.conv(x), 1e-3, 10.0)
    assert out.shape == (2, 1, 12, 20)
    assert torch.allclose(out, want, atol=1e-5)
    # all logits <= 0: uniform over the bins, the mid-range depth
    with torch.no_grad():
        head.conv.weight.zero_()
        head.conv.bias.fill_(-1.0)
    assert torch.allclose(head([(m, t) for m, t in zip(maps, toks)]), torch.full((2, 1, 12, 20), 5.0005))
    with pytest.raises(ValueError, match="return_class_token=True"):
        head(maps)
    with pytest.raises(ValueError, match="class_token=False"):
        LinearBinsHead([8, 8], class_token=False)([(m, t) for m, t in zip(maps, toks)])
    with pytest.raises(ValueError, match="norm must be one of"):
        LinearBinsHead([8], norm="sigmoid")


def test_sig_loss_is_adabins_formula():
    torch.manual_seed(0)
    gt = torch.rand(2, 1, 6, 7) * 9 + 0.5
    gt[0, 0, :2] = 0  # no ground truth there
    pred = torch.rand(2, 1, 6, 7) * 9 + 0.5
    valid = (gt > 0).numpy()
    g = np.log(pred.numpy()[valid] + EPS) - np.log(gt.numpy()[valid] + EPS)
    assert sig_loss(pred, gt).item() == pytest.approx(math.sqrt(g.var(ddof=1) + 0.15 * g.mean() ** 2), rel=1e-5)
    assert sig_loss(pred, gt, warm_up=True).item() == pytest.approx(math.sqrt(0.15 * g.mean() ** 2), rel=1e-5)
    keep = (gt.numpy() > 0) & (gt.numpy() <= 5.0)
    g5 = np.log(pred.numpy()[keep] + EPS) - np.log(gt.numpy()[keep] + EPS)
    assert sig_loss(pred, gt, max_depth=5.0).item() == pytest.approx(
        math.sqrt(g5.var(ddof=1) + 0.15 * g5.mean() ** 2), rel=1e-5)
    zero = sig_loss(pred.requires_grad_(), torch.zeros_like(gt))  # no ground truth at all: 0, still differentiable
    zero.backward()
    assert zero.item() == 0


def _gradient_loss_loops(pred, gt, strides=(1, 2, 4, 6)):
    """MegaDepth's gradient loss over H and W, one pixel pair at a time."""
    total = 0.0
    for s in strides:
        p, t = pred[..., ::s, ::s], gt[..., ::s, ::s]
        B, _, H, W = p.shape
        n = int((t > 0).sum())
        acc = 0.0
        for b in range(B):
            d = lambda y, x: math.log(p[b, 0, y, x] + EPS) - math.log(t[b, 0, y, x] + EPS)  # noqa: E731
            ok = lambda y, x: t[b, 0, y, x] > 0  # noqa: E731
            for y in range(H):
                for x in range(W):
                    if y + 2 < H and ok(y, x) and ok(y + 2, x):
                        acc += abs(d(y, x) - d(y + 2, x))
                    if x + 2 < W and ok(y, x) and ok(y, x + 2):
                        acc += abs(d(y, x) - d(y, x + 2))
        total += acc / n if n else 0.0
    return total


def test_gradient_loss_is_megadepths():
    torch.manual_seed(1)
    gt = torch.rand(2, 1, 13, 17) * 9 + 0.5
    gt[1, 0, 4:9, 3:8] = 0
    pred = torch.rand(2, 1, 13, 17) * 9 + 0.5
    assert gradient_loss(pred, gt).item() == pytest.approx(_gradient_loss_loops(pred.double(), gt.double()), rel=1e-4)
    # a prediction right up to a global scale has (nearly) no gradient error; a planted step does
    assert gradient_loss(3 * gt, gt).item() < 1e-3
    stepped = gt.clone()
    stepped[..., 6:, :] *= 2
    assert gradient_loss(stepped, gt).item() > 0.1
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        gradient_loss(pred[:, 0], gt[:, 0])


def test_sig_loss_warm_up_counts_training_calls_and_resumes():
    pytest.importorskip("mmseg")
    from pe_dense.mmseg.losses import PESigLoss

    torch.manual_seed(0)
    gt, pred = torch.rand(1, 1, 4, 4) + 1, torch.rand(1, 1, 4, 4) + 1
    loss = PESigLoss(warm_up_iters=2)
    warm, full = sig_loss(pred, gt, warm_up=True), sig_loss(pred, gt)
    loss.eval()
    assert loss(pred, gt) == full  # evaluation neither warms up nor counts
    loss.train()
    assert [loss(pred, gt).item() for _ in range(3)] == [warm.item(), warm.item(), full.item()]
    again = PESigLoss(warm_up_iters=2)
    again.load_state_dict(loss.state_dict())  # a resumed run does not warm up again
    assert again.train()(pred, gt) == full


def test_schedule_is_dinov2s_warm_up_times_cosine():
    pytest.importorskip("mmseg")
    from mmengine.config import Config
    from mmengine.optim.scheduler import CosineAnnealingLR, LinearLR

    cfg = Config.fromfile(os.path.join(ROOT, "configs", "mmseg", "nyu",
                                       "linear-bins_pe-spatial-b_8xb2-38k_nyu-480x480.py"))
    assert cfg.train_cfg.max_iters == 38400 and cfg.optim_wrapper.optimizer.lr == 1e-4
    assert cfg.optim_wrapper.clip_grad == dict(max_norm=35, norm_type=2)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    kinds = {"LinearLR": LinearLR, "CosineAnnealingLR": CosineAnnealingLR}
    scheds = [kinds[s.pop("type")](opt, **s) for s in [dict(s) for s in cfg.param_scheduler]]
    lr0, min_lr = 1e-4, 1e-4 * 1e-8

    def mmcv(t):  # mmcv: CosineAnnealing over the run, the linear warm-up scaling its value
        cos = min_lr + 0.5 * (lr0 - min_lr) * (1 + math.cos(math.pi * t / 38400))
        return cos * (1 - (1 - t / 12800) * (1 - 1e-3)) if t < 12800 else cos

    seen = {}
    for t in range(38400):
        seen[t] = opt.param_groups[0]["lr"]
        opt.step()
        for s in scheds:
            s.step()
    for t in (0, 1, 6400, 12799, 12800, 20000, 38399):
        assert seen[t] == pytest.approx(mmcv(t), rel=1e-3, abs=1e-12), t
