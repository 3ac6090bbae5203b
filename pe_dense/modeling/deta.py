"""DETA's transformer (Ouyang-Zhang et al. 2022; two-stage Deformable-DETR with box refinement), framework-free.

Parameter names are those of Deformable-DETR / the released DETA_pe (``transformer.encoder.layers.N.self_attn.*``,
``transformer.decoder.layers.N.{self_attn,cross_attn,...}``, ``level_embed``, ``enc_output[_norm]``,
``pos_trans[_norm]``, ``pix_trans[_norm]``), so that ``deta_coco_1824pix.pth``'s ``transformer.*`` loads unchanged.

Two-stage proposals (DETA's ``assign_first_stage``): every encoder token proposes a box around its cell (width
0.05 x 2^level); the head scores them; per level the top 1000 by score, NMS at 0.9 within each level, then the best
``num_queries / L`` of each level in score order, padded with the next best of any level. (The released code takes
its per-level top 1000 over all tokens with the others' scores zeroed, which adds copies of other levels' tokens
where a level has fewer than 1000; NMS removes the copies, so the kept set is the same. Here each level's top-k is
taken over its own tokens, at most all of them.)
"""
import copy
import logging
import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms, box_convert

from .deformable import MSDeformAttn, flatten_levels

log = logging.getLogger(__name__)

__all__ = ["DETA", "DETALevels", "DeformableTransformer", "MLP", "inverse_sigmoid", "sine_position_embedding"]


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


class MLP(nn.Module):
    """DETR's box MLP (``layers.K``), ReLU between layers."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:] + [output_dim]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = F.relu(layer(x)) if i < len(self.layers) - 1 else layer(x)
        return x


def sine_position_embedding(mask: torch.Tensor, num_pos_feats: int = 128, temperature: float = 10000.0,
                            offset: float = -0.5) -> torch.Tensor:
    """DETR's normalized sine embedding of a (N, H, W) padding mask (True = padding) -> (N, 2 F, H, W): y then x,
    cumulative positions (+ ``offset``, Deformable-DETR's -0.5) over the valid extent times 2 pi."""
    not_mask = ~mask
    y = not_mask.cumsum(1, dtype=torch.float32)
    x = not_mask.cumsum(2, dtype=torch.float32)
    eps, scale = 1e-6, 2 * math.pi
    y = (y + offset) / (y[:, -1:, :] + eps) * scale
    x = (x + offset) / (x[:, :, -1:] + eps) * scale
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=mask.device)
    dim_t = temperature ** (2 * (dim_t // 2) / num_pos_feats)
    px, py = x[..., None] / dim_t, y[..., None] / dim_t
    px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=4).flatten(3)
    py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=4).flatten(3)
    return torch.cat((py, px), dim=3).permute(0, 3, 1, 2)


class EncoderLayer(nn.Module):
    def __init__(self, d_model=256, d_ffn=1024, dropout=0.1, n_levels=4, n_heads=8, n_points=4):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src, pos, reference, shapes, padding_mask=None):
        src = self.norm1(src + self.dropout1(self.self_attn(src + pos, reference, src, shapes, padding_mask)))
        return self.norm2(src + self.dropout3(self.linear2(self.dropout2(F.relu(self.linear1(src))))))


class DecoderLayer(nn.Module):
    def __init__(self, d_model=256, d_ffn=1024, dropout=0.1, n_levels=4, n_heads=8, n_points=4):
        super().__init__()
        self.cross_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(self, tgt, query_pos, reference, src, shapes, padding_mask=None):
        q = (tgt + query_pos).transpose(0, 1)
        tgt = self.norm2(tgt + self.dropout2(self.self_attn(q, q, tgt.transpose(0, 1))[0].transpose(0, 1)))
        tgt = self.norm1(tgt + self.dropout1(self.cross_attn(tgt + query_pos, reference, src, shapes, padding_mask)))
        return self.norm3(tgt + self.dropout4(self.linear2(self.dropout3(F.relu(self.linear1(tgt))))))


