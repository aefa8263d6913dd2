"""Training and validation augmentation that keeps image, segmentation mask and boxes consistent.

``build_augment(mode, size, **options)`` returns an ``Augment``; ``augment(sample, rng_seed)`` returns a
new ``Sample`` in network-input pixels of ``size`` (H, W). Nothing of the input sample is modified.

Geometry. The output is the runtime letterbox (``perception.preprocess``: aspect kept, centred, grey
114 bars) followed, in train mode, by a random horizontal flip, affine jitter (scale, translation, small
rotation; aspect kept) and a mild perspective warp. All of it is one 3x3 matrix built from the
``Letterbox`` value (never a recomputed scale) and applied in ONE resampling of the source:

* image: bilinear; uncovered areas get the pad grey. With no geometric jitter drawn, the image is the
  runtime ``Preprocessor`` output itself, bit for bit (val mode always).
* mask: nearest-neighbour (``INTER_NEAREST_EXACT`` for the plain letterbox), so no class id is
  invented; letterbox bars and uncovered areas get ``IGNORE`` (255): they are neither road nor
  background. A single resampling keeps each mask edge within half a pixel of the mapped geometry.
* boxes (float32 [N, 4] x1, y1, x2, y2 pixels, x2/y2 exclusive edges, as in ``perception.data.boxes``):
  the four corners go through the same matrix; the new box is their axis-aligned hull (exact for flip,
  scale and translation; for rotation and perspective it encloses the object, possibly loosely).
  Labels and ignore flags stay row-aligned with the boxes.

Box rules (train mode), with visibility = area inside the image / area of the whole transformed box:

* no area inside the image, or narrower or lower than ``min_box_size`` px after clipping: dropped
  (counted in ``meta["augment"]["boxes_dropped"]``);
* ``0 < visibility < min_visibility``: KEPT, clipped, and flagged ``ignore=True`` (counted in
  ``boxes_ignored``). The object is still partly visible in the image and the mask; dropping its box
  would make it a false negative, while an ignored box is neither rewarded nor penalised;
* otherwise clipped to the image, keeping the original ignore flag.

Validation mode only letterboxes and never drops or flags a box (evaluation must see every label).

Bonnet (train mode, ``hood_p``, before the geometry, in the input sample's pixels): the ego car's bonnet
painted over the bottom of the frame (``Bonnet``): a paint colour, a top-lit gradient and a blurred mirror
image of the scene above it, as real bonnets reflect; its pixels become background in the mask, and boxes
it covers are cut at its edge (dropped, or ignored when less than half stays in view). Dashcams often see
their bonnet; without this only the synthetic frames show one, and a model calls a grey bonnet road.

Photometric (train mode, image only, after the geometry): brightness/contrast, gamma, hue/saturation,
rare weather (fog, rain, shadow, sun flare), night (low light, colour cast, glare; ``NightDrive``), rain,
blur or motion blur, Gaussian or ISO noise (albumentations,
in RGB order, which its colour transforms assume), then JPEG re-compression (in BGR order, which
OpenCV's encoder assumes). Letterbox bars and uncovered areas are reset to the pad grey afterwards, so
they are exactly 114 as at runtime.

Partial labels stay partial: ``seg=None`` or ``boxes=None`` come out ``None``; an empty box array stays
empty. ``lane_labelled`` and ``meta`` are kept; ``meta["augment"]`` records ``mode``, ``seed`` (the seed
used: replaying it reproduces the sample), ``applied`` (names of the transforms that fired), ``matrix``
(float64 [3, 3], input-sample pixels → output pixels, continuous coordinates where pixel i spans
[i, i + 1): use it for any geometry kept in ``meta``, e.g. lane polylines), ``boxes_dropped`` and
``boxes_ignored``.

Randomness: one seed drives everything through one shared generator. (In albumentations 2.0.8
``Compose(seed=s)`` and ``Compose.set_random_seed(s)`` give every transform its own generator seeded
with the same ``s``, so two transforms with p=0.5 would always fire together; this module shares one
stream through ``set_random_state`` instead.) ``rng_seed=None`` draws a fresh seed from the OS, so
DataLoader workers never repeat each other. An ``Augment`` reseeds its transforms on each call: it is not
thread-safe; use one per worker process or thread.

This is the only runtime-package module that imports albumentations, and only training imports it.
"""

from __future__ import annotations

import math
import os
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

