"""DETA's transformer (pe_dense.modeling.deta): the proposal boxes and DETA's proposal selection on inputs whose
answer is worked out by hand; the whole transformer's parity with the released DETA_pe is measured outside the suite
(the released code is not part of the repository): bit-exact on CPU, see projects/detection/README.md."""
import torch
from torch import nn

from pe_dense.modeling.deta import MLP, DeformableTransformer, sine_position_embedding


def small(Q=4, levels=2):
    t = DeformableTransformer(d_model=256, nhead=8, num_encoder_layers=1, num_decoder_layers=2, dim_feedforward=64,
                              dropout=0.0, num_feature_levels=levels, num_queries=Q).eval()
    t.decoder.class_embed = nn.ModuleList(nn.Linear(256, 3) for _ in range(3))
    t.decoder.bbox_embed = nn.ModuleList(MLP(256, 256, 4, 3) for _ in range(3))
    return t


def test_encoder_proposals_are_the_cells_over_the_valid_extent():
    t = small()
    shapes = torch.tensor([[2, 4]])
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask.view(2, 2, 4)[1, :, 2:] = True  # image 1: the right half is padding
    _, props, levels = t.encoder_proposals(torch.randn(2, 8, 256), mask, shapes)
    box = props.sigmoid()
    assert torch.allclose(box[0, 5], torch.tensor([1.5 / 4, 1.5 / 2, 0.05, 0.05]))  # row 1, column 1
    assert torch.allclose(box[1, 5], torch.tensor([1.5 / 2, 1.5 / 2, 0.05, 0.05]))  # of the valid 2 columns
    assert torch.isinf(props[1].view(2, 4, 4)[:, 2:]).all() and torch.isfinite(props[0]).all()
    assert levels.tolist() == [0] * 8


def test_selection_nms_within_levels_then_a_quota_per_level():
    """Level 0: 6 tokens, level 1: 4; 4 queries, 2 per level. Token 0 and 1 are the same box (IoU 1 > 0.9): NMS drops
    the weaker, 1. Level 0's best survivors are 0 and 2, level 1's 7 and 6; in score order."""
    t = small(Q=4)
    logits = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.0, 3.5, 4.5, -1.0, -2.0])
    boxes = torch.tensor([[0.1 + 0.09 * i, 0.5, 0.05, 0.05] for i in range(10)])
    boxes[1] = boxes[0]
    levels = torch.tensor([0] * 6 + [1] * 4)
    assert t.select_proposals(logits, boxes, levels, 2).tolist() == [0, 7, 6, 2]
    t.pre_nms_topk = 2  # each level's top 2 only: level 0 keeps 0 (1 is suppressed), so 3 tokens pass NMS, < 4
    assert t.select_proposals(logits, boxes, levels, 2).tolist() == logits.topk(4)[1].tolist()

    t.num_queries = 12  # more queries than the 10 tokens (2000 TTA queries on a small image): one per token
    assert sorted(t.select_proposals(logits, boxes, levels, 2).tolist()) == list(range(10))


def test_forward_shapes_and_refinement_moves_the_boxes():
    torch.manual_seed(0)
    t = small(Q=6)
    shapes = [(6, 8), (3, 4)]
    srcs = [torch.randn(1, 256, h, w) for h, w in shapes]
    masks = [torch.zeros(1, h, w, dtype=torch.bool) for h, w in shapes]
    pos = [sine_position_embedding(m) for m in masks]
    with torch.no_grad():
        states, init, refs, enc_cls, enc_coord, anchors = t(srcs, masks, pos)
        assert states.shape == (2, 1, 6, 256) and init.shape == (1, 6, 4) and refs.shape == (2, 1, 6, 4)
        assert enc_cls.shape == (1, 60, 3) and enc_coord.shape == (1, 60, 4)
        assert not torch.allclose(refs[0], init)
        for m in t.decoder.bbox_embed:  # no refinement: the references stay the proposals
            m.layers[-1].weight.zero_()
            m.layers[-1].bias.zero_()
        _, init, refs, _, _, _ = t(srcs, masks, pos)
    assert torch.allclose(refs[1], init, atol=1e-6)


def test_the_head_has_the_released_layout():
    """Every tensor name and shape of the released DETA_pe DeformableDETR (listed once from the released code,
    tests/data/deta_released_keys.json; the shared per-layer heads appear under the decoder too), nothing more."""
    import json
    import os

    from pe_dense.modeling.deta import DETA

    want = json.load(open(os.path.join(os.path.dirname(__file__), "data", "deta_released_keys.json")))["keys"]
    with torch.device("meta"):
        got = DETA([96, 192, 192], 11, num_queries=60, enc_layers=2, dec_layers=3, dim_feedforward=512).state_dict()
    assert {k: list(v.shape) for k, v in got.items()} == want
