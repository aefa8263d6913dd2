"""Training losses and the task-aligned assigner (perception/train/losses.py, perception/train/assign.py).

Everything is checked against slow references (numpy IoU, a pure-python assigner loop, a numpy
segmentation loss) or hand-computed values, on tiny inputs: a 64x64 image with strides (8, 16, 32),
i.e. grids 8x8, 4x4 and 2x2 (84 anchors), so the whole file runs in a few seconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from perception.nets.tiny import MultiTaskOutput
from perception.postprocess.decode import anchor_centers
from perception.postprocess.nms import box_iou
from perception.train.assign import Assignment, box_iou_pairwise, centers_inside, task_aligned_assign
from perception.train.losses import IGNORE, DetectionLoss, MultiTaskLoss, Targets, bbox_iou_aligned, seg_loss

STRIDES = (8, 16, 32)
SIZE = 64
SIZES = [(SIZE // s, SIZE // s) for s in STRIDES]
NUM_CLS = 3


def _centers() -> tuple[torch.Tensor, torch.Tensor]:
    c, s = anchor_centers(SIZES, STRIDES)
    return torch.from_numpy(c), torch.from_numpy(s)


def _random_boxes(rng: np.random.Generator, n: int, lo: float = 0.0, hi: float = 64.0) -> np.ndarray:
    xy = rng.uniform(lo, hi, size=(n, 2))
    wh = rng.uniform(1.0, 30.0, size=(n, 2))
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


# --------------------------------------------------------------------------------------------- IoU


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_box_iou_pairwise_matches_numpy_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = _random_boxes(rng, 7), _random_boxes(rng, 11)
    got = box_iou_pairwise(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(got, box_iou(a, b), atol=1e-5)
    assert got.max() > 0  # the random boxes do overlap somewhere, so the comparison is not vacuous


def test_box_iou_pairwise_batched_and_zero_area() -> None:
    rng = np.random.default_rng(5)
    a, b = _random_boxes(rng, 2 * 3).reshape(2, 3, 4), _random_boxes(rng, 2 * 5).reshape(2, 5, 4)
    got = box_iou_pairwise(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    assert got.shape == (2, 3, 5)
    for i in range(2):
        np.testing.assert_allclose(got[i], box_iou(a[i], b[i]), atol=1e-5)
    # zero-area boxes (a point, a line, an inverted box) overlap nothing, even themselves
    degenerate = torch.tensor([[5.0, 5.0, 5.0, 5.0], [0.0, 2.0, 10.0, 2.0], [10.0, 10.0, 0.0, 0.0]])
    iou = box_iou_pairwise(degenerate, torch.cat([degenerate, torch.tensor([[0.0, 0.0, 20.0, 20.0]])]))
    assert torch.isfinite(iou).all()
    assert torch.equal(iou, torch.zeros_like(iou))


def test_bbox_iou_aligned_identical_boxes_give_one() -> None:
    a = torch.tensor([[0.0, 0.0, 10.0, 5.0], [3.0, 4.0, 7.5, 20.0]])
    for kind in ("iou", "giou", "ciou"):
        torch.testing.assert_close(bbox_iou_aligned(a, a.clone(), kind), torch.ones(2), atol=1e-5, rtol=0)


def test_bbox_iou_aligned_disjoint_hand_computed() -> None:
    # unit squares one unit apart: inter 0, union 2, enclosing box 3x1 -> GIoU = 0 - (3 - 2) / 3
    a = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[2.0, 0.0, 3.0, 1.0]])
    assert float(bbox_iou_aligned(a, b, "iou")) == 0.0
    assert float(bbox_iou_aligned(a, b, "giou")) == pytest.approx(-1.0 / 3.0, abs=1e-6)
    # CIoU: same aspect ratio (v = 0), centre distance 2, enclosing diagonal^2 = 9 + 1 -> -4 / 10
    assert float(bbox_iou_aligned(a, b, "ciou")) == pytest.approx(-0.4, abs=1e-6)


def test_bbox_iou_aligned_hand_computed_overlap() -> None:
    # a = [0,0,2,2] (area 4), b = [1,0,3,1] (area 2): inter 1, union 5, enclosure 3x2 = 6
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 0.0, 3.0, 1.0]])
    assert float(bbox_iou_aligned(a, b, "iou")) == pytest.approx(0.2, abs=1e-6)
    assert float(bbox_iou_aligned(a, b, "giou")) == pytest.approx(0.2 - 1.0 / 6.0, abs=1e-6)
    # CIoU: centres (1,1), (2,0.5): rho^2 = 1.25; c^2 = 9 + 4 = 13; v = 4/pi^2 (atan 2 - atan 1)^2
    v = 4 / math.pi**2 * (math.atan(2.0) - math.atan(1.0)) ** 2
    alpha = v / (v - 0.2 + 1)
    assert float(bbox_iou_aligned(a, b, "ciou")) == pytest.approx(0.2 - (1.25 / 13 + v * alpha), abs=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bbox_iou_aligned_random_properties_and_gradients(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a_np, b_np = _random_boxes(rng, 32), _random_boxes(rng, 32)
    a_np[0] = b_np[0]  # an identical pair, where CIoU's v and alpha are both 0
    a_np[1] = b_np[1] + np.float32(100.0)  # a far-apart pair
    ref = np.diag(box_iou(a_np, b_np))
    for kind in ("iou", "giou", "ciou"):
        a = torch.from_numpy(a_np).requires_grad_(True)
        b = torch.from_numpy(b_np)
        val = bbox_iou_aligned(a, b, kind)
        if kind == "iou":
            np.testing.assert_allclose(val.detach().numpy(), ref, atol=1e-5)
        else:
            # both penalties are non-negative, and GIoU / CIoU live in (-1, 1]
            assert (val.detach().numpy() <= ref + 1e-6).all()
            assert (val.detach() > -1.0 - 1e-6).all()
        val.sum().backward()
        assert a.grad is not None and torch.isfinite(a.grad).all()
    ciou = bbox_iou_aligned(torch.from_numpy(a_np), torch.from_numpy(b_np), "ciou")
    assert float(ciou[1]) < 0  # far apart: the distance penalty dominates


# -------------------------------------------------------------------------------------------- assigner


def _reference_assign(
    scores: np.ndarray,
    pred: np.ndarray,
    centers: np.ndarray,
    gts: np.ndarray,
    labels: np.ndarray,
    valid: np.ndarray,
    topk: int,
    alpha: float,
    beta: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slow loop version of the task-aligned assigner: (fg [B, A], gt_index [B, A], target_scores [B, A, C])."""
    b_n, a_n, c_n = scores.shape
    fg = np.zeros((b_n, a_n), bool)
    gt_index = np.zeros((b_n, a_n), np.int64)
    target = np.zeros((b_n, a_n, c_n), np.float64)
    for b in range(b_n):
        iou = box_iou(gts[b], pred[b]) if len(gts[b]) else np.zeros((0, a_n))
        metric: dict[tuple[int, int], float] = {}
        claims: dict[int, list[int]] = {}
        for m in range(len(gts[b])):
            if not valid[b, m]:
                continue
            x1, y1, x2, y2 = (float(v) for v in gts[b, m])
            inside = [
                i
                for i in range(a_n)
                if x1 < centers[i, 0] < x2 and y1 < centers[i, 1] < y2  # strictly inside (margin is tiny)
            ]
            for i in inside:
                metric[m, i] = float(scores[b, i, labels[b, m]]) ** alpha * float(iou[m, i]) ** beta
            for i in sorted(inside, key=lambda i: -metric[m, i])[:topk]:
                claims.setdefault(i, []).append(m)
        owner = {i: max(ms, key=lambda m: iou[m, i]) for i, ms in claims.items()}
        for m in set(owner.values()):
            mine = [i for i, o in owner.items() if o == m]
            max_metric = max(metric[m, i] for i in mine)
            max_iou = max(iou[m, i] for i in mine)
            for i in mine:
                fg[b, i] = True
                gt_index[b, i] = m
                target[b, i, labels[b, m]] = metric[m, i] * max_iou / (max_metric + 1e-9)
    return fg, gt_index, target