# albumentations 2.x asks PyPI for a newer version on import (seconds when offline, in every worker
# process); keep an explicit user setting, otherwise switch the check off.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402

from perception.data.boxes import sanitize_boxes  # noqa: E402
from perception.data.sample import IGNORE, Sample  # noqa: E402
from perception.frames import Letterbox  # noqa: E402
from perception.preprocess import Preprocessor  # noqa: E402

MODES = ("train", "val")
PAD_VALUE = 114  # letterbox grey, as in the model contract


class NightDrive(A.ImageOnlyTransform):
    """A daylight frame made a night frame (RGB uint8 in and out): exposure down and gamma up (the road
    falls into the dark faster than the lit parts), a night colour cast (sodium orange or cold LED), and
    headlight / street-light glare: a few bright blooms with a horizontal streak in the band where
    oncoming lights appear (35-70 % of the height).

    Args:
        gain: exposure factor range (0.15..0.4).
        gamma: gamma range applied before the gain (1.2..1.9, > 1 darkens the shadows most).
        glares: number of glare sources, inclusive range (0..4).
        glare_radius: bloom radius as a fraction of the width (0.01..0.05).
    """

    def __init__(
        self,
        gain: tuple[float, float] = (0.15, 0.4),
        gamma: tuple[float, float] = (1.2, 1.9),
        glares: tuple[int, int] = (0, 4),
        glare_radius: tuple[float, float] = (0.01, 0.05),
        p: float = 0.5,
    ):
        super().__init__(p=p)
        self.gain, self.gamma, self.glares, self.glare_radius = gain, gamma, glares, glare_radius

    def get_params_dependent_on_data(self, params, data):
        rng = self.random_generator
        h, w = params["shape"][:2]
        n = int(rng.integers(self.glares[0], self.glares[1] + 1))
        lights = [
            (
                float(rng.uniform(0, w)),
                float(rng.uniform(0.35, 0.7) * h),
                float(rng.uniform(*self.glare_radius) * w),
                float(rng.uniform(0.5, 1.0)),
            )
            for _ in range(n)
        ]
        cast = (1.0, 0.8, 0.55) if rng.random() < 0.5 else (0.8, 0.9, 1.05)  # RGB: sodium or LED
        return {
            "gain": float(rng.uniform(*self.gain)),
            "gamma": float(rng.uniform(*self.gamma)),
            "cast": cast,
            "lights": lights,
        }

    def apply(self, img, gain=0.3, gamma=1.5, cast=(1.0, 1.0, 1.0), lights=(), **params):
        f = (img.astype(np.float32) / 255.0) ** gamma * gain * np.array(cast, np.float32)
        if lights:
            h, w = f.shape[:2]
            glow = np.zeros((h, w), np.float32)
            for x, y, r, strength in lights:
                cv2.circle(glow, (round(x), round(y)), max(1, round(r)), strength, -1, cv2.LINE_AA)
                cv2.line(glow, (round(x - 4 * r), round(y)), (round(x + 4 * r), round(y)), strength * 0.5, 1)
            glow = cv2.GaussianBlur(glow, (0, 0), max(1.0, w / 150))
            f = f + glow[..., None] * np.array((1.0, 0.97, 0.9), np.float32)
        return np.clip(f * 255.0 + 0.5, 0, 255).astype(np.uint8)


# Paint colours (BGR) a bonnet is drawn in: black, dark grey, silver, white, red, dark blue, beige.
BONNET_PAINTS = (
    (20, 20, 22),
    (70, 70, 72),
    (150, 150, 155),
    (225, 225, 228),
    (40, 40, 160),
    (90, 45, 25),
    (150, 175, 190),
)


