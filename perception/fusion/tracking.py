"""Multi-object tracking by detection: the ByteTrack tracker and its track management.

The tracker follows ByteTrack (Zhang et al., "ByteTrack: Multi-Object Tracking by Associating Every
Detection Box", ECCV 2022): every detection box is used, the confident ones to find and start tracks and the
weak ones (which are often occluded or blurred objects) only to keep existing tracks alive. Boxes are in
*frame pixels* (x1, y1, x2, y2, x right, y down) and times in seconds throughout.

Differences from the reference implementation, all deliberate:

- The Kalman filter runs in continuous time: frames may arrive at 10 or 25 fps or with gaps (a live camera
  drops frames), so prediction uses the real interval ``dt`` between timestamps and the process noise grows
  with ``dt``; the reference noise levels are those of ByteTrack / DeepSORT at :data:`REF_FPS`.
- The state holds the box width, not its aspect ratio (as BoT-SORT does), so zero-height boxes are fine;
  the noise of x and w scales with the box width, that of y and h with its height.
- Track ids are handed out when a track is confirmed, so tentative tracks that die (single-frame false
  positives) use up no ids: ids are 1, 2, 3, ... in order of confirmation and never reused.
- Lost tracks are removed after ``max_lost_s`` seconds without a match, not after a number of frames.
- Optionally (on by default) a lost track can also be found again by its last matched box (OC-SORT).
- Optionally (on by default) a last, tolerant association for small boxes: IoU is fragile for boxes a few
  pixels wide (a distant car, sign or pedestrian moves by its own width in one frame, and its visible extent
  changes by whole pixels under partial occlusion), so confirmed tracks still unmatched may take a leftover
  detection by the IoU of boxes padded by ``pad_px`` pixels on every side, when the two are each other's best
  padded match (the buffered IoU of C-BIoU, Yang et al., WACV 2023, with a constant buffer in pixels).
- ``class_aware``: a detection only matches a track of the same label.
- Optionally (on by default) duplicate tracks are merged: a detector that boxes one object two ways (a van
  whole and its lower body, boxes whose IoU is just below the NMS threshold) starts two tracks, and when
  only one of the boxes comes in a frame the two tracks take turns on the object, each turn an id switch.
  A confirmed track unmatched in a frame whose box lies mostly inside a matched track's box, standing on
  the same ground line and moving with it, is the same object: the two become one track with the older id.

The pieces: ``association.py`` (the assignment solvers the matching steps use), ``motion_model.py`` (the
Kalman filter of one box) and this module, the track management (ByteTrack's matching cascade, track
birth, confirmation, loss and removal, duplicate merging).
"""

from __future__ import annotations

import math

import numpy as np

from perception.frames import Detections, Track
from perception.fusion.association import max_weight_matching
from perception.fusion.motion_model import BoxKalman, state_boxes
from perception.postprocess.nms import box_iou

DUPLICATE_MIN_IOS = 0.9
"""Duplicate tracks: the smaller box lies at least this fraction inside the larger (intersection over smaller)."""
DUPLICATE_MAX_BOTTOM_FRAC = 0.1
"""... their bottom edges (ground contact) differ by at most this fraction of the taller box's height: two
objects at the same distance cannot hide one another, while an occluded object's visible box ends above the
occluder's bottom edge."""
DUPLICATE_MIN_HEIGHT_PX = 24.0
"""... and the smaller box is at least this tall: distant objects a few pixels high in neighbouring lanes
overlap in the image and stand within a pixel of the same line, whatever their distance apart."""
DUPLICATE_MAX_REL_SPEED = 1.0
"""... and their velocities differ by at most this many widths of the wider box per second (two pedestrians
crossing each other, briefly one inside the other, move apart at several widths a second)."""