def _random_problem(seed: int, m: int = 4, b: int = 2):
    """Random scores, per-anchor predicted boxes around each anchor, and gt boxes in a crowded region."""
    rng = np.random.default_rng(seed)
    centers, _ = anchor_centers(SIZES, STRIDES)
    a = len(centers)
    scores = rng.uniform(0.05, 0.95, size=(b, a, NUM_CLS)).astype(np.float32)
    half = rng.uniform(3.0, 20.0, size=(b, a, 4)).astype(np.float32)
    pred = np.concatenate([centers[None] - half[..., :2], centers[None] + half[..., 2:]], -1)
    # gts concentrated in the upper-left 48x48 so that they overlap each other (multi-claimed anchors)
    gts = np.stack([_random_boxes(rng, m, 0.0, 24.0) for _ in range(b)]) + np.float32(0.3)
    labels = rng.integers(0, NUM_CLS, size=(b, m))
    valid = np.ones((b, m), bool)
    valid[1, -1] = False  # a padding row
    labels[1, -1] = -1
    return scores, pred, centers, gts, labels, valid


def _run_assign(scores, pred, centers, gts, labels, valid, **kw) -> Assignment:
    return task_aligned_assign(
        torch.from_numpy(scores),
        torch.from_numpy(pred),
        torch.from_numpy(centers),
        torch.from_numpy(gts),
        torch.from_numpy(labels),
        torch.from_numpy(valid),
        **kw,
    )


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("topk", "alpha", "beta"), [(10, 1.0, 6.0), (3, 0.5, 2.0)])
def test_task_aligned_assign_matches_reference(seed: int, topk: int, alpha: float, beta: float) -> None:
    scores, pred, centers, gts, labels, valid = _random_problem(seed)
    asg = _run_assign(scores, pred, centers, gts, labels, valid, topk=topk, alpha=alpha, beta=beta)
    fg, gt_index, target = _reference_assign(scores, pred, centers, gts, labels, valid, topk, alpha, beta)
    assert fg.any()
    np.testing.assert_array_equal(asg.fg.numpy(), fg)
    np.testing.assert_array_equal(asg.gt_index.numpy()[fg], gt_index[fg])
    np.testing.assert_allclose(asg.target_scores.numpy(), target, atol=1e-5)
    # target boxes are the assigned gt's box
    idx = np.nonzero(fg)
    np.testing.assert_array_equal(asg.target_boxes.numpy()[idx], gts[idx[0], gt_index[idx]])
    # the best anchor of each gt gets that gt's best IoU as its target
    assert asg.target_scores.max() <= 1.0 + 1e-6


