"""Training losses of the multi-task network, with partial labels.

Segmentation: pixel cross-entropy (ignore index honoured, class weights for the thin lane class) + soft
Dice. With ``hard_frac`` < 1 the cross-entropy is averaged over only the hardest pixels of the batch
(online hard example mining): a dark bonnet called road or a far dash missed are a few pixels among
hundreds of thousands of easy ones, and the plain mean lets them starve.

A sample whose lane paint is not labelled (``lane_labelled`` False, e.g. CamVid, where paint is part
of Road) is scored on "road surface" = drivable or lane: its drivable pixels take the log of
p(drivable) + p(lane), so the network is never taught that paint is not lane; pixels it marks as lane
(auto-labelled positives) still count as lane.

Detection: task-aligned assignment (``assign.py``), IoU-family box loss on positives weighted by their
soft targets, and BCE or quality focal loss on the class scores against those soft targets. Anchors
whose centre lies in an ``ignore`` box (crowds, mostly hidden objects) are left out of the class loss
unless assigned; samples without box labels contribute no detection loss at all.

Both are normalised over the whole batch (not averaged per image), and the total is
``seg_weight * seg + det_weight * det``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from perception.nets.box_coding import TORCH_BOX_ENCODINGS, decode_boxes
from perception.nets.tiny import MultiTaskOutput
from perception.postprocess.decode import anchor_centers
from perception.train.assign import centers_inside, task_aligned_assign

IGNORE = 255
BOX_LOSSES = ("giou", "ciou", "iou")
CLS_LOSSES = ("bce", "qfl")


@dataclass
class Targets:
    """A collated batch of labels (see ``perception.train.data.collate``).

    seg: long [B, H, W] class ids, 255 = ignore; has_seg: bool [B]; lane_labelled: bool [B].
    boxes: float [B, M, 4] xyxy input pixels (padded); labels: long [B, M]; box_valid: bool [B, M] real
    rows; box_ignore: bool [B, M] ignore rows; has_boxes: bool [B] sample carries box labels.
    """

    seg: torch.Tensor
    has_seg: torch.Tensor
    lane_labelled: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    box_valid: torch.Tensor
    box_ignore: torch.Tensor
    has_boxes: torch.Tensor

    def to(self, device: torch.device) -> Targets:
        return Targets(**{k: getattr(self, k).to(device, non_blocking=True) for k in self.__dataclass_fields__})


def seg_loss(
    logits: torch.Tensor,
    t: Targets,
    *,
    class_weights: Sequence[float] | None = None,
    dice_weight: float = 1.0,
    hard_frac: float = 1.0,
    drivable: int = 1,
    lane: int = 2,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy + Dice on samples with masks; returns (loss, parts). Zero when no sample has a mask.

    ``hard_frac``: the share of valid pixels (those with the highest weighted loss) the cross-entropy
    averages over; 1.0 is the plain weighted mean.
    """
    if not 0.0 < hard_frac <= 1.0:
        raise ValueError(f"hard_frac must be in (0, 1], got {hard_frac}")
    keep = t.has_seg
    if not bool(keep.any()):
        return logits.sum() * 0.0, {"seg_ce": 0.0, "seg_dice": 0.0}
    logits = logits[keep].float()
    target = t.seg[keep]
    lane_known = t.lane_labelled[keep]
    s = logits.shape[1]
    logp = F.log_softmax(logits, 1)  # [B, S, H, W]
    valid = target != IGNORE
    tgt = torch.where(valid, target, torch.zeros_like(target))
    picked = logp.gather(1, tgt[:, None]).squeeze(1)  # [B, H, W]
    # lane-unknown samples: "drivable" means road surface, p(drivable) + p(lane)
    surface = torch.logsumexp(logp[:, [drivable, lane]], 1)
    merge = (~lane_known)[:, None, None] & (tgt == drivable)
    picked = torch.where(merge, surface, picked)
    w = torch.ones(s, device=logits.device) if class_weights is None else logits.new_tensor(class_weights)
    pix_w = w[tgt] * valid
    pix_loss = -picked * pix_w
    if hard_frac < 1.0:
        hard = torch.topk(pix_loss.flatten(), math.ceil(hard_frac * int(valid.sum()))).indices
        ce = pix_loss.flatten()[hard].sum() / pix_w.flatten()[hard].sum().clamp(min=1e-6)
    else:
        ce = pix_loss.sum() / pix_w.sum().clamp(min=1.0)

    prob = logp.exp()
    dice_terms = []
    # background and road surface on every masked sample; lane only where it is labelled
    road_p = prob[:, drivable] + prob[:, lane]
    road_t = ((tgt == drivable) | (tgt == lane)).float()
    for p, g, m in (
        (prob[:, 0], (tgt == 0).float(), valid.float()),
        (road_p, road_t, valid.float()),
        (prob[:, lane], (tgt == lane).float(), (valid & lane_known[:, None, None]).float()),
    ):
        if float(m.sum()) == 0:
            continue
        inter = (p * g * m).sum()
        denom = (p * m).sum() + (g * m).sum()
        dice_terms.append(1 - (2 * inter + 1.0) / (denom + 1.0))
    dice = torch.stack(dice_terms).mean()
    return ce + dice_weight * dice, {"seg_ce": float(ce.detach()), "seg_dice": float(dice.detach())}