class Encoder(nn.Module):
    def __init__(self, layer: EncoderLayer, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

    @staticmethod
    def reference_points(shapes, valid_ratios):
        """Each token's cell centre, as a fraction of its level's valid extent, seen from every level."""
        refs = []
        for h, w in shapes.tolist():
            ry, rx = torch.meshgrid(torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=valid_ratios.device),
                                    torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=valid_ratios.device),
                                    indexing="ij")
            lvl = len(refs)
            ry = ry.reshape(-1)[None] / (valid_ratios[:, None, lvl, 1] * h)
            rx = rx.reshape(-1)[None] / (valid_ratios[:, None, lvl, 0] * w)
            refs.append(torch.stack((rx, ry), -1))
        return torch.cat(refs, 1)[:, :, None] * valid_ratios[:, None]

    def forward(self, src, shapes, valid_ratios, pos, padding_mask=None):
        reference = self.reference_points(shapes, valid_ratios)
        for layer in self.layers:
            src = layer(src, pos, reference, shapes, padding_mask)
        return src


class Decoder(nn.Module):
    """Iterative box refinement: each layer's ``bbox_embed`` moves the reference boxes (in logit space)."""

    def __init__(self, layer: DecoderLayer, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.num_layers = num_layers
        self.bbox_embed: Optional[nn.ModuleList] = None  # set by the detector (shared with its head)
        self.class_embed: Optional[nn.ModuleList] = None

    def forward(self, tgt, reference, src, shapes, valid_ratios, query_pos, padding_mask=None):
        states, references = [], []
        for i, layer in enumerate(self.layers):
            ref_in = reference[:, :, None] * torch.cat([valid_ratios, valid_ratios], -1)[:, None]
            tgt = layer(tgt, query_pos, ref_in, src, shapes, padding_mask)
            if self.bbox_embed is not None:
                reference = (self.bbox_embed[i](tgt) + inverse_sigmoid(reference)).sigmoid().detach()
            states.append(tgt)
            references.append(reference)
        return torch.stack(states), torch.stack(references)


class DeformableTransformer(nn.Module):
    """Two-stage Deformable-DETR's transformer as DETA configures it (box references, ``assign_first_stage``)."""

    def __init__(self, d_model: int = 256, nhead: int = 8, num_encoder_layers: int = 6, num_decoder_layers: int = 6,
                 dim_feedforward: int = 1024, dropout: float = 0.1, num_feature_levels: int = 5,
                 dec_n_points: int = 4, enc_n_points: int = 4, num_queries: int = 900, pre_nms_topk: int = 1000,
                 proposal_nms: float = 0.9):
        super().__init__()
        self.d_model, self.num_queries = d_model, num_queries
        self.pre_nms_topk, self.proposal_nms = pre_nms_topk, proposal_nms
        self.encoder = Encoder(EncoderLayer(d_model, dim_feedforward, dropout, num_feature_levels, nhead,
                                            enc_n_points), num_encoder_layers)
        self.decoder = Decoder(DecoderLayer(d_model, dim_feedforward, dropout, num_feature_levels, nhead,
                                            dec_n_points), num_decoder_layers)
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        self.enc_output = nn.Linear(d_model, d_model)
        self.enc_output_norm = nn.LayerNorm(d_model)
        self.pos_trans = nn.Linear(d_model * 2, d_model * 2)
        self.pos_trans_norm = nn.LayerNorm(d_model * 2)
        self.pix_trans = nn.Linear(d_model, d_model)
        self.pix_trans_norm = nn.LayerNorm(d_model)
        self.reset_parameters()

    def reset_parameters(self):
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()
        nn.init.normal_(self.level_embed)

    @staticmethod
    def proposal_pos_embed(proposals: torch.Tensor, num_pos_feats: int = 128, temperature: float = 10000.0):
        """(N, Q, 4) box logits -> (N, Q, 4 x num_pos_feats) sine embedding of their sigmoid x 2 pi (released: 128
        features, d_model 256; here d_model / 2, the same there, so that other widths work)."""
        dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=proposals.device)
        dim_t = temperature ** (2 * (dim_t // 2) / num_pos_feats)
        pos = proposals.sigmoid()[:, :, :, None] * (2 * math.pi) / dim_t
        return torch.stack((pos[:, :, :, 0::2].sin(), pos[:, :, :, 1::2].cos()), dim=4).flatten(2)

    def encoder_proposals(self, memory, padding_mask, shapes):
        """One box per token (its cell centre over the valid extent, side 0.05 x 2^level), as logits; tokens that are
        padding or whose box leaves (0.01, 0.99) get +inf and zero memory."""
        N = memory.shape[0]
        proposals, level_ids, start = [], [], 0
        for lvl, (h, w) in enumerate(shapes.tolist()):
            m = padding_mask[:, start:start + h * w].view(N, h, w, 1)
            valid_h, valid_w = (~m[:, :, 0, 0]).sum(1), (~m[:, 0, :, 0]).sum(1)
            gy, gx = torch.meshgrid(torch.linspace(0, h - 1, h, dtype=torch.float32, device=memory.device),
                                    torch.linspace(0, w - 1, w, dtype=torch.float32, device=memory.device),
                                    indexing="ij")
            grid = torch.cat([gx.unsqueeze(-1), gy.unsqueeze(-1)], -1)
            scale = torch.cat([valid_w.unsqueeze(-1), valid_h.unsqueeze(-1)], 1).view(N, 1, 1, 2)
            grid = (grid.unsqueeze(0).expand(N, -1, -1, -1) + 0.5) / scale
            wh = torch.ones_like(grid) * 0.05 * (2.0 ** lvl)
            proposals.append(torch.cat((grid, wh), -1).view(N, -1, 4))
            level_ids.append(torch.full((h * w,), lvl, dtype=torch.long, device=memory.device))
            start += h * w
        proposals = torch.cat(proposals, 1)
        valid = ((proposals > 0.01) & (proposals < 0.99)).all(-1, keepdim=True)
        proposals = torch.log(proposals / (1 - proposals))
        proposals = proposals.masked_fill(padding_mask.unsqueeze(-1), float("inf"))
        proposals = proposals.masked_fill(~valid, float("inf"))
        out = memory.masked_fill(padding_mask.unsqueeze(-1), 0.0).masked_fill(~valid, 0.0)
        return self.enc_output_norm(self.enc_output(out)), proposals, torch.cat(level_ids)

    def select_proposals(self, logits: torch.Tensor, boxes_cxcywh: torch.Tensor, level_ids: torch.Tensor,
                         num_levels: int) -> torch.Tensor:
        """DETA's proposal selection for one image: (S,) logits, (S, 4) boxes -> (num_queries,) token indices; at
        most S (an image with fewer tokens than queries, e.g. 2000 test queries on a small image, gets one query per
        token, with a warning: the released code's ``topk`` fails there)."""
        Q = self.num_queries
        if Q > logits.shape[0]:
            log.warning("DETA: %d queries > the %d tokens of all levels: one query per token", Q, logits.shape[0])
            Q = logits.shape[0]
        boxes = box_convert(boxes_cxcywh.float(), "cxcywh", "xyxy").clamp(0, 1)
        pre = []
        for lvl in range(num_levels):
            ids = (level_ids == lvl).nonzero()[:, 0]
            pre.append(ids[logits[ids].sigmoid().topk(min(self.pre_nms_topk, len(ids)))[1]])
        pre = torch.cat(pre)
        keep = pre[batched_nms(boxes[pre], logits[pre], level_ids[pre], self.proposal_nms)]
        if len(keep) < Q:
            log.warning("DETA: %d proposals after NMS < %d queries: taking the top %d by score instead",
                        len(keep), Q, Q)
            return logits.topk(Q)[1]
        per_level = Q // num_levels
        ordered = level_ids[keep][None] == torch.arange(num_levels, device=keep.device)[:, None]
        chosen = (ordered & (ordered.cumsum(1) <= per_level)).any(0)
        if chosen.sum() < Q:  # fill with the best of the rest, in score order
            chosen[(~chosen).nonzero()[: Q - int(chosen.sum())]] = True
        return keep[chosen]

    def forward(self, srcs: Sequence[torch.Tensor], masks: Sequence[torch.Tensor], pos_embeds: Sequence[torch.Tensor]):
        """``srcs`` (N, C, H_l, W_l) projected levels, ``masks`` (N, H_l, W_l) True at padding, ``pos_embeds`` like
        ``srcs``. Returns the decoder states (D, N, Q, C), the initial reference boxes (N, Q, 4), the refined ones
        (D, N, Q, 4), the encoder's proposal logits (N, S, K) and box logits (N, S, 4), and the tokens' anchor
        boxes (N, S, 4; padding and border tokens 1: their logits are +inf)."""
        src, shapes = flatten_levels(srcs)
        mask = torch.cat([m.flatten(1) for m in masks], 1)
        pos = torch.cat([p.flatten(2).transpose(1, 2) + self.level_embed[i].view(1, 1, -1)
                         for i, p in enumerate(pos_embeds)], 1)
        valid_ratios = torch.stack([self.valid_ratio(m) for m in masks], 1)
        memory = self.encoder(src, shapes, valid_ratios, pos, mask)

        N, _, C = memory.shape
        out_memory, out_proposals, level_ids = self.encoder_proposals(memory, mask, shapes)
        enc_class = self.decoder.class_embed[self.decoder.num_layers](out_memory)
        enc_coord = self.decoder.bbox_embed[self.decoder.num_layers](out_memory) + out_proposals
        logits = enc_class[..., 0]
        boxes = enc_coord.sigmoid()
        topk = torch.stack([self.select_proposals(logits[b], boxes[b], level_ids, len(srcs)) for b in range(N)])
        coords = torch.gather(enc_coord, 1, topk.unsqueeze(-1).repeat(1, 1, 4)).detach()
        reference = coords.sigmoid()
        embed = self.proposal_pos_embed(coords, C // 2)
        query_pos, tgt = torch.split(self.pos_trans_norm(self.pos_trans(embed)), C, dim=2)
        feats = torch.stack([out_memory[b][topk[b]] for b in range(N)]).detach()
        tgt = tgt + self.pix_trans_norm(self.pix_trans(feats))
        states, references = self.decoder(tgt, reference, memory, shapes, valid_ratios, query_pos, mask)
        return states, reference, references, enc_class, enc_coord, out_proposals.sigmoid()

    @staticmethod
    def valid_ratio(mask: torch.Tensor) -> torch.Tensor:
        _, H, W = mask.shape
        return torch.stack([(~mask[:, 0, :]).sum(1).float() / W, (~mask[:, :, 0]).sum(1).float() / H], -1)



class DETA(nn.Module):
    """DETA's detector head over a backbone's feature maps (``DeformableDETR`` of the released DETA_pe with two-stage
    and box refinement): 1x1 conv + GroupNorm per backbone level, stride-2 3x3 conv + GroupNorm for each extra
    level, the transformer, per-layer class and box heads (the last of each scores the encoder's proposals).

    ``forward(features, mask)``: ``features`` (N, C_l, H_l, W_l) from stride 8 up, ``mask`` (N, H, W) True at the
    padding of the batched images. Returns DETR's dict: ``pred_logits`` (N, Q, K), ``pred_boxes`` (N, Q, 4; cx, cy,
    w, h in [0, 1] of each image's valid extent: the references are normalized by the valid ratios),
    ``init_reference``, ``aux_outputs`` (the earlier decoder layers), ``enc_outputs`` (the proposals' logits, boxes
    and anchors)."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, num_queries: int = 900, hidden_dim: int = 256,
                 nheads: int = 8, enc_layers: int = 6, dec_layers: int = 6, dim_feedforward: int = 2048,
                 dropout: float = 0.0, num_feature_levels: int = 5, enc_n_points: int = 4, dec_n_points: int = 4):
        super().__init__()
        self.num_queries, self.num_feature_levels = num_queries, num_feature_levels
        self.transformer = DeformableTransformer(hidden_dim, nheads, enc_layers, dec_layers, dim_feedforward, dropout,
                                                 num_feature_levels, dec_n_points, enc_n_points, num_queries)
        proj = [nn.Sequential(nn.Conv2d(c, hidden_dim, kernel_size=1), nn.GroupNorm(32, hidden_dim))
                for c in in_channels]
        c = in_channels[-1]
        for _ in range(num_feature_levels - len(in_channels)):
            proj.append(nn.Sequential(nn.Conv2d(c, hidden_dim, kernel_size=3, stride=2, padding=1),
                                      nn.GroupNorm(32, hidden_dim)))
            c = hidden_dim
        self.input_proj = nn.ModuleList(proj)
        prior = -math.log((1 - 0.01) / 0.01)
        self.class_embed = nn.ModuleList(nn.Linear(hidden_dim, num_classes) for _ in range(dec_layers + 1))
        self.bbox_embed = nn.ModuleList(MLP(hidden_dim, hidden_dim, 4, 3) for _ in range(dec_layers + 1))
        with torch.no_grad():
            for m in self.class_embed:
                m.bias.fill_(prior)
            for m in self.bbox_embed:
                m.layers[-1].weight.zero_()
                m.layers[-1].bias.zero_()
        for p in self.input_proj:
            nn.init.xavier_uniform_(p[0].weight, gain=1)
            nn.init.constant_(p[0].bias, 0)
        self.transformer.decoder.bbox_embed = self.bbox_embed
        self.transformer.decoder.class_embed = self.class_embed

    def forward(self, features: Sequence[torch.Tensor], mask: torch.Tensor) -> dict:
        srcs, masks = [], []
        for i, f in enumerate(features):
            srcs.append(self.input_proj[i](f))
            masks.append(F.interpolate(mask[None].float(), size=f.shape[-2:]).to(torch.bool)[0])
        for i in range(len(features), self.num_feature_levels):
            srcs.append(self.input_proj[i](features[-1] if i == len(features) else srcs[-1]))
            masks.append(F.interpolate(mask[None].float(), size=srcs[-1].shape[-2:]).to(torch.bool)[0])
        pos = [sine_position_embedding(m, self.transformer.d_model // 2).to(s.dtype) for s, m in zip(srcs, masks)]
        states, init, refs, enc_class, enc_coord, anchors = self.transformer(srcs, masks, pos)
        classes, coords = [], []
        for lvl in range(states.shape[0]):
            reference = inverse_sigmoid(init if lvl == 0 else refs[lvl - 1])
            classes.append(self.class_embed[lvl](states[lvl]))
            coords.append((self.bbox_embed[lvl](states[lvl]) + reference).sigmoid())
        return {"pred_logits": classes[-1], "pred_boxes": coords[-1], "init_reference": init,
                "aux_outputs": [{"pred_logits": a, "pred_boxes": b} for a, b in zip(classes[:-1], coords[:-1])],
                "enc_outputs": {"pred_logits": enc_class, "pred_boxes": enc_coord.sigmoid(), "anchors": anchors}}


class DETALevels(nn.Module):
    """The released DETA_pe's ``PEv1_simpleFPN`` levels over a PE tower's last map (stride p): p3 by a 2x2
    transposed conv to C / 2 channels (stride p / 2), p4 the map itself (stride p), p5 by 2x2 max pooling
    (stride 2 p). ``forward(x)`` -> ``[p3, p4, p5]``. Names as released (``fpn1.0.*``) under the tower's ``net``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        C = net.width
        self.fpn1 = nn.Sequential(nn.ConvTranspose2d(C, C // 2, kernel_size=2, stride=2))
        self.fpn3 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.channels = [C // 2, C, C]
        p = net.patch_size
        self.strides = [p // 2, p, 2 * p]

    def forward(self, x: torch.Tensor):
        y = self.net(x)[-1]
        return [self.fpn1(y), y, self.fpn3(y)]