def test_reference_problems_exercise_multi_claims() -> None:
    """Guard for the reference comparison: the random problems do contain anchors inside several gts."""
    claimed = 0
    for seed in range(6):
        _, _, centers, gts, _, valid = _random_problem(seed)
        inside = centers_inside(torch.from_numpy(centers), torch.from_numpy(gts)) & torch.from_numpy(valid)[..., None]
        claimed += int((inside.sum(1) > 1).sum())
    assert claimed > 0


def test_task_aligned_assign_multi_claim_keeps_highest_iou() -> None:
    centers = torch.tensor([[10.0, 10.0], [30.0, 30.0]])
    # both gts contain anchor 0; its predicted box coincides with gt 1
    gts = torch.tensor([[[0.0, 0.0, 20.0, 20.0], [5.0, 5.0, 15.0, 15.0]]])
    pred = torch.tensor([[[5.0, 5.0, 15.0, 15.0], [25.0, 25.0, 35.0, 35.0]]])
    scores = torch.full((1, 2, 2), 0.5)
    asg = task_aligned_assign(scores, pred, centers, gts, torch.tensor([[0, 1]]), torch.tensor([[True, True]]))
    assert asg.fg.tolist() == [[True, False]]
    assert int(asg.gt_index[0, 0]) == 1
    # gt 1's only positive is perfect (IoU 1): normalised target = 1 on class 1, nothing on class 0
    torch.testing.assert_close(asg.target_scores[0, 0], torch.tensor([0.0, 1.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(asg.target_boxes[0, 0], gts[0, 1])


def test_task_aligned_assign_padding_rows_never_positive() -> None:
    scores, pred, centers, gts, labels, valid = _random_problem(3)
    valid[:] = False
    valid[0, 0] = True
    asg = _run_assign(scores, pred, centers, gts, labels, valid)
    assert asg.fg[1].sum() == 0  # sample 1 has only padding rows
    assert (asg.gt_index[0][asg.fg[0]] == 0).all()
    inside = centers_inside(torch.from_numpy(centers), torch.from_numpy(gts[:1, :1]))[0, 0]
    assert bool(asg.fg[0].any()) and not bool((asg.fg[0] & ~inside).any())
    assert float(asg.target_scores[1].abs().sum()) == 0.0


@pytest.mark.parametrize("m", [0, 3])
def test_task_aligned_assign_no_valid_gt_is_all_background(m: int) -> None:
    scores, pred, centers, gts, labels, valid = _random_problem(1, m=max(m, 1))
    gts, labels, valid = gts[:, :m], labels[:, :m], np.zeros((2, m), bool)
    asg = _run_assign(scores, pred, centers, gts, labels, valid)
    a = len(centers)
    assert asg.fg.shape == (2, a) and not bool(asg.fg.any())
    assert asg.target_scores.shape == (2, a, NUM_CLS) and float(asg.target_scores.abs().sum()) == 0.0
    assert asg.target_boxes.shape == (2, a, 4) and asg.gt_index.shape == (2, a)


def test_task_aligned_assign_box_without_anchor_centre_gets_nothing() -> None:
    centers, _ = _centers()
    # centres: stride 8 at 4 + 8k, stride 16 at 8 + 16k, stride 32 at 16 and 48; these boxes hold none
    gts = torch.tensor([[[5.0, 5.0, 7.0, 7.0], [44.5, 44.5, 47.5, 47.5]]])
    assert not bool(centers_inside(centers, gts).any())
    # edges through an anchor centre do not count as inside: [28, 28, 36, 36] has centres only on its border
    edge = torch.tensor([[[28.0, 28.0, 36.0, 36.0]]])
    assert not bool(centers_inside(centers, edge).any())
    assert int(centers_inside(centers, edge + torch.tensor([-0.1, -0.1, 0.1, 0.1])).sum()) == 4
    a = len(centers)
    pred = torch.cat([centers - 4, centers + 4], 1)[None]
    asg = task_aligned_assign(
        torch.full((1, a, NUM_CLS), 0.9), pred, centers, gts, torch.tensor([[0, 1]]), torch.ones(1, 2, dtype=torch.bool)
    )
    assert not bool(asg.fg.any())
    assert float(asg.target_scores.sum()) == 0.0


@pytest.mark.parametrize("topk", [1, 2, 5])
def test_task_aligned_assign_respects_topk(topk: int) -> None:
    scores, pred, centers, gts, labels, valid = _random_problem(4)
    # one big box with many anchors inside
    gts[:, 0] = np.array([1.0, 1.0, 63.0, 63.0], np.float32)
    asg = _run_assign(scores, pred, centers, gts, labels, valid, topk=topk)
    for b in range(2):
        for m in range(gts.shape[1]):
            assert int((asg.fg[b] & (asg.gt_index[b] == m)).sum()) <= topk
    # the big box alone has far more than topk inside anchors: it gets (up to multi-claims) topk
    only = _run_assign(scores, pred, centers, gts[:, :1], labels[:, :1], valid[:, :1], topk=topk)
    assert only.fg.sum(1).tolist() == [topk, topk]


def test_task_aligned_assign_prefers_better_aligned_anchors() -> None:
    centers, _ = _centers()
    a = len(centers)
    gts = torch.tensor([[[1.0, 1.0, 31.0, 31.0]]])
    pred = torch.cat([centers - 2, centers + 2], 1)[None].clone()
    scores = torch.full((1, a, 1), 0.5)
    # anchor 9 (stride-8 cell (1, 1), centre (12, 12)) predicts the gt exactly and is confident
    pred[0, 9] = gts[0, 0]
    scores[0, 9] = 0.9
    asg = task_aligned_assign(scores, pred, centers, gts, torch.tensor([[0]]), torch.tensor([[True]]), topk=1)
    assert asg.fg[0].nonzero().flatten().tolist() == [9]
    assert float(asg.target_scores[0, 9, 0]) == pytest.approx(1.0, abs=1e-5)


# ------------------------------------------------------------------------------------------ seg loss


def _targets(
    seg: torch.Tensor,
    has_seg: list[bool] | None = None,
    lane_labelled: list[bool] | None = None,
    boxes: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    box_valid: torch.Tensor | None = None,
    box_ignore: torch.Tensor | None = None,
    has_boxes: list[bool] | None = None,
) -> Targets:
    b = seg.shape[0]
    if boxes is None:
        boxes = torch.zeros(b, 0, 4)
    m = boxes.shape[1]
    return Targets(
        seg=seg,
        has_seg=torch.tensor([True] * b if has_seg is None else has_seg),
        lane_labelled=torch.tensor([True] * b if lane_labelled is None else lane_labelled),
        boxes=boxes,
        labels=torch.zeros(b, m, dtype=torch.long) if labels is None else labels,
        box_valid=torch.ones(b, m, dtype=torch.bool) if box_valid is None else box_valid,
        box_ignore=torch.zeros(b, m, dtype=torch.bool) if box_ignore is None else box_ignore,
        has_boxes=torch.tensor([True] * b if has_boxes is None else has_boxes),
    )


def _reference_seg_loss(
    logits: np.ndarray, seg: np.ndarray, has_seg, lane_known, weights, dice_weight: float
) -> tuple[float, float, float]:
    """numpy version of the documented seg loss: (total, ce, dice); classes 0 bg, 1 drivable, 2 lane."""
    logits, seg = logits[has_seg].astype(np.float64), seg[has_seg]
    lane_known = np.asarray(lane_known)[has_seg]
    num, den = 0.0, 0.0
    sums = {k: [0.0, 0.0, 0.0, 0] for k in ("bg", "road", "lane")}  # inter, sum p, sum g, pixels
    for n in range(len(seg)):
        for y in range(seg.shape[1]):
            for x in range(seg.shape[2]):
                t = int(seg[n, y, x])
                if t == IGNORE:
                    continue
                z = logits[n, :, y, x]
                p = np.exp(z - z.max())
                p /= p.sum()
                if t == 1 and not lane_known[n]:
                    lp = math.log(p[1] + p[2])
                else:
                    lp = math.log(p[t])
                num += -weights[t] * lp
                den += weights[t]
                terms = [("bg", p[0], t == 0), ("road", p[1] + p[2], t in (1, 2))]
                if lane_known[n]:
                    terms.append(("lane", p[2], t == 2))
                for k, pk, gk in terms:
                    sums[k][0] += pk * gk
                    sums[k][1] += pk
                    sums[k][2] += gk
                    sums[k][3] += 1
    ce = num / max(den, 1.0)
    dice_terms = []
    for k in ("bg", "road", "lane"):
        inter, sp, sg, count = sums[k]
        if count == 0:  # no pixel under this term's mask
            continue
        dice_terms.append(1 - (2 * inter + 1) / (sp + sg + 1))
    dice = float(np.mean(dice_terms))
    return ce + dice_weight * dice, ce, dice


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_seg_loss_matches_numpy_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, size=(3, 3, 4, 5)).astype(np.float32)
    seg = rng.integers(0, 3, size=(3, 4, 5))
    seg[rng.uniform(size=seg.shape) < 0.2] = IGNORE
    has_seg = np.array([True, True, False])
    lane_known = [True, False, True]
    weights = (1.0, 2.0, 5.0)
    t = _targets(torch.from_numpy(seg), has_seg.tolist(), lane_known)
    loss, parts = seg_loss(torch.from_numpy(logits), t, class_weights=weights, dice_weight=0.7)
    ref, ce, dice = _reference_seg_loss(logits, seg, has_seg, lane_known, weights, 0.7)
    assert float(loss) == pytest.approx(ref, abs=1e-5)
    assert parts["seg_ce"] == pytest.approx(ce, abs=1e-5)
    assert parts["seg_dice"] == pytest.approx(dice, abs=1e-5)


def test_seg_loss_hand_computed_ce() -> None:
    # 1x1: one pixel of class 2 -> CE = -log softmax(z)[2], class weight cancels
    z = torch.tensor([1.0, 2.0, 0.5]).view(1, 3, 1, 1)
    t = _targets(torch.tensor([[[2]]]))
    _, parts = seg_loss(z, t, class_weights=(1.0, 2.0, 5.0), dice_weight=0.0)
    expected = -(0.5 - math.log(math.exp(1.0) + math.exp(2.0) + math.exp(0.5)))
    assert parts["seg_ce"] == pytest.approx(expected, abs=1e-6)

    # 2x2 with classes 0, 1, 2 and one ignored pixel, weights (1, 2, 5), uniform logits except pixel 1
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, :, 0, 1] = torch.tensor([0.0, math.log(2.0), 0.0])  # p = (1/4, 1/2, 1/4)
    seg = torch.tensor([[[0, 1], [2, IGNORE]]])
    for lane_known, lp1 in ((True, math.log(0.5)), (False, math.log(0.75))):
        t = _targets(seg, lane_labelled=[lane_known])
        loss, parts = seg_loss(logits, t, class_weights=(1.0, 2.0, 5.0), dice_weight=0.0)
        expected = -(1.0 * math.log(1 / 3) + 2.0 * lp1 + 5.0 * math.log(1 / 3)) / 8.0
        assert float(loss) == pytest.approx(expected, abs=1e-6)
        assert parts["seg_ce"] == pytest.approx(expected, abs=1e-6)


def test_seg_loss_hard_pixels_hand_computed() -> None:
    # the 2x2 case above, lane labelled: weighted pixel losses 1*log3, 2*log2, 5*log3 (one pixel ignored)
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, :, 0, 1] = torch.tensor([0.0, math.log(2.0), 0.0])
    seg = torch.tensor([[[0, 1], [2, IGNORE]]])
    t = _targets(seg, lane_labelled=[True])
    w = (1.0, 2.0, 5.0)
    plain, _ = seg_loss(logits, t, class_weights=w, dice_weight=0.0)
    same, _ = seg_loss(logits, t, class_weights=w, dice_weight=0.0, hard_frac=1.0)
    assert float(same) == pytest.approx(float(plain), abs=1e-7)
    # half of 3 valid pixels rounds up to 2: the lane pixel and the drivable one
    half, _ = seg_loss(logits, t, class_weights=w, dice_weight=0.0, hard_frac=0.5)
    assert float(half) == pytest.approx((5.0 * math.log(3) + 2.0 * math.log(2)) / 7.0, abs=1e-6)
    third, _ = seg_loss(logits, t, class_weights=w, dice_weight=0.0, hard_frac=0.3)
    assert float(third) == pytest.approx(math.log(3), abs=1e-6)