def bbox_iou_aligned(a: torch.Tensor, b: torch.Tensor, kind: str = "giou") -> torch.Tensor:
    """IoU / GIoU / CIoU of matched boxes a [K, 4], b [K, 4] (xyxy) → [K]."""
    eps = 1e-7
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    wa, ha = (a[:, 2] - a[:, 0]).clamp(min=0), (a[:, 3] - a[:, 1]).clamp(min=0)
    wb, hb = (b[:, 2] - b[:, 0]).clamp(min=0), (b[:, 3] - b[:, 1]).clamp(min=0)
    union = wa * ha + wb * hb - inter + eps
    iou = inter / union
    if kind == "iou":
        return iou
    clt = torch.minimum(a[:, :2], b[:, :2])
    crb = torch.maximum(a[:, 2:], b[:, 2:])
    if kind == "giou":
        carea = (crb - clt).prod(1) + eps
        return iou - (carea - union) / carea
    # CIoU: centre distance over enclosing diagonal + aspect-ratio consistency
    c2 = ((crb - clt) ** 2).sum(1) + eps
    rho2 = (((a[:, :2] + a[:, 2:]) - (b[:, :2] + b[:, 2:])) ** 2).sum(1) / 4
    v = (4 / torch.pi**2) * (torch.atan(wb / (hb + eps)) - torch.atan(wa / (ha + eps))) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