class _Track:
    """Mutable per-track state (internal)."""

    __slots__ = (
        "kf",
        "track_id",
        "label",
        "label_votes",
        "score",
        "hits",
        "age",
        "missed",
        "lost_s",
        "last_box",
        "row",
    )

    def __init__(self, box: np.ndarray, score: float, label: int):
        self.kf = BoxKalman(box)
        self.last_box = np.asarray(box, np.float64).copy()
        self.track_id = 0  # 0 while tentative
        self.label = label
        self.label_votes = {label: score}
        self.score = score
        self.hits = 1
        self.age = 1
        self.missed = 0  # frames since the last match
        self.lost_s = 0.0  # seconds since the last match
        self.row = -1  # index in the tracker's per-frame box arrays

    @property
    def confirmed(self) -> bool:
        return self.track_id > 0

    def record_match(self, box: np.ndarray, score: float, label: int) -> None:
        """Bookkeeping of a match (the filter is updated by the caller, batched over tracks)."""
        self.last_box = np.asarray(box, np.float64).copy()
        self.score = score
        self.hits += 1
        self.missed = 0
        self.lost_s = 0.0
        self.label_votes[label] = self.label_votes.get(label, 0.0) + score
        # Class-agnostic mode: the label with most score so far (class-aware tracks only see one label).
        self.label = max(self.label_votes.items(), key=lambda kv: (kv[1], -kv[0]))[0]

    def to_track(self) -> Track:
        box = self.kf.box_xyxy()
        return Track(
            track_id=self.track_id,
            box_xyxy=box.astype(np.float32),
            score=float(self.score) if self.missed == 0 else 0.0,
            label=int(self.label),
            hits=self.hits,
            age_frames=self.age,
            frames_since_update=self.missed,
            velocity_pxps=self.kf.velocity_pxps().astype(np.float32),
        )