def test_seg_loss_hard_pixels_train_only_the_hard_ones() -> None:
    logits = torch.zeros(1, 3, 1, 4)
    logits[0, 0] = torch.tensor([4.0, 3.0, -1.0, 0.0])  # all background: pixels 2 and 3 are the hard ones
    logits.requires_grad_(True)
    t = _targets(torch.zeros(1, 1, 4, dtype=torch.long))
    loss, _ = seg_loss(logits, t, dice_weight=0.0, hard_frac=0.5)
    loss.backward()
    moved = logits.grad.abs().sum(1)[0, 0]
    assert (moved[:2] == 0).all() and (moved[2:] > 0).all()


@pytest.mark.parametrize("frac", [0.0, -0.1, 1.5])
def test_seg_loss_hard_frac_out_of_range(frac: float) -> None:
    with pytest.raises(ValueError, match="hard_frac"):
        seg_loss(torch.zeros(1, 3, 1, 1), _targets(torch.zeros(1, 1, 1, dtype=torch.long)), hard_frac=frac)


def test_seg_loss_ignored_pixels_do_not_matter() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 6, 6, generator=g)
    seg = torch.randint(0, 3, (2, 6, 6), generator=g)
    seg[:, :2] = IGNORE
    changed = logits.clone()
    changed[:, :, :2] = torch.randn(2, 3, 2, 6, generator=g) * 10
    for lane_known in ([True, True], [False, True]):
        t = _targets(seg, lane_labelled=lane_known)
        a, _ = seg_loss(logits, t, class_weights=(1.0, 2.0, 4.0))
        b, _ = seg_loss(changed, t, class_weights=(1.0, 2.0, 4.0))
        assert float(a) == pytest.approx(float(b), abs=1e-6)
    # control: the same change on labelled pixels does move the loss
    t = _targets(torch.randint(0, 3, (2, 6, 6), generator=g))
    assert float(seg_loss(logits, t)[0]) != pytest.approx(float(seg_loss(changed, t)[0]), abs=1e-4)