class Bonnet:
    """The ego car's bonnet over the bottom ``height`` (fraction, drawn from a range) of a frame.

    The outline is ``perception.data.synth.effects.hood_mask`` (the synthetic world's bonnet), so the two
    teach and measure the same shape.
    """

    def __init__(self, height: tuple[float, float] = (0.06, 0.16)):
        self.height = _check_range("bonnet height", height, 0.0)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        from perception.data.synth.effects import hood_mask

        h, w = sample.image.shape[:2]
        mask = hood_mask(h, w, float(rng.uniform(*self.height)))
        rows = np.flatnonzero(mask.any(axis=1))
        if rows.size == 0:
            return sample
        top = int(rows[0])
        image = sample.image.copy()
        paint = np.array(BONNET_PAINTS[int(rng.integers(len(BONNET_PAINTS)))], np.float32)
        paint = np.clip(paint * rng.uniform(0.8, 1.2), 0, 255)
        depth = h - top
        # Lit from above: brightest at the bonnet's top edge, darker towards the windscreen.
        shade = np.linspace(1.15, 0.7, depth, dtype=np.float32)[:, None, None]
        # The scene above, mirrored at the bonnet's edge and blurred: what a glossy bonnet reflects.
        above = image[max(0, top - depth) : top][::-1].astype(np.float32)
        mirror = np.full((depth, w, 3), paint, np.float32)
        mirror[: len(above)] = above
        mirror = cv2.GaussianBlur(mirror, (0, 0), max(1.0, w / 150))
        gloss = float(rng.uniform(0.1, 0.45))
        bonnet = np.clip((1 - gloss) * paint * shade + gloss * mirror, 0, 255)
        region = mask[top:]
        image[top:][region] = bonnet[region].astype(np.uint8)
        seg = None
        if sample.seg is not None:
            seg = sample.seg.copy()
            seg[mask & (seg != IGNORE)] = 0  # background: never road
        boxes, labels, ignore = sample.boxes, sample.labels, sample.ignore
        if boxes is not None and len(boxes):
            boxes, labels, ignore = _cut_by_bonnet(boxes, labels, ignore, mask)
        return Sample(
            image=image,
            name=sample.name,
            seg=seg,
            lane_labelled=sample.lane_labelled,
            boxes=boxes,
            labels=labels,
            ignore=ignore,
            meta=sample.meta,
        )