class DetectionLoss:
    """Anchor-free detection loss with task-aligned assignment (see the module docstring).

    Args:
        strides: per level, input pixels per cell (the network's ``strides``).
        box_loss: "giou", "ciou" or "iou"; cls_loss: "bce" or "qfl" (quality focal, gamma 2).
        box_weight, cls_weight: weights of the two parts.
        topk, alpha, beta: assigner settings.
        box_encoding: how the head's box maps become boxes (the network's ``box_encoding``).
    """

    def __init__(
        self,
        strides: Sequence[int],
        *,
        box_loss: str = "giou",
        cls_loss: str = "bce",
        box_weight: float = 2.5,
        cls_weight: float = 1.0,
        topk: int = 10,
        alpha: float = 1.0,
        beta: float = 6.0,
        box_encoding: str = "ltrb_softplus",
    ):
        if box_loss not in BOX_LOSSES:
            raise ValueError(f"box_loss must be one of {BOX_LOSSES}, got {box_loss!r}")
        if cls_loss not in CLS_LOSSES:
            raise ValueError(f"cls_loss must be one of {CLS_LOSSES}, got {cls_loss!r}")
        self.strides = tuple(int(s) for s in strides)
        self.box_loss, self.cls_loss = box_loss, cls_loss
        self.box_weight, self.cls_weight = box_weight, cls_weight
        self.topk, self.alpha, self.beta = topk, alpha, beta
        if box_encoding not in TORCH_BOX_ENCODINGS:
            raise ValueError(f"box_encoding must be one of {sorted(TORCH_BOX_ENCODINGS)}, got {box_encoding!r}")
        self.box_encoding = box_encoding
        self._anchor_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def anchors(self, sizes: list[tuple[int, int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (tuple(sizes), str(device))
        if key not in self._anchor_cache:
            c, s = anchor_centers(sizes, self.strides)
            self._anchor_cache[key] = (torch.from_numpy(c).to(device), torch.from_numpy(s).to(device))
        return self._anchor_cache[key]

    def __call__(self, out: MultiTaskOutput, t: Targets) -> tuple[torch.Tensor, dict[str, float]]:
        keep = t.has_boxes
        zero = sum(m.sum() for m in out.cls_maps) * 0.0 + sum(m.sum() for m in out.box_maps) * 0.0
        if not bool(keep.any()):
            return zero, {"det_box": 0.0, "det_cls": 0.0, "num_fg": 0.0}
        sizes = [tuple(m.shape[-2:]) for m in out.cls_maps]
        centers, stride = self.anchors(sizes, out.cls_maps[0].device)
        cls = torch.cat([m.flatten(2) for m in out.cls_maps], 2).transpose(1, 2)[keep].float()  # [B, A, C]
        raw = torch.cat([m.flatten(2) for m in out.box_maps], 2).transpose(1, 2)[keep].float()  # [B, A, 4]
        boxes = decode_boxes(raw, centers, stride, self.box_encoding)
        gt_boxes, gt_labels = t.boxes[keep].float(), t.labels[keep]
        gt_valid = t.box_valid[keep] & ~t.box_ignore[keep]
        asg = task_aligned_assign(
            cls.detach().sigmoid(),
            boxes.detach(),
            centers,
            gt_boxes,
            gt_labels,
            gt_valid,
            topk=self.topk,
            alpha=self.alpha,
            beta=self.beta,
            anchor_strides=stride,
        )
        norm = asg.target_scores.sum().clamp(min=1.0)
        # class loss, with anchors inside ignore boxes left out unless assigned
        ign = t.box_valid[keep] & t.box_ignore[keep]
        in_ignore = (centers_inside(centers, gt_boxes) & ign[..., None]).any(1) & ~asg.fg  # [B, A]
        weight = (~in_ignore).float()[..., None]
        bce = F.binary_cross_entropy_with_logits(cls, asg.target_scores, reduction="none")
        if self.cls_loss == "qfl":
            bce = bce * (cls.sigmoid() - asg.target_scores).abs().pow(2.0)
        loss_cls = (bce * weight).sum() / norm
        if bool(asg.fg.any()):
            w = asg.target_scores.sum(-1)[asg.fg]
            iou = bbox_iou_aligned(boxes[asg.fg], asg.target_boxes[asg.fg], self.box_loss)
            loss_box = ((1.0 - iou) * w).sum() / norm
        else:
            loss_box = boxes.sum() * 0.0
        loss = self.box_weight * loss_box + self.cls_weight * loss_cls + zero
        return loss, {
            "det_box": float(loss_box.detach()),
            "det_cls": float(loss_cls.detach()),
            "num_fg": float(asg.fg.sum()),
        }


class MultiTaskLoss:
    """``seg_weight * seg_loss + det_weight * DetectionLoss``; returns (total, parts for logging)."""

    def __init__(
        self,
        det_loss: DetectionLoss,
        *,
        seg_weight: float = 1.0,
        det_weight: float = 1.0,
        seg_class_weights: Sequence[float] | None = None,
        dice_weight: float = 1.0,
        seg_hard_frac: float = 1.0,
    ):
        self.det_loss = det_loss
        self.seg_hard_frac = seg_hard_frac
        self.seg_weight, self.det_weight = seg_weight, det_weight
        self.seg_class_weights = seg_class_weights
        self.dice_weight = dice_weight

    def __call__(self, out: MultiTaskOutput, t: Targets) -> tuple[torch.Tensor, dict[str, float]]:
        ls, parts_s = seg_loss(
            out.seg_logits,
            t,
            class_weights=self.seg_class_weights,
            dice_weight=self.dice_weight,
            hard_frac=self.seg_hard_frac,
        )
        ld, parts_d = self.det_loss(out, t)
        total = self.seg_weight * ls + self.det_weight * ld
        return total, {
            "loss": float(total.detach()),
            "seg": float(ls.detach()),
            "det": float(ld.detach()),
            **parts_s,
            **parts_d,
        }