def test_seg_loss_samples_without_mask_contribute_nothing() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 5, 5, generator=g, requires_grad=True)
    seg = torch.randint(0, 3, (2, 5, 5), generator=g)
    both, _ = seg_loss(logits, _targets(seg, has_seg=[True, False]))
    first, _ = seg_loss(logits[:1], _targets(seg[:1]))
    assert float(both.detach()) == pytest.approx(float(first.detach()), abs=1e-6)
    both.backward()
    assert logits.grad is not None and float(logits.grad[1].abs().sum()) == 0.0
    # no masks at all: exactly zero, still differentiable
    logits.grad = None
    none, parts = seg_loss(logits, _targets(seg, has_seg=[False, False]))
    assert float(none.detach()) == 0.0 and parts == {"seg_ce": 0.0, "seg_dice": 0.0}
    none.backward()
    assert float(logits.grad.abs().sum()) == 0.0


@pytest.mark.parametrize("dice_weight", [0.0, 1.0])
def test_seg_loss_lane_unknown_merges_drivable_and_lane(dice_weight: float) -> None:
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(1, 3, 4, 4, generator=g)
    seg = torch.randint(0, 2, (1, 4, 4), generator=g)  # background and drivable only
    seg[0, 0, 0] = 1
    # swap drivable and lane logits at drivable pixels: p(bg) and p(drivable) + p(lane) are unchanged
    swapped = logits.clone()
    drv = seg[0] == 1
    swapped[0, 1][drv], swapped[0, 2][drv] = logits[0, 2][drv], logits[0, 1][drv]
    assert not torch.equal(swapped, logits)
    unknown = _targets(seg, lane_labelled=[False])
    a, pa = seg_loss(logits, unknown, class_weights=(1.0, 2.0, 5.0), dice_weight=dice_weight)
    b, pb = seg_loss(swapped, unknown, class_weights=(1.0, 2.0, 5.0), dice_weight=dice_weight)
    assert pa["seg_ce"] == pytest.approx(pb["seg_ce"], abs=1e-6)
    assert float(a) == pytest.approx(float(b), abs=1e-6)
    # with lane labelled, paint on a drivable pixel is wrong: the CE changes
    known = _targets(seg, lane_labelled=[True])
    _, ka = seg_loss(logits, known, dice_weight=dice_weight)
    _, kb = seg_loss(swapped, known, dice_weight=dice_weight)
    assert ka["seg_ce"] != pytest.approx(kb["seg_ce"], abs=1e-4)


