"""Dynamic label assignment for the anchor-free detector: the task-aligned assigner of TOOD / YOLOv8.

For every ground-truth box, the anchors whose centre lies inside it (boxes thinner than a stride grown to
one stride about their centre, ``candidate_anchors``) are ranked by the alignment metric
``score ** alpha * iou ** beta`` (the predicted score of the box's class times the IoU of the predicted
box with it); the ``topk`` best become positives. An anchor claimed by several boxes keeps the one it
overlaps most. Soft targets: each positive's class target is its alignment, normalised so that the best
anchor of a box gets that box's best IoU (quality-aware classification scores).

All boxes are x1, y1, x2, y2 in input pixels; anchors are cell centres (x, y) in input pixels.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

EPS = 1e-9


class Assignment(NamedTuple):
    """fg: bool [B, A] positives; target_boxes: float [B, A, 4] xyxy (valid where fg);
    target_scores: float [B, A, C] soft class targets (0 off fg); gt_index: long [B, A] assigned box."""

    fg: torch.Tensor
    target_boxes: torch.Tensor
    target_scores: torch.Tensor
    gt_index: torch.Tensor


def box_iou_pairwise(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of a [..., M, 4] against b [..., A, 4] (xyxy) → [..., M, A]; zero-area boxes give 0."""
    lt = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    rb = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a[..., :, None] + area_b[..., None, :] - inter + EPS)


def centers_inside(centers: torch.Tensor, boxes: torch.Tensor, margin: float = 1e-3) -> torch.Tensor:
    """bool [B, M, A]: anchor centre [A, 2] strictly inside box [B, M, 4]."""
    x, y = centers[:, 0], centers[:, 1]
    b = boxes[..., None, :]
    return (x > b[..., 0] + margin) & (y > b[..., 1] + margin) & (x < b[..., 2] - margin) & (y < b[..., 3] - margin)


def candidate_anchors(centers: torch.Tensor, boxes: torch.Tensor, anchor_strides: torch.Tensor) -> torch.Tensor:
    """bool [B, M, A]: anchor centre inside the box grown to at least one stride of its level per axis.

    A box thinner than the stride (a distant pedestrian, a pole-mounted sign) may hold no anchor centre
    of the finest level at all and would never be learnt; growing it about its centre to one stride gives
    it at least one candidate per axis. Boxes wider than the stride are unchanged.
    """
    cx, cy = (boxes[..., 0] + boxes[..., 2]) / 2, (boxes[..., 1] + boxes[..., 3]) / 2
    half_w = ((boxes[..., 2] - boxes[..., 0]) / 2)[..., None]
    half_h = ((boxes[..., 3] - boxes[..., 1]) / 2)[..., None]
    half_s = anchor_strides / 2
    dx = (centers[:, 0] - cx[..., None]).abs()
    dy = (centers[:, 1] - cy[..., None]).abs()
    # strict for the box itself; inclusive for the one-stride growth, so a box centred exactly between two
    # anchor columns gets both rather than neither
    return ((dx < half_w) | (dx <= half_s)) & ((dy < half_h) | (dy <= half_s))


@torch.no_grad()
def task_aligned_assign(
    pred_scores: torch.Tensor,
    pred_boxes: torch.Tensor,
    centers: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    gt_valid: torch.Tensor,
    *,
    topk: int = 10,
    alpha: float = 1.0,
    beta: float = 6.0,
    anchor_strides: torch.Tensor | None = None,
) -> Assignment:
    """Assign ground truth to anchors.

    Args:
        pred_scores: float [B, A, C] class probabilities (after sigmoid).
        pred_boxes: float [B, A, 4] decoded predictions, xyxy input pixels.
        centers: float [A, 2] anchor centres (x, y), input pixels.
        gt_boxes: float [B, M, 4] xyxy input pixels, padded; gt_labels: long [B, M]; gt_valid: bool [B, M]
            (False for padding and for ignore boxes, which never make positives).
        topk: candidates per box; alpha, beta: exponents of the alignment metric.
        anchor_strides: float [A], each anchor's stride; given, boxes thinner than a stride also take the
            anchors of ``candidate_anchors`` (else only centres strictly inside the box are candidates).
    Returns:
        ``Assignment``; with M == 0 or no valid box everything is background.
    """
    b, a, c = pred_scores.shape
    m = gt_boxes.shape[1]
    device = pred_scores.device
    if m == 0 or not bool(gt_valid.any()):
        return Assignment(
            torch.zeros(b, a, dtype=torch.bool, device=device),
            torch.zeros(b, a, 4, device=device),
            torch.zeros(b, a, c, device=device),
            torch.zeros(b, a, dtype=torch.long, device=device),
        )
    if anchor_strides is None:
        inside = centers_inside(centers, gt_boxes)
    else:
        inside = candidate_anchors(centers, gt_boxes, anchor_strides)
    inside = inside & gt_valid[..., None]  # [B, M, A]
    ious = box_iou_pairwise(gt_boxes, pred_boxes.float()).clamp(min=0)  # [B, M, A]
    labels = gt_labels.clamp(min=0, max=c - 1)
    cls_score = pred_scores.float().transpose(1, 2).gather(1, labels[..., None].expand(b, m, a))  # [B, M, A]
    metric = cls_score.pow(alpha) * ious.pow(beta) * inside
    k = min(topk, a)
    # top-k by metric, restricted to inside anchors; ties at 0 (fresh network) fall back to inside-ness
    rank_key = metric + inside.float() * 1e-12
    top_idx = rank_key.topk(k, dim=-1).indices  # [B, M, k]
    topk_mask = torch.zeros_like(inside).scatter_(-1, top_idx, True)
    pos = topk_mask & inside  # [B, M, A]
    # anchors claimed by several boxes keep the one with the highest IoU
    multi = pos.sum(1) > 1  # [B, A]
    if bool(multi.any()):
        best = (ious * pos).argmax(1)  # [B, A]
        best_onehot = torch.zeros_like(pos).scatter_(1, best[:, None, :], True)
        pos = torch.where(multi[:, None, :], best_onehot & pos, pos)
    fg = pos.any(1)  # [B, A]
    gt_index = pos.float().argmax(1)  # [B, A]
    target_boxes = gt_boxes.gather(1, gt_index[..., None].expand(b, a, 4))
    target_labels = labels.gather(1, gt_index)
    # normalised alignment: best anchor of each box gets that box's best IoU
    metric = metric * pos
    max_metric = metric.amax(-1, keepdim=True)  # [B, M, 1]
    max_iou = (ious * pos).amax(-1, keepdim=True)
    norm = (metric * max_iou / (max_metric + EPS)).amax(1)  # [B, A]
    target_scores = torch.zeros(b, a, c, device=device)
    target_scores.scatter_(2, target_labels[..., None], norm[..., None])
    target_scores = target_scores * fg[..., None]
    return Assignment(fg, target_boxes, target_scores, gt_index)
