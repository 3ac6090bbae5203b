"""DETA's assigners (pe_dense.detectron2.deta) on boxes whose IoUs are known in closed form: a box of width w shifted
sideways by s from a ground truth of the same size overlaps it with IoU (w - s) / (w + s)."""
import pytest
import torch

pytest.importorskip("detectron2")
from torchvision.ops import box_convert, box_iou  # noqa: E402

from pe_dense.detectron2.deta import Stage1Assigner, Stage2Assigner, topk_per_gt  # noqa: E402

W = 0.2
A, B = (0.25, 0.25), (0.75, 0.75)


def shifted(centre, iou):
    s = W * (1 - iou) / (1 + iou)
    return [centre[0] + s, centre[1], W, W]


def scene():
    """Boxes (cx, cy, w, h) in a shuffled order, with their IoU against A or B; three that touch neither."""
    wanted = [("A", 0.9), ("A", 0.8), ("A", 0.75), ("A", 0.65), ("A", 0.5), ("A", 0.3), ("B", 0.4),
              (None, 0), (None, 0), (None, 0)]
    boxes = [shifted(A if g == "A" else B, t) if g else [0.5, 0.05 + 0.02 * i, 0.01, 0.01]
             for i, (g, t) in enumerate(wanted)]
    order = torch.randperm(len(boxes), generator=torch.Generator().manual_seed(3))
    boxes = torch.tensor(boxes, dtype=torch.float64)[order]
    where = {w: int((order == i).nonzero()) for i, w in enumerate(wanted) if w[0]}  # (gt, iou) -> index
    gt = torch.tensor([[*A, W, W], [*B, W, W]], dtype=torch.float64)
    return boxes, gt, where


def test_the_scene_has_the_stated_ious():
    boxes, gt, where = scene()
    iou = box_iou(box_convert(gt, "cxcywh", "xyxy"), box_convert(boxes, "cxcywh", "xyxy"))
    for (g, t), i in where.items():
        assert iou["AB".index(g), i].item() == pytest.approx(t, abs=1e-12)
    assert iou.sum() == pytest.approx(sum(t for _, t in where))  # no box overlaps the other ground truth


def test_stage2_takes_iou_06_and_each_gts_best_then_its_top_k():
    boxes, gt, where = scene()
    (pr, g), = Stage2Assigner(num_queries=100)([boxes], [gt], [torch.tensor([3, 7])])
    a = [where["A", t] for t in (0.9, 0.8, 0.75, 0.65)]  # IoU >= 0.6, best first
    assert pr.tolist() == a + [where["B", 0.4]]  # B's best box (0.4 < 0.6) by the low-quality rule
    assert g.tolist() == [0, 0, 0, 0, 1]
    (pr, g), = Stage2Assigner(num_queries=100, max_k=2)([boxes], [gt], [torch.tensor([3, 7])])
    assert pr.tolist() == a[:2] + [where["B", 0.4]] and g.tolist() == [0, 0, 1]


def test_stage2_sampling_keeps_each_gts_best_boxes_for_any_draw():
    """8 queries: at most 2 positives sampled (a quarter), drawn at random; whichever are drawn, a ground truth with
    c of them gets its c best boxes."""
    boxes, gt, where = scene()
    ranked = {0: [where["A", t] for t in (0.9, 0.8, 0.75, 0.65)], 1: [where["B", 0.4]]}
    for seed in range(10):
        torch.manual_seed(seed)
        (pr, g), = Stage2Assigner(num_queries=8)([boxes], [gt], [torch.tensor([0, 1])])
        assert len(pr) == 2
        for j in (0, 1):
            got = pr[g == j].tolist()
            assert got == ranked[j][:len(got)]


def test_stage1_takes_iou_07_and_each_gts_best():
    boxes, gt, where = scene()
    (pr, g), = Stage1Assigner()([boxes], [gt])
    assert pr.tolist() == [where["A", t] for t in (0.9, 0.8, 0.75)] + [where["B", 0.4]]
    assert g.tolist() == [0, 0, 0, 1]
    (pr, g), = Stage1Assigner()([boxes], [gt[:0]])
    assert pr.numel() == g.numel() == 0


def test_topk_with_fewer_boxes_than_k():
    iou = torch.tensor([[0.1, 0.9]])
    pr, g = topk_per_gt(torch.tensor([1, 0, 1]), torch.tensor([0, 0, 0]), iou, 4)
    assert pr.tolist() == [1, 0] and g.tolist() == [0, 0]