def test_seg_loss_lane_unknown_still_scores_lane_pixels_as_lane() -> None:
    # an auto-labelled lane pixel in a lane-unknown sample: p(lane) counts, not p(drivable) + p(lane)
    logits = torch.tensor([0.0, 2.0, 0.0]).view(1, 3, 1, 1)
    swapped = torch.tensor([0.0, 0.0, 2.0]).view(1, 3, 1, 1)
    t = _targets(torch.tensor([[[2]]]), lane_labelled=[False])
    _, pa = seg_loss(logits, t, dice_weight=0.0)
    _, pb = seg_loss(swapped, t, dice_weight=0.0)
    assert pa["seg_ce"] == pytest.approx(-math.log(1.0 / (2.0 + math.exp(2.0))), abs=1e-6)
    assert pb["seg_ce"] == pytest.approx(-math.log(math.exp(2.0) / (2.0 + math.exp(2.0))), abs=1e-6)


# ----------------------------------------------------------------------------------------- det loss


def _det_output(
    b: int, cls_fill: float = -4.0, box_fill: float = 0.0, seg: torch.Tensor | None = None
) -> MultiTaskOutput:
    cls_maps = [torch.full((b, NUM_CLS, h, w), cls_fill) for h, w in SIZES]
    box_maps = [torch.full((b, 4, h, w), box_fill) for h, w in SIZES]
    if seg is None:
        seg = torch.zeros(b, 3, SIZE, SIZE)
    return MultiTaskOutput(seg, cls_maps, box_maps)


def _flat_to_level(a: int) -> tuple[int, int, int]:
    """Anchor index → (level, row, col), in anchor_centers order."""
    for lvl, (h, w) in enumerate(SIZES):
        if a < h * w:
            return lvl, a // w, a % w
        a -= h * w
    raise IndexError(a)


def _perfect_output(gt: torch.Tensor, label: int, logit: float = 12.0) -> MultiTaskOutput:
    """Box maps decoding to exactly ``gt`` at every anchor inside it, confident logits there, low elsewhere."""
    out = _det_output(1, cls_fill=-logit)
    centers, stride = _centers()
    inside = centers_inside(centers, gt[None, None])[0, 0]
    for i in inside.nonzero().flatten().tolist():
        lvl, r, c = _flat_to_level(i)
        x, y = centers[i].tolist()
        dist = torch.tensor([x - gt[0], y - gt[1], gt[2] - x, gt[3] - y], dtype=torch.float64) / float(stride[i])
        out.box_maps[lvl][0, :, r, c] = torch.log(torch.expm1(dist)).float()  # inverse softplus
        out.cls_maps[lvl][0, label, r, c] = logit
    return out


def _requires_grad(out: MultiTaskOutput) -> MultiTaskOutput:
    return MultiTaskOutput(
        out.seg_logits.requires_grad_(True),
        [m.requires_grad_(True) for m in out.cls_maps],
        [m.requires_grad_(True) for m in out.box_maps],
    )


def test_detection_loss_no_box_labels_is_exact_zero_with_zero_grads() -> None:
    out = _requires_grad(_det_output(2, cls_fill=0.3, box_fill=1.0))
    boxes = torch.tensor([[[8.0, 8.0, 40.0, 40.0]], [[0.0, 0.0, 20.0, 30.0]]])
    t = _targets(torch.zeros(2, SIZE, SIZE, dtype=torch.long), boxes=boxes, has_boxes=[False, False])
    loss, parts = DetectionLoss(STRIDES)(out, t)
    assert float(loss.detach()) == 0.0
    assert parts == {"det_box": 0.0, "det_cls": 0.0, "num_fg": 0.0}
    loss.backward()
    for m in [*out.cls_maps, *out.box_maps]:
        assert m.grad is not None and float(m.grad.abs().sum()) == 0.0