class ByteTracker:
    """ByteTrack multi-object tracker (Zhang et al. 2022) with a time-aware Kalman filter.

    Per call of :meth:`update` (one frame):

    1. Rows with a non-finite box or score are dropped (a broken detector output must not stop the live
       loop). Detections split into high (``score >= high_score``) and low
       (``low_score <= score < high_score``); lower scores are ignored.
    2. Every track is predicted to the frame's timestamp (``dt`` from the previous call). Tracks unmatched
       for more than ``max_lost_s`` seconds are removed.
    3. High detections vs confirmed tracks (tracked and lost): IoU of the predicted box, pairs allowed when
       IoU >= ``match_iou`` (and the labels agree when ``class_aware``), maximum total similarity
       (IoU x detection score when ``fuse_score``, as ByteTrack does; else IoU).
    4. Low detections vs the confirmed tracks still unmatched that were matched in the previous frame,
       IoU >= ``low_match_iou``, similarity IoU.
    5. With ``recover_last_box``: remaining high detections vs the confirmed tracks still unmatched, by the
       IoU of the track's last matched detection box instead of its prediction (gate ``match_iou``): the
       observation-centric recovery of OC-SORT (Cao et al., CVPR 2023), for tracks whose prediction drifted
       while lost.
    6. With ``pad_px > 0``: remaining high detections vs the confirmed tracks still unmatched, by the padded
       IoU: every box grown by ``pad_px`` on each side, the larger of the values for the track's predicted
       and last matched box (gate ``match_iou``). A pair is allowed only when the track has no better padded
       match among all of the frame's detections (high and low, matched or not) and the detection none among
       all tracks (confirmed, lost, tentative), whatever their labels, so a track whose own detection is
       missing does not take its neighbour's in a cluster of small boxes. For boxes tens of pixels wide the
       padding changes little; for boxes a few pixels wide it absorbs whole-pixel jumps of the box (fast
       motion across the image, the visible extent shrinking or growing under occlusion) that drive their
       plain IoU to zero.
    6b. With ``merge_duplicates``: a confirmed track still unmatched that duplicates a matched one is merged
       into it: same label, box at least ``DUPLICATE_MIN_IOS`` inside the other's and at least
       ``DUPLICATE_MIN_HEIGHT_PX`` tall, bottom edges within ``DUPLICATE_MAX_BOTTOM_FRAC`` of the height,
       velocities within ``DUPLICATE_MAX_REL_SPEED`` widths per second. The matched track carries on, under
       the older of the two ids. Confirmed tracks unmatched after this
       become lost (size rates zeroed, coasting on the prediction).
    7. Remaining high detections vs tentative tracks (IoU >= ``tentative_match_iou``); a tentative track is
       confirmed (and gets the next id) at ``min_hits`` matches, and removed when a frame leaves it unmatched.
    8. Remaining high detections with ``score >= new_track_score`` start tentative tracks; in the first frame
       (of the run or of a new segment) they are confirmed at once.

    Timestamps: ``dt`` is the difference to the previous call's timestamp. A repeated timestamp or one that
    goes back by at most ``max_backward_s`` (clock jitter) is treated as a step of ``min_dt_s``; a larger
    jump back (a restarted or rewound source) starts a new segment: all tracks are dropped, ids keep
    counting up. A non-finite timestamp counts as a step of ``min_dt_s``.

    Args:
        high_score: score from which a detection is "high" (may match any confirmed track, start tracks).
        low_score: score from which a detection is used at all ("low" below ``high_score``).
        new_track_score: score a high detection needs to start a track.
        match_iou: IoU gate of the first association (high detections).
        low_match_iou: IoU gate of the second association (low detections).
        tentative_match_iou: IoU gate between high detections and tentative tracks.
        max_lost_s: seconds a confirmed track may stay unmatched before it is removed.
        min_hits: matches (the first detection included) that confirm a tentative track.
        class_aware: only match detections and tracks of the same label.
        fuse_score: rank first-stage pairs by IoU x score instead of IoU.
        report_lost: also report confirmed tracks that coast on their prediction this frame.
        recover_last_box: add stage 5 (match unmatched confirmed tracks by their last matched box).
        pad_px: padding (frame pixels, each side) of stage 6, the padded-IoU association of small boxes;
            0 turns the stage off.
        merge_duplicates: add stage 6b (merge an unmatched confirmed track into a matched one it duplicates).
        min_dt_s: step (s) used for a repeated or slightly earlier timestamp.
        max_backward_s: largest backward timestamp jump (s) treated as jitter rather than a new segment.
    """

    def __init__(
        self,
        high_score: float = 0.5,
        low_score: float = 0.1,
        new_track_score: float = 0.6,
        match_iou: float = 0.2,
        low_match_iou: float = 0.5,
        max_lost_s: float = 1.0,
        min_hits: int = 2,
        class_aware: bool = True,
        *,
        tentative_match_iou: float = 0.3,
        fuse_score: bool = True,
        report_lost: bool = False,
        recover_last_box: bool = True,
        pad_px: float = 2.0,
        merge_duplicates: bool = True,
        min_dt_s: float = 1e-3,
        max_backward_s: float = 0.1,
    ):
        if not 0 <= low_score <= high_score <= new_track_score:
            raise ValueError(
                f"need 0 <= low_score <= high_score <= new_track_score, got {low_score}, {high_score}, "
                f"{new_track_score}"
            )
        for name, value in (
            ("match_iou", match_iou),
            ("low_match_iou", low_match_iou),
            ("tentative_match_iou", tentative_match_iou),
        ):
            if not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        if max_lost_s < 0 or min_hits < 1 or min_dt_s <= 0 or max_backward_s < 0 or not pad_px >= 0:
            raise ValueError(
                f"need max_lost_s >= 0, min_hits >= 1, min_dt_s > 0, max_backward_s >= 0, pad_px >= 0; got "
                f"{max_lost_s}, {min_hits}, {min_dt_s}, {max_backward_s}, {pad_px}"
            )
        self.high_score = float(high_score)
        self.low_score = float(low_score)
        self.new_track_score = float(new_track_score)
        self.match_iou = float(match_iou)
        self.low_match_iou = float(low_match_iou)
        self.tentative_match_iou = float(tentative_match_iou)
        self.max_lost_s = float(max_lost_s)
        self.min_hits = int(min_hits)
        self.class_aware = bool(class_aware)
        self.fuse_score = bool(fuse_score)
        self.report_lost = bool(report_lost)
        self.recover_last_box = bool(recover_last_box)
        self.pad_px = float(pad_px)
        self.merge_duplicates = bool(merge_duplicates)
        self.min_dt_s = float(min_dt_s)
        self.max_backward_s = float(max_backward_s)
        self._next_id = 1
        self.reset()

    def reset(self) -> None:
        """Forget all tracks and the clock. Ids keep counting up, so an id is never reused within a run."""
        self._tracks: list[_Track] = []
        self._last_t: float | None = None
        self.dropped_rows = 0  # detection rows dropped for a non-finite box or score, since the last reset

    def _step_time(self, timestamp_s: float) -> tuple[float, bool]:
        """(dt in seconds to predict over, whether this frame starts a segment)."""
        t = float(timestamp_s)
        if self._last_t is None:
            self._last_t = t if math.isfinite(t) else 0.0
            return 0.0, True
        if not math.isfinite(t):
            self._last_t += self.min_dt_s
            return self.min_dt_s, False
        dt = t - self._last_t
        if dt < -self.max_backward_s:
            self._tracks = []
            self._last_t = t
            return 0.0, True
        self._last_t = t
        return (dt, False) if dt > 0 else (self.min_dt_s, False)

    def update(self, detections: Detections, timestamp_s: float) -> list[Track]:
        """Advance the tracks by one frame.

        Args:
            detections: boxes in frame pixels, their scores in [0, 1] and labels (``Detections``); rows with a
                non-finite box or score are dropped (counted in ``dropped_rows``).
            timestamp_s: the frame's time in seconds (capture time for a camera, presentation time for a
                file); see the class docstring for repeated, backward and non-finite timestamps.

        Returns:
            The confirmed tracks matched in this frame (``frames_since_update == 0``), plus, with
            ``report_lost``, the confirmed tracks coasting on their prediction; sorted by ``track_id``. Boxes
            are the Kalman-filtered boxes in frame pixels, velocities in frame pixels per second.
        """
        boxes = np.asarray(detections.boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(detections.scores, dtype=np.float64).reshape(-1)
        labels = np.asarray(detections.labels).reshape(-1)
        finite = np.isfinite(boxes).all(axis=1) & np.isfinite(scores)
        if not finite.all():
            self.dropped_rows += int((~finite).sum())
            boxes, scores, labels = boxes[finite], scores[finite], labels[finite]

        dt, first_frame = self._step_time(timestamp_s)
        BoxKalman.predict_many([t.kf for t in self._tracks], dt)
        for trk in self._tracks:
            trk.age += 1
            trk.lost_s += dt
        # Tolerance: ten steps of 0.1 s must not add up to "more than 1 s" through rounding.
        self._tracks = [t for t in self._tracks if t.lost_s <= self.max_lost_s + 1e-6]

        high = np.flatnonzero(scores >= self.high_score)
        low = np.flatnonzero((scores >= self.low_score) & (scores < self.high_score))
        # Every track's predicted box and last matched box, kept up to date as tracks are matched.
        for k, trk in enumerate(self._tracks):
            trk.row = k
        if self._tracks:
            pred_all = state_boxes(np.stack([t.kf.mean for t in self._tracks]))
            last_all = np.stack([t.last_box for t in self._tracks])
        else:
            pred_all, last_all = np.zeros((0, 4)), np.zeros((0, 4))
        confirmed = [t for t in self._tracks if t.confirmed]
        tentative = [t for t in self._tracks if not t.confirmed]
        matched: set[int] = set()  # id() of tracks matched this frame

        def assign(tracks: list[_Track], det_idx: np.ndarray, gate: float, fuse: bool, by: str = "pred") -> np.ndarray:
            """Match ``tracks`` to detections ``det_idx`` by the IoU of the predicted box (``by="pred"``), of the
            last matched box (``"last"``) or the padded IoU of stage 6 (``"padded"``); update the matched; return
            the unmatched det_idx."""
            if not tracks or det_idx.size == 0:
                return det_idx
            idx = np.fromiter((t.row for t in tracks), np.intp, len(tracks))
            if by == "padded":
                # All tracks vs all detections in use (det_idx among them): mutual best means no better padded
                # match for the track among all those detections, nor for the detection among all tracks.
                in_use = np.flatnonzero(scores >= self.low_score)
                every = self._padded_iou(pred_all, last_all, boxes[in_use])
                cols = np.searchsorted(in_use, det_idx)
                iou = every[np.ix_(idx, cols)]
                valid = (iou > 0) & (iou >= gate) & (iou >= every[idx].max(axis=1)[:, None])
                valid &= iou >= every[:, cols].max(axis=0)[None, :]
            else:
                iou = box_iou(last_all[idx] if by == "last" else pred_all[idx], boxes[det_idx])
                valid = (iou >= gate) & (iou > 0)
            if self.class_aware:
                valid &= np.array([t.label for t in tracks])[:, None] == labels[det_idx][None, :]
            # A score of 0 would make the pair worthless to the solver; keep it barely positive.
            sim = iou * np.maximum(scores[det_idx], 1e-6)[None, :] if fuse else iou
            rows, cols = max_weight_matching(sim, valid)
            BoxKalman.update_many([tracks[r].kf for r in rows.tolist()], boxes[det_idx[cols]])
            if rows.size:
                pred_all[idx[rows]] = state_boxes(np.stack([tracks[r].kf.mean for r in rows.tolist()]))
                last_all[idx[rows]] = boxes[det_idx[cols]]
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
                d = det_idx[c]
                tracks[r].record_match(boxes[d], float(scores[d]), int(labels[d]))
                matched.add(id(tracks[r]))
            keep = np.ones(det_idx.size, bool)
            keep[cols] = False
            return det_idx[keep]

        # Step 3: high detections vs all confirmed tracks (tracked and recently lost).
        high_left = assign(confirmed, high, self.match_iou, self.fuse_score)
        # Step 4: low detections vs confirmed tracks that were tracked in the previous frame.
        tracked_last = [t for t in confirmed if id(t) not in matched and t.missed == 0]
        assign(tracked_last, low, self.low_match_iou, False)
        if self.recover_last_box:
            # Step 5 (OC-SORT's observation-centric recovery): a track whose prediction drifted while it was
            # lost (or that was fed a wrong box) is often still where it was last seen.
            unmatched = [t for t in confirmed if id(t) not in matched]
            high_left = assign(unmatched, high_left, self.match_iou, self.fuse_score, by="last")
        if self.pad_px > 0:
            # Step 6: small boxes, whose plain IoU a jump of a pixel or two breaks.
            unmatched = [t for t in confirmed if id(t) not in matched]
            high_left = assign(unmatched, high_left, self.match_iou, self.fuse_score, by="padded")
        merged = self._merge_duplicates(confirmed, matched, pred_all) if self.merge_duplicates else set()
        # Step 7: remaining high detections vs tentative tracks.
        high_left = assign(tentative, high_left, self.tentative_match_iou, self.fuse_score)

        survivors: list[_Track] = []
        for trk in self._tracks:
            if id(trk) in merged:
                continue
            if id(trk) in matched:
                if not trk.confirmed and trk.hits >= self.min_hits:
                    trk.track_id = self._take_id()
                survivors.append(trk)
            elif trk.confirmed:
                if trk.missed == 0:
                    trk.kf.stop_size_change()  # tracked -> lost
                trk.missed += 1
                survivors.append(trk)
            # an unmatched tentative track is dropped (ByteTrack): it was most likely a false positive
        # Step 8: new tracks from confident leftovers.
        for d in high_left.tolist():
            if scores[d] < self.new_track_score:
                continue
            trk = _Track(boxes[d], float(scores[d]), int(labels[d]))
            if first_frame or self.min_hits <= 1:
                trk.track_id = self._take_id()
            survivors.append(trk)
        self._tracks = survivors

        out = [t.to_track() for t in self._tracks if t.confirmed and (t.missed == 0 or self.report_lost)]
        out.sort(key=lambda tr: tr.track_id)
        return out

    @staticmethod
    def _merge_duplicates(confirmed: list[_Track], matched: set[int], boxes: np.ndarray) -> set[int]:
        """Stage 6b: merge unmatched confirmed tracks into the matched tracks they duplicate; ``boxes`` [T, 4]
        are every track's current box (matched: updated, unmatched: predicted). Returns the id() of the
        tracks merged away. Pairs are taken most-overlapping first, each track in one pair at most."""
        hit = [t for t in confirmed if id(t) in matched]
        miss = [t for t in confirmed if id(t) not in matched]
        if not hit or not miss:
            return set()
        a = boxes[[t.row for t in hit]][:, None, :]  # [H, 1, 4]
        b = boxes[[t.row for t in miss]][None, :, :]  # [1, U, 4]
        wh = np.clip(np.minimum(a[..., 2:], b[..., 2:]) - np.maximum(a[..., :2], b[..., :2]), 0.0, None)
        area_a = np.prod(np.clip(a[..., 2:] - a[..., :2], 0.0, None), axis=-1)
        area_b = np.prod(np.clip(b[..., 2:] - b[..., :2], 0.0, None), axis=-1)
        ios = wh[..., 0] * wh[..., 1] / np.maximum(np.minimum(area_a, area_b), 1e-9)  # [H, U]
        height = np.maximum(a[..., 3] - a[..., 1], b[..., 3] - b[..., 1])
        width = np.maximum(a[..., 2] - a[..., 0], b[..., 2] - b[..., 0])
        va = np.stack([t.kf.velocity_pxps() for t in hit])[:, None, :]
        vb = np.stack([t.kf.velocity_pxps() for t in miss])[None, :, :]
        same_label = np.array([t.label for t in hit])[:, None] == np.array([t.label for t in miss])[None, :]
        dup = (
            same_label
            & (ios >= DUPLICATE_MIN_IOS)
            & (np.minimum(a[..., 3] - a[..., 1], b[..., 3] - b[..., 1]) >= DUPLICATE_MIN_HEIGHT_PX)
            & (np.abs(a[..., 3] - b[..., 3]) <= DUPLICATE_MAX_BOTTOM_FRAC * height)
            & (np.linalg.norm(va - vb, axis=-1) <= DUPLICATE_MAX_REL_SPEED * width)
        )
        merged: set[int] = set()
        used_hit: set[int] = set()
        for i, j in sorted(zip(*np.nonzero(dup), strict=True), key=lambda ij: -ios[ij]):
            keep, gone = hit[i], miss[j]
            if i in used_hit or id(gone) in merged:
                continue
            used_hit.add(i)
            merged.add(id(gone))
            # The older id carries on, so the object keeps the identity it had before the duplicate appeared.
            keep.track_id = min(keep.track_id, gone.track_id)
            keep.hits = max(keep.hits, gone.hits)
            keep.age = max(keep.age, gone.age)
            for label, votes in gone.label_votes.items():
                keep.label_votes[label] = keep.label_votes.get(label, 0.0) + votes
        return merged

    def _padded_iou(self, pred: np.ndarray, last: np.ndarray, det_boxes: np.ndarray) -> np.ndarray:
        """float [T, D]: padded IoU of tracks, given by their predicted and last matched boxes [T, 4], with
        detection boxes [D, 4]: every box grown by ``pad_px`` on each side, per track the larger of the values
        for its two boxes."""
        if pred.shape[0] == 0 or det_boxes.shape[0] == 0:
            return np.zeros((pred.shape[0], det_boxes.shape[0]))
        pad = np.array([-self.pad_px, -self.pad_px, self.pad_px, self.pad_px])
        both = box_iou(np.concatenate([pred, last]) + pad, det_boxes + pad)
        return np.maximum(both[: pred.shape[0]], both[pred.shape[0] :])

    def _take_id(self) -> int:
        tid = self._next_id
        self._next_id += 1
        return tid

    def live_ids(self) -> set[int]:
        """Ids of the confirmed tracks still held (tracked or lost): state keyed by id elsewhere stays valid."""
        return {t.track_id for t in self._tracks if t.confirmed}

    @property
    def num_tracks(self) -> int:
        """Tracks held now: confirmed (tracked or lost) and tentative."""
        return len(self._tracks)