def _cut_by_bonnet(
    boxes: np.ndarray, labels: np.ndarray, ignore: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (xyxy, exclusive x2/y2) behind the bonnet ``mask``: cut at the bonnet's highest row within each
    box's columns; dropped when nothing stays above it, ignored when less than half does."""
    h, w = mask.shape
    top_per_col = np.where(mask.any(axis=0), mask.argmax(axis=0), h)
    out_boxes, keep = boxes.copy(), np.ones(len(boxes), bool)
    out_ignore = ignore.copy()
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        c1 = int(np.clip(np.floor(x1), 0, w - 1))
        c2 = int(np.clip(np.ceil(x2), c1 + 1, w))
        edge = float(top_per_col[c1:c2].min())
        if y2 <= edge:
            continue
        if y1 >= edge:
            keep[i] = False
            continue
        out_boxes[i, 3] = edge
        if (edge - y1) < 0.5 * (y2 - y1):
            out_ignore[i] = True
    return out_boxes[keep], labels[keep], out_ignore[keep]


def _check_p(name: str, p: float) -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
    return float(p)


def _check_range(name: str, r: Sequence[float], lowest: float | None = None) -> tuple[float, float]:
    if len(r) != 2 or r[0] > r[1] or (lowest is not None and r[0] < lowest):
        bound = f" and low >= {lowest}" if lowest is not None else ""
        raise ValueError(f"{name} must be a (low, high) pair with low <= high{bound}, got {tuple(r)!r}")
    return (float(r[0]), float(r[1]))


@dataclass(frozen=True)
class GeometricJitter:
    """Random geometry in output pixels, drawn per sample and returned as one 3x3 matrix.

    Attributes:
        hflip_p: probability of a horizontal flip.
        affine_p: probability of the affine jitter below (drawn as one transform about the image centre).
        scale: (low, high) zoom factor, same on both axes (> 1 zooms in, < 1 zooms out).
        translate: (low, high) shift as a fraction of the output width (x) and height (y), drawn per axis.
        rotate: (low, high) rotation in degrees (positive: counter-clockwise on screen).
        perspective_p: probability of a perspective warp.
        perspective_scale: (low, high) inward shift of each corner as a fraction of the size; the warped
            quadrilateral is stretched back to the full image (a slight zoom-in with a tilt).
    """

    hflip_p: float = 0.5
    affine_p: float = 0.7
    scale: tuple[float, float] = (0.75, 1.25)
    translate: tuple[float, float] = (-0.1, 0.1)
    rotate: tuple[float, float] = (-5.0, 5.0)
    perspective_p: float = 0.1
    perspective_scale: tuple[float, float] = (0.02, 0.05)

    def __post_init__(self) -> None:
        for name in ("hflip_p", "affine_p", "perspective_p"):
            _check_p(name, getattr(self, name))
        _check_range("scale", self.scale, lowest=1e-3)
        _check_range("translate", self.translate)
        _check_range("rotate", self.rotate)
        lo, hi = _check_range("perspective_scale", self.perspective_scale, lowest=0.0)
        if hi >= 0.5:
            raise ValueError(f"perspective_scale must stay below 0.5, got {self.perspective_scale!r}")

    def sample(self, rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
        """Draw one geometry for an output of ``size`` (H, W).

        Returns (float64 [3, 3] matrix on continuous output-pixel coordinates, names of the parts drawn).
        """
        height, width = size
        m = np.eye(3)
        applied: list[str] = []
        if self.hflip_p and rng.random() < self.hflip_p:
            m = np.array([[-1.0, 0.0, width], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) @ m
            applied.append("HorizontalFlip")
        if self.affine_p and rng.random() < self.affine_p:
            s = rng.uniform(*self.scale)
            angle = math.radians(rng.uniform(*self.rotate))
            tx, ty = rng.uniform(*self.translate) * width, rng.uniform(*self.translate) * height
            cx, cy = width / 2, height / 2
            c, si = s * math.cos(angle), s * math.sin(angle)
            # about the centre: p' = R S (p - c) + c + t; y points down, so +angle turns counter-clockwise.
            a = np.array([[c, si, 0.0], [-si, c, 0.0], [0.0, 0.0, 1.0]])
            a[:2, 2] = (cx + tx, cy + ty) - a[:2, :2] @ (cx, cy)
            m = a @ m
            applied.append("Affine")
        if self.perspective_p and rng.random() < self.perspective_p:
            d = rng.uniform(*self.perspective_scale, size=(4, 2)) * (width, height)
            quad = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)
            quad += d * ((1, 1), (-1, 1), (-1, -1), (1, -1))  # each corner moves inwards
            rect = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)
            m = _homography(quad, rect) @ m
            applied.append("Perspective")
        return m, applied


class Augment:
    """Sample (any size) → new Sample letterboxed to ``size``, with optional random augmentation.

    Prefer ``build_augment``; construct directly to plug in other albumentations image-only transforms.

    Args:
        size: (H, W) of the output, the network input size.
        mode: "train" (geometry, photometric, box rules) or "val" (letterbox only).
        geometry: random geometry (train); None = letterbox only.
        photometric: albumentations image-only transforms, run on RGB (their colour transforms assume it).
        codec: albumentations image-only transforms run last, on BGR (e.g. JPEG: OpenCV encodes BGR).
        pad_value: grey level of letterbox bars and uncovered areas.
        min_visibility: train: boxes keeping less than this fraction of their area (but > 0) become ignore.
        min_box_size: train: boxes narrower or lower than this (output pixels, after clipping) are dropped.
        bonnet: train: the ego car's bonnet drawn over the input sample before the geometry.
        bonnet_p: probability of ``bonnet`` per sample.
    """

    def __init__(
        self,
        size: tuple[int, int],
        mode: str = "train",
        geometry: GeometricJitter | None = None,
        photometric: Sequence[A.BasicTransform | A.BaseCompose] = (),
        codec: Sequence[A.BasicTransform | A.BaseCompose] = (),
        pad_value: int = PAD_VALUE,
        min_visibility: float = 0.25,
        min_box_size: float = 2.0,
        bonnet: Bonnet | None = None,
        bonnet_p: float = 0.0,
    ):
        if mode not in MODES:
            raise ValueError(f"augment mode must be one of {list(MODES)}, got {mode!r}")
        if len(size) != 2 or min(int(size[0]), int(size[1])) <= 0:
            raise ValueError(f"size must be (H, W) with positive sides, got {size!r}")
        if not 0.0 <= min_visibility <= 1.0:
            raise ValueError(f"min_visibility must be in [0, 1], got {min_visibility}")
        if min_box_size < 0:
            raise ValueError(f"min_box_size must be >= 0, got {min_box_size}")
        self.size = (int(size[0]), int(size[1]))
        self.mode = mode
        self.pad_value = int(pad_value)
        self.min_visibility = float(min_visibility)
        self.min_box_size = float(min_box_size)
        train = mode == "train"
        self.geometry = geometry if train else None
        self._pre = Preprocessor(self.size, color="BGR", pad_value=self.pad_value, align="center")
        self._photometric = A.Compose(list(photometric), save_applied_params=True) if train and photometric else None
        self._codec = A.Compose(list(codec), save_applied_params=True) if train and codec else None
        self.bonnet = bonnet if train else None
        self.bonnet_p = _check_p("bonnet_p", bonnet_p)

    def __repr__(self) -> str:
        def names(c: A.Compose | None) -> list[str]:
            return [type(t).__name__ for t in c.transforms] if c is not None else []

        return (
            f"Augment(mode={self.mode!r}, size={self.size}, geometry={self.geometry}, "
            f"photometric={names(self._photometric)}, codec={names(self._codec)})"
        )

    def __call__(self, sample: Sample, rng_seed: int | None = None) -> Sample:
        """Augment one sample.

        Args:
            sample: image uint8 [h, w, 3] BGR; seg uint8 [h, w] or None; boxes float32 [N, 4] xyxy pixels
                (exclusive x2/y2) or None, with labels int64 [N] and ignore bool [N].
            rng_seed: seed for every random choice (same seed, same output); None draws a fresh seed,
                recorded in ``meta["augment"]["seed"]``.
        Returns:
            A new Sample: image uint8 [H, W, 3] BGR (H, W = ``size``); seg uint8 [H, W] (255 = IGNORE, also
            on letterbox bars and uncovered areas) or None; boxes float32 [M, 4] xyxy output pixels inside
            the image, labels int64 [M], ignore bool [M], M <= N (or all None).
        Raises:
            DatasetError: a box of the input sample has no area inside its image (names the sample).
        """
        if rng_seed is None:
            seed = secrets.randbits(63)
        elif isinstance(rng_seed, (int, np.integer)) and not isinstance(rng_seed, bool) and rng_seed >= 0:
            seed = int(rng_seed)
        else:
            raise ValueError(f"rng_seed must be a non-negative int or None, got {rng_seed!r}")
        rng, py_rng = np.random.default_rng(seed), random.Random(seed)
        applied_first = []
        if self.bonnet is not None and self.bonnet_p > 0:
            bonnet_rng = np.random.default_rng([seed, 1])  # its own stream: other draws stay as without it
            if bonnet_rng.random() < self.bonnet_p:
                sample = self.bonnet(sample, bonnet_rng)
                applied_first.append("Bonnet")

        h, w = sample.image.shape[:2]
        lb = self._pre.letterbox_for((h, w))
        x0, y0, _, _ = lb.roi_xywh
        to_input = np.array(
            [[lb.scale, 0.0, lb.pad_x - lb.scale * x0], [0.0, lb.scale, lb.pad_y - lb.scale * y0], [0.0, 0.0, 1.0]]
        )  # the Letterbox mapping (Letterbox.boxes_to_input) as a matrix
        jitter, applied = self.geometry.sample(rng, self.size) if self.geometry is not None else (None, [])
        if not applied:
            jitter = None  # nothing drawn: use the runtime letterbox itself
        applied = applied_first + applied
        matrix = to_input if jitter is None else jitter @ to_input

        recolour = self._photometric is not None or self._codec is not None
        if jitter is None:
            image, _ = self._pre(sample.image)  # the runtime letterbox itself
            seg = None if sample.seg is None else self._letterbox_mask(sample.seg, lb)
            valid = None
            if recolour:
                valid = np.zeros(self.size, bool)
                lb.crop_content(valid)[...] = True
        else:
            image, seg, valid = self._warp(sample, matrix, coverage=recolour)

        if recolour:
            for compose in (self._photometric, self._codec):
                if compose is not None:
                    compose.set_random_state(rng, py_rng)  # one shared stream: transforms draw independently
            if self._photometric is not None:
                result = self._photometric(image=cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
                applied += [name for name, _ in result["applied_transforms"]]
                image = cv2.cvtColor(result["image"], cv2.COLOR_RGB2BGR)
            if self._codec is not None:
                result = self._codec(image=image)
                applied += [name for name, _ in result["applied_transforms"]]
                image = result["image"]
            image[~valid] = self.pad_value  # bars and uncovered areas stay exactly the pad grey

        boxes = labels = ignore = None
        dropped = newly_ignored = 0
        if sample.boxes is not None:
            boxes, labels, ignore, _ = sanitize_boxes(
                sample.boxes, sample.labels, sample.ignore, w, h, sample.name, bad_boxes="error"
            )
            train = self.mode == "train"
            boxes, labels, ignore, dropped, newly_ignored = self._map_boxes(
                boxes,
                labels,
                ignore,
                matrix,
                sample.name,
                min_visibility=self.min_visibility if train else 0.0,
                min_box_size=self.min_box_size if train else 0.0,
            )

        meta = dict(sample.meta)
        meta["augment"] = {
            "mode": self.mode,
            "seed": seed,
            "applied": applied,
            "matrix": matrix,
            "boxes_dropped": dropped,
            "boxes_ignored": newly_ignored,
        }
        return Sample(
            image=np.ascontiguousarray(image),
            name=sample.name,
            seg=seg,
            lane_labelled=sample.lane_labelled,
            boxes=boxes,
            labels=labels,
            ignore=ignore,
            meta=meta,
        )

    def _letterbox_mask(self, seg: np.ndarray, lb: Letterbox) -> np.ndarray:
        """uint8 [h, w] class ids → uint8 [H, W]: nearest-neighbour resize into the content, IGNORE bars."""
        out = np.full(self.size, IGNORE, np.uint8)
        ch, cw = lb.content_hw
        x, y, w, h = lb.roi_xywh
        src = seg[y : y + h, x : x + w]
        if (ch, cw) != (h, w):
            # NEAREST_EXACT samples at pixel centres, like the bilinear image resize (plain NEAREST is
            # shifted by up to one source pixel).
            src = cv2.resize(src, (cw, ch), interpolation=cv2.INTER_NEAREST_EXACT)
        lb.crop_content(out)[...] = src
        return out

    def _warp(
        self, sample: Sample, matrix: np.ndarray, coverage: bool
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """One resampling of image (bilinear), mask (nearest) and, if asked, a coverage map (bool [H, W],
        True where the output shows the source) through ``matrix``.

        ``matrix`` maps continuous source coordinates (pixel i spans [i, i + 1)) to output coordinates;
        OpenCV indexes pixel centres, hence the half-pixel conjugation.
        """
        half = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
        m = np.linalg.inv(half) @ matrix @ half
        height, width = self.size
        if np.allclose(m[2], (0.0, 0.0, 1.0), atol=1e-12):

            def warp(a: np.ndarray, interp: int, fill) -> np.ndarray:
                return cv2.warpAffine(a, m[:2], (width, height), flags=interp, borderValue=fill)
        else:

            def warp(a: np.ndarray, interp: int, fill) -> np.ndarray:
                return cv2.warpPerspective(a, m, (width, height), flags=interp, borderValue=fill)

        pad = (self.pad_value,) * 3
        image = warp(sample.image, cv2.INTER_LINEAR, pad)
        seg = None if sample.seg is None else warp(sample.seg, cv2.INTER_NEAREST, IGNORE)
        valid = None
        if coverage:
            valid = warp(np.ones(sample.image.shape[:2], np.uint8), cv2.INTER_NEAREST, 0).astype(bool)
        return image, seg, valid

    def _map_boxes(
        self,
        boxes: np.ndarray,
        labels: np.ndarray,
        ignore: np.ndarray,
        matrix: np.ndarray,
        name: str,
        min_visibility: float,
        min_box_size: float,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
        """Boxes float [N, 4] source pixels → output pixels under ``matrix`` with the module's box rules.

        Returns (boxes float32 [M, 4], labels int64 [M], ignore bool [M], number dropped, number newly
        flagged ignore because their visibility fell below ``min_visibility``).
        """
        n = len(boxes)
        x1, y1, x2, y2 = np.asarray(boxes, np.float64).reshape(-1, 4).T
        corners = np.stack([x1, y1, x2, y1, x2, y2, x1, y2], 1).reshape(n, 4, 2)
        pts = np.concatenate([corners, np.ones((n, 4, 1))], 2) @ matrix.T
        pts = pts[..., :2] / pts[..., 2:]
        full = np.concatenate([pts.min(1), pts.max(1)], 1) if n else np.zeros((0, 4))
        full_area = (full[:, 2] - full[:, 0]) * (full[:, 3] - full[:, 1])
        height, width = self.size
        # The labels slot carries row indices, so we learn which rows survive the clip.
        clipped, rows, _, _ = sanitize_boxes(full, np.arange(n), np.zeros(n, bool), width, height, name, "drop")
        cw, ch = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
        big = (cw >= min_box_size) & (ch >= min_box_size)
        clipped, rows, cw, ch = clipped[big], rows[big], cw[big], ch[big]
        visibility = (cw.astype(np.float64) * ch) / np.maximum(full_area[rows], 1e-12)
        faint = visibility < min_visibility - 1e-9
        n_ignored = int((faint & ~ignore[rows]).sum())
        return clipped, labels[rows], ignore[rows] | faint, n - len(rows), n_ignored


def _homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """float64 [3, 3] mapping 4 points src [4, 2] onto dst [4, 2] (solved in float64, m[2, 2] = 1)."""
    a = np.zeros((8, 8))
    for i, ((x, y), (u, v)) in enumerate(zip(src, dst, strict=True)):
        a[2 * i] = (x, y, 1, 0, 0, 0, -u * x, -u * y)
        a[2 * i + 1] = (0, 0, 0, x, y, 1, -v * x, -v * y)
    return np.append(np.linalg.solve(a, np.asarray(dst, np.float64).reshape(-1)), 1.0).reshape(3, 3)


def build_augment(
    mode: str = "train",
    size: tuple[int, int] = (384, 640),
    *,
    pad_value: int = PAD_VALUE,
    min_visibility: float = 0.25,
    min_box_size: float = 2.0,
    # geometric
    hflip_p: float = 0.5,
    affine_p: float = 0.7,
    scale: tuple[float, float] = (0.75, 1.25),
    translate: tuple[float, float] = (-0.1, 0.1),
    rotate: tuple[float, float] = (-5.0, 5.0),
    perspective_p: float = 0.1,
    perspective_scale: tuple[float, float] = (0.02, 0.05),
    # photometric
    brightness_contrast_p: float = 0.5,
    brightness_limit: float = 0.25,
    contrast_limit: float = 0.25,
    gamma_p: float = 0.2,
    gamma_limit: tuple[float, float] = (80, 120),
    hue_saturation_p: float = 0.3,
    hue_shift: float = 5,
    saturation_shift: float = 25,
    weather_p: float = 0.05,
    night_p: float = 0.0,
    rain_p: float = 0.0,
    hood_p: float = 0.0,
    blur_p: float = 0.15,
    blur_sigma: tuple[float, float] = (0.3, 1.2),
    motion_blur_limit: tuple[int, int] = (3, 7),
    noise_p: float = 0.15,
    noise_std: tuple[float, float] = (0.01, 0.04),
    jpeg_p: float = 0.25,
    jpeg_quality: tuple[int, int] = (40, 95),
) -> Augment:
    """Build the augmentation of one mode for network input ``size`` (H, W).

    Every probability is per sample; 0 switches a transform off. Defaults are mild: a dashcam sees a
    narrow range of poses, and the labels (thin lane paint, small signs) are fragile.

    Args:
        mode: "train" (all below) or "val" (letterbox only; the other options are ignored).
        size: (H, W) of the network input.
        pad_value: letterbox grey (114, the model contract's value).
        min_visibility: boxes keeping less than this fraction of their area become ignore=True (0.25).
        min_box_size: boxes narrower or lower than this many output pixels are dropped (2).
        hflip_p: horizontal flip (0.5): a mirrored road is plausible, and the seg/det classes have no
            left/right meaning. Left/right-specific data in ``meta`` must be mapped with the matrix.
        affine_p: affine jitter (0.7) with ``scale`` (0.75..1.25, aspect kept), ``translate`` (fraction of
            the size per axis, ±0.1) and ``rotate`` (degrees, ±5: camera roll stays small). At the
            extremes (zoom 1.25 and shift 0.1) 80% of each axis stays in view: most boxes survive.
        perspective_p, perspective_scale: perspective warp (0.1; corners moved in by 2..5% of the size),
            a stand-in for pitch changes and other mounts; it zooms in slightly.
        brightness_contrast_p, brightness_limit, contrast_limit: (0.5, ±0.25, ±0.25).
        gamma_p, gamma_limit: (0.2; gamma 0.8..1.2, written 80..120 as albumentations expects).
        hue_saturation_p, hue_shift, saturation_shift: (0.3; hue ±5 of 180, saturation ±25 of 255): hue
            stays small so yellow/white paint and sign colours keep their meaning.
        weather_p: one of fog, drizzle, shadow, sun flare (0.05: rare, they are synthetic looking).
        night_p: ``NightDrive``: low light, a night colour cast, headlight glare (0: off by default).
        rain_p: rain streaks with the light dimmed, as through a wet windscreen (0: off by default).
        hood_p: the ego car's bonnet over the bottom 6..16 % of the frame (``Bonnet``; 0: off by default).
        blur_p, blur_sigma, motion_blur_limit: one of Gaussian blur (sigma 0.3..1.2) or motion blur
            (kernel 3..7) (0.15).
        noise_p, noise_std: one of Gaussian noise (std 1..4% of 255) or ISO noise (0.15).
        jpeg_p, jpeg_quality: JPEG re-compression at quality 40..95 (0.25: dashcam video is lossy).
    Returns:
        An ``Augment``; call it as ``augment(sample, rng_seed)``.
    """
    if mode not in MODES:
        raise ValueError(f"augment mode must be one of {list(MODES)}, got {mode!r}")
    if mode == "val":
        return Augment(size, "val", pad_value=pad_value, min_visibility=min_visibility, min_box_size=min_box_size)

    geometry = GeometricJitter(
        hflip_p=hflip_p,
        affine_p=affine_p,
        scale=scale,
        translate=translate,
        rotate=rotate,
        perspective_p=perspective_p,
        perspective_scale=perspective_scale,
    )
    photometric: list = []
    if _check_p("brightness_contrast_p", brightness_contrast_p):
        photometric.append(
            A.RandomBrightnessContrast(
                brightness_limit=brightness_limit, contrast_limit=contrast_limit, p=brightness_contrast_p
            )
        )
    if _check_p("gamma_p", gamma_p):
        photometric.append(A.RandomGamma(gamma_limit=_check_range("gamma_limit", gamma_limit, 1.0), p=gamma_p))
    if _check_p("hue_saturation_p", hue_saturation_p):
        photometric.append(
            A.HueSaturationValue(
                hue_shift_limit=hue_shift, sat_shift_limit=saturation_shift, val_shift_limit=0, p=hue_saturation_p
            )
        )
    if _check_p("weather_p", weather_p):
        flare_radius = max(4, round(0.15 * size[1]))  # albumentations' default is a fixed 400 px
        photometric.append(
            A.OneOf(
                [
                    A.RandomFog(fog_coef_range=(0.1, 0.3), alpha_coef=0.08, p=1.0),
                    A.RandomRain(rain_type="drizzle", brightness_coefficient=0.9, blur_value=3, p=1.0),
                    A.RandomShadow(shadow_roi=(0, 0.5, 1, 1), shadow_intensity_range=(0.3, 0.6), p=1.0),
                    A.RandomSunFlare(flare_roi=(0, 0, 1, 0.5), src_radius=flare_radius, p=1.0),
                ],
                p=weather_p,
            )
        )
    if _check_p("night_p", night_p):
        photometric.append(NightDrive(p=night_p))
    if _check_p("rain_p", rain_p):
        photometric.append(
            A.RandomRain(
                slant_range=(-10, 10),
                drop_length=max(4, size[0] // 25),
                drop_width=1,
                drop_color=(150, 150, 160),
                brightness_coefficient=0.75,
                blur_value=3,
                p=rain_p,
            )
        )
    if _check_p("blur_p", blur_p):
        photometric.append(
            A.OneOf(
                [
                    A.GaussianBlur(sigma_limit=_check_range("blur_sigma", blur_sigma, 0.0), p=1.0),
                    A.MotionBlur(blur_limit=tuple(int(k) for k in motion_blur_limit), p=1.0),
                ],
                p=blur_p,
            )
        )
    if _check_p("noise_p", noise_p):
        photometric.append(
            A.OneOf(
                [A.GaussNoise(std_range=_check_range("noise_std", noise_std, 0.0), p=1.0), A.ISONoise(p=1.0)],
                p=noise_p,
            )
        )
    codec: list = []
    if _check_p("jpeg_p", jpeg_p):
        quality = tuple(int(q) for q in jpeg_quality)
        codec.append(A.ImageCompression(compression_type="jpeg", quality_range=quality, p=jpeg_p))

    return Augment(
        size,
        "train",
        geometry=geometry,
        photometric=photometric,
        codec=codec,
        pad_value=pad_value,
        min_visibility=min_visibility,
        min_box_size=min_box_size,
        bonnet=Bonnet() if hood_p > 0 else None,
        bonnet_p=hood_p,
    )