def test_detection_loss_samples_without_box_labels_are_left_out() -> None:
    g = torch.Generator().manual_seed(3)
    out = _det_output(2)
    for m in [*out.cls_maps, *out.box_maps]:
        m.copy_(torch.randn(m.shape, generator=g))
    boxes = torch.tensor(
        [[[4.0, 6.0, 40.0, 34.0], [30.0, 30.0, 60.0, 62.0]], [[0.0, 0.0, 64.0, 64.0], [0.0, 0.0, 0.0, 0.0]]]
    )
    labels = torch.tensor([[0, 2], [1, 0]])
    valid = torch.tensor([[True, True], [True, False]])
    seg = torch.zeros(2, SIZE, SIZE, dtype=torch.long)
    loss_fn = DetectionLoss(STRIDES)
    both, p_both = loss_fn(out, _targets(seg, boxes=boxes, labels=labels, box_valid=valid, has_boxes=[True, False]))
    first = MultiTaskOutput(out.seg_logits[:1], [m[:1] for m in out.cls_maps], [m[:1] for m in out.box_maps])
    one, p_one = loss_fn(first, _targets(seg[:1], boxes=boxes[:1], labels=labels[:1], box_valid=valid[:1]))
    assert p_both["num_fg"] == p_one["num_fg"] > 0
    assert float(both) == pytest.approx(float(one), rel=1e-6)


@pytest.mark.parametrize("box_loss", ["giou", "ciou", "iou"])
@pytest.mark.parametrize("cls_loss", ["bce", "qfl"])
def test_detection_loss_perfect_prediction_beats_wrong_one(box_loss: str, cls_loss: str) -> None:
    gt = torch.tensor([6.0, 10.0, 38.0, 30.0])
    t = _targets(torch.zeros(1, SIZE, SIZE, dtype=torch.long), boxes=gt.view(1, 1, 4), labels=torch.tensor([[1]]))
    # topk larger than the number of inside anchors, so every confident anchor is a positive
    loss_fn = DetectionLoss(STRIDES, box_loss=box_loss, cls_loss=cls_loss, topk=64)
    perfect, p_perfect = loss_fn(_perfect_output(gt, 1), t)
    n_inside = int(centers_inside(_centers()[0], gt.view(1, 1, 4)).sum())
    assert p_perfect["num_fg"] == n_inside > 1
    assert p_perfect["det_box"] == pytest.approx(0.0, abs=1e-4)
    assert p_perfect["det_cls"] < 1e-2
    # wrong class and shrunken boxes: worse on both parts
    wrong = _perfect_output(gt, 2)
    for m in wrong.box_maps:
        m.sub_(1.0)
    bad, p_bad = loss_fn(wrong, t)
    assert p_bad["det_box"] > p_perfect["det_box"] + 0.05
    assert p_bad["det_cls"] > p_perfect["det_cls"] + 1.0
    assert float(bad) > float(perfect) + 1.0


def test_detection_loss_ignore_box_anchors_leave_class_loss_alone() -> None:
    g = torch.Generator().manual_seed(4)
    out = _det_output(1)
    for m in [*out.cls_maps, *out.box_maps]:
        m.copy_(torch.randn(m.shape, generator=g))
    # a valid box top-left and an ignore box bottom-right, disjoint
    boxes = torch.tensor([[[2.0, 2.0, 30.0, 30.0], [34.0, 34.0, 62.0, 62.0]]])
    t = _targets(
        torch.zeros(1, SIZE, SIZE, dtype=torch.long),
        boxes=boxes,
        labels=torch.tensor([[0, 1]]),
        box_ignore=torch.tensor([[False, True]]),
    )
    centers, _ = _centers()
    in_ign = centers_inside(centers, boxes[:, 1:])[0, 0]
    in_valid = centers_inside(centers, boxes[:, :1])[0, 0]
    assert int(in_ign.sum()) > 0 and not bool((in_ign & in_valid).any())
    loss_fn = DetectionLoss(STRIDES)
    base, p_base = loss_fn(out, t)

    def perturbed(mask: torch.Tensor) -> MultiTaskOutput:
        new = MultiTaskOutput(out.seg_logits, [m.clone() for m in out.cls_maps], [m.clone() for m in out.box_maps])
        for i in mask.nonzero().flatten().tolist():
            lvl, r, c = _flat_to_level(i)
            new.cls_maps[lvl][0, :, r, c] += 5.0
        return new

    moved, p_moved = loss_fn(perturbed(in_ign), t)
    assert p_moved["det_cls"] == pytest.approx(p_base["det_cls"], abs=1e-6)
    assert float(moved) == pytest.approx(float(base), abs=1e-6)
    # control: the same change on background anchors outside both boxes does change the class loss
    outside = ~in_ign & ~in_valid
    _, p_out = loss_fn(perturbed(outside), t)
    assert p_out["det_cls"] > p_base["det_cls"] + 0.1
    # without the ignore flag the same anchors are ordinary background and count
    t_plain = _targets(t.seg, boxes=boxes, labels=t.labels, box_valid=torch.tensor([[True, False]]))
    assert loss_fn(perturbed(in_ign), t_plain)[1]["det_cls"] > loss_fn(out, t_plain)[1]["det_cls"] + 0.1


def test_detection_loss_assigned_anchor_inside_ignore_box_still_counts() -> None:
    g = torch.Generator().manual_seed(5)
    out = _det_output(1)
    for m in [*out.cls_maps, *out.box_maps]:
        m.copy_(torch.randn(m.shape, generator=g))
    # the ignore box covers the valid box entirely, so the valid box's positives sit inside it
    boxes = torch.tensor([[[2.0, 2.0, 30.0, 30.0], [0.0, 0.0, 40.0, 40.0]]])
    t = _targets(
        torch.zeros(1, SIZE, SIZE, dtype=torch.long),
        boxes=boxes,
        labels=torch.tensor([[0, 1]]),
        box_ignore=torch.tensor([[False, True]]),
    )
    loss_fn = DetectionLoss(STRIDES, topk=64)  # every anchor inside the valid box is a positive
    _, p_base = loss_fn(out, t)
    centers, _ = _centers()
    in_valid = centers_inside(centers, boxes[:, :1])[0, 0]
    assert p_base["num_fg"] == int(in_valid.sum())
    # push a non-target class of the positives up: it must cost (BCE against target 0 on class 2)
    new = MultiTaskOutput(out.seg_logits, [m.clone() for m in out.cls_maps], [m.clone() for m in out.box_maps])
    for i in in_valid.nonzero().flatten().tolist():
        lvl, r, c = _flat_to_level(i)
        new.cls_maps[lvl][0, 2, r, c] += 5.0
    _, p_new = loss_fn(new, t)
    assert p_new["det_cls"] > p_base["det_cls"] + 0.1


@pytest.mark.parametrize("m", [0, 2])
def test_detection_loss_image_without_gt_only_has_class_loss(m: int) -> None:
    out = _requires_grad(_det_output(1, cls_fill=-1.0, box_fill=0.5))
    t = _targets(
        torch.zeros(1, SIZE, SIZE, dtype=torch.long),
        boxes=torch.tensor([[[4.0, 4.0, 30.0, 30.0]] * m]).view(1, m, 4),
        labels=torch.zeros(1, m, dtype=torch.long),
        box_valid=torch.zeros(1, m, dtype=torch.bool),
    )
    loss, parts = DetectionLoss(STRIDES)(out, t)
    assert torch.isfinite(loss)
    assert parts["num_fg"] == 0.0 and parts["det_box"] == 0.0
    # every anchor and class is background, normaliser clamps to 1: sum of BCE(-1, 0) = n * softplus(-1)
    a = sum(h * w for h, w in SIZES)
    assert parts["det_cls"] == pytest.approx(a * NUM_CLS * math.log1p(math.exp(-1.0)), rel=1e-5)
    assert float(loss.detach()) == pytest.approx(parts["det_cls"], rel=1e-6)  # cls_weight 1
    loss.backward()
    assert all(float(bm.grad.abs().sum()) == 0.0 for bm in out.box_maps)
    assert all(torch.isfinite(cm.grad).all() and float(cm.grad.abs().sum()) > 0 for cm in out.cls_maps)


def test_detection_loss_rejects_unknown_kinds() -> None:
    with pytest.raises(ValueError, match="box_loss"):
        DetectionLoss(STRIDES, box_loss="diou")
    with pytest.raises(ValueError, match="cls_loss"):
        DetectionLoss(STRIDES, cls_loss="focal")


def test_multitask_loss_is_weighted_sum() -> None:
    g = torch.Generator().manual_seed(6)
    seg_logits = torch.randn(1, 3, SIZE, SIZE, generator=g)
    gt = torch.tensor([6.0, 10.0, 38.0, 30.0])
    out = _perfect_output(gt, 1, logit=2.0)
    out = MultiTaskOutput(seg_logits, out.cls_maps, out.box_maps)
    seg = torch.randint(0, 3, (1, SIZE, SIZE), generator=g)
    t = _targets(seg, lane_labelled=[False], boxes=gt.view(1, 1, 4), labels=torch.tensor([[1]]))
    det = DetectionLoss(STRIDES)
    total, parts = MultiTaskLoss(
        det, seg_weight=0.3, det_weight=2.0, seg_class_weights=(1.0, 1.0, 3.0), dice_weight=0.5
    )(out, t)
    ls, _ = seg_loss(seg_logits, t, class_weights=(1.0, 1.0, 3.0), dice_weight=0.5)
    ld, _ = det(out, t)
    assert float(total) == pytest.approx(0.3 * float(ls) + 2.0 * float(ld), rel=1e-6)
    assert parts["loss"] == pytest.approx(float(total), rel=1e-6)
    assert parts["seg"] == pytest.approx(float(ls), rel=1e-6) and parts["det"] == pytest.approx(float(ld), rel=1e-6)
    assert {"seg_ce", "seg_dice", "det_box", "det_cls", "num_fg"} <= parts.keys()


def test_candidate_anchors_give_thin_boxes_a_candidate():
    """A 4 px wide box between two stride-8 anchor columns has no centre inside, but one candidate."""
    from perception.train.assign import candidate_anchors

    centers, strides = anchor_centers([(8, 8)], [8])
    centers, strides = torch.from_numpy(centers), torch.from_numpy(strides)
    thin = torch.tensor([[[17.0, 10.0, 21.0, 40.0]]])  # x 17..21 holds column 20 already
    between = torch.tensor([[[13.0, 10.0, 19.0, 40.0]]])  # x 13..19 holds no column centre (12, 20)
    assert not centers_inside(centers, between).any()
    cand = candidate_anchors(centers, between, strides)
    assert set(centers[cand[0, 0]][:, 0].tolist()) == {12.0, 20.0}  # centred between both: both
    assert candidate_anchors(centers, thin, strides).sum() >= centers_inside(centers, thin).sum()
    # boxes wider and taller than the stride: exactly the strict inside test
    big = torch.tensor([[[3.0, 5.0, 50.0, 37.0], [10.0, 10.0, 30.0, 60.0]]])
    assert torch.equal(candidate_anchors(centers, big, strides), centers_inside(centers, big, margin=0.0))
