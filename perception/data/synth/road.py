"""The ground of a synthetic frame, shaded per pixel: every pixel below the horizon is cast onto the ground
plane and turned into road coordinates (s, d), so asphalt texture, tyre tracks, kerbs, sidewalks, verges and
paint are placed in metres and seen in correct perspective. Paint is box-filtered over each pixel's ground
footprint, and a pixel is labelled lane marking where paint covers at least half of it.
"""

from __future__ import annotations

import numpy as np

from perception.data.synth.raster import (
    FAR_GROUND,
    IGNORE,
    GroundRays,
    road_heading_vehicle,
    road_to_vehicle,
    sample_tile,
    texture,
)
from perception.data.synth.world import World

PAINT = {"white": (0.93, 0.93, 0.93), "yellow": (0.15, 0.75, 0.92)}


def road_coords(rays: GroundRays, world: World, origin, rot) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per ground pixel: arc length s, lateral offset d (m) and a mask of where they are valid."""
    ego_s = world.ego.s
    s_samples = np.arange(max(ego_s - 20, 0), min(ego_s + FAR_GROUND, world.centerline.length), 0.5)
    xv, yv = road_to_vehicle(world, s_samples, np.zeros_like(s_samples), origin, rot)
    hv = road_heading_vehicle(world, s_samples, rot)
    # Keep the stretch where the centreline moves away from the car monotonically (x increasing).
    inc = np.concatenate([[True], np.diff(xv) > 0])
    stop = int(np.argmin(inc)) if not inc.all() else len(xv)
    xv, yv, hv, s_samples = xv[:stop], yv[:stop], hv[:stop], s_samples[:stop]
    gx, gy = rays.gx, rays.gy
    yc = np.interp(gx, xv, yv)
    hc = np.interp(gx, xv, hv)
    sc = np.interp(gx, xv, s_samples)
    dy = gy - yc
    d = dy * np.cos(hc)
    s = sc + dy * np.sin(hc)
    valid = rays.ground & (gx >= xv[0]) & (gx <= xv[-1])
    return s.astype(np.float32), d.astype(np.float32), valid


def shade_ground(rays: GroundRays, world: World, origin, rot, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground colour [H, W, 3], seg [H, W] and a paint mask, for ground pixels."""
    lay = world.layout
    h, w = rays.height, rays.width
    r0 = rays.first_ground_row
    sl = np.s_[r0:]
    s, d, valid = (a[sl] for a in road_coords(rays, world, origin, rot))
    ground = rays.ground[sl]
    fd, fs = rays.foot_d[sl], rays.foot_s[sl]
    s = np.where(valid, s, 0.0)
    d = np.where(valid, d, 0.0)
    fine, coarse = texture("fine", world.seed), texture("coarse", world.seed // 16)
    # Texture coordinates: 4 cm per texel for the fine tile, 1 m for the coarse one.
    t_fine = sample_tile(fine, s / 0.04, d / 0.04)
    t_coarse = sample_tile(coarse, s / 1.0, d / 1.0)
    # Fine texture fades where a pixel covers many texels (it would alias into glitter).
    fine_gain = np.clip(0.12 / np.maximum(fd, 1e-3), 0, 1) * np.clip(0.12 / np.maximum(fs, 1e-3), 0, 1)

    in_road = (d <= lay.left_edge) & (d >= lay.right_edge)
    carriage = (d <= lay.boundaries[0]) & (d >= lay.boundaries[-1])
    img = np.zeros((h - r0, w, 3), np.float32)

    asphalt = np.array(lay.asphalt, np.float32)
    tone = 1 + 0.05 * t_coarse + 0.09 * t_fine * fine_gain
    # Tyre tracks: darker, polished bands where wheels run in every lane.
    tracks = np.zeros_like(d)
    for lane in range(lay.n_lanes):
        c = lay.lane_center(lane)
        for off in (-0.8, 0.8):
            tracks += np.exp(-(((d - c - off) / 0.35) ** 2))
    tone = tone * (1 - 0.07 * np.clip(tracks, 0, 1) * (1 + 0.3 * t_coarse))
    shoulder = in_road & ~carriage
    tone = np.where(shoulder, tone * 1.07, tone)
    road_rgb = asphalt[None, None, :] * tone[..., None]

    # Off-road: kerb, sidewalk slabs, verge.
    side_left = d > lay.left_edge
    walk_w = np.where(side_left, lay.sidewalk_left, lay.sidewalk_right)
    dist_out = np.where(side_left, d - lay.left_edge, lay.right_edge - d)
    sidewalk = ~in_road & (dist_out < walk_w)
    kerb = sidewalk & (dist_out < 0.2)
    slab = 0.62 + 0.04 * t_coarse + 0.05 * t_fine * fine_gain
    joint = (np.abs(((s + 0.02) % 1.5) - 0.75) > 0.73) | (np.abs(((dist_out - 0.2) % 1.5) - 0.75) > 0.73)
    slab = np.where(joint & (fine_gain > 0.3), slab * 0.8, slab)
    side_rgb = np.stack([slab * 0.97, slab, slab * 1.02], -1)
    side_rgb = np.where(kerb[..., None], np.float32(0.75), side_rgb)
    verge_base = {"grass": (0.18, 0.42, 0.3), "dirt": (0.3, 0.4, 0.48), "concrete": (0.5, 0.52, 0.54)}[lay.verge]
    vt = 1 + 0.18 * t_coarse + 0.15 * t_fine * fine_gain
    verge_rgb = np.array(verge_base, np.float32)[None, None, :] * vt[..., None]
    off_rgb = np.where(sidewalk[..., None], side_rgb, verge_rgb)
    # Soft edge between asphalt and the kerb/verge over one ground footprint.
    edge_dist = np.where(side_left, d - lay.left_edge, lay.right_edge - d)  # >0 outside the road
    a_road = np.clip(0.5 - edge_dist / np.maximum(fd, 1e-3), 0, 1)[..., None]
    img[:] = a_road * road_rgb + (1 - a_road) * off_rgb

    # Paint.
    cov = np.zeros_like(d)
    thin_label = np.zeros(d.shape, bool)
    paint_rgb = np.zeros_like(img)
    wear_noise = sample_tile(fine, s / 0.05 + 37, d / 0.05 + 11) * 0.5 + sample_tile(coarse, s / 0.7, d / 0.7)
    for m in lay.markings:
        if not m.visible:
            continue
        offsets = (m.d - 0.1 - m.width / 2, m.d + 0.1 + m.width / 2) if m.style == "double" else (m.d,)
        c = np.zeros_like(d)
        centre = np.zeros(d.shape, bool)
        for off in offsets:
            c = np.maximum(c, _band_cover(d, fd, off - m.width / 2, off + m.width / 2))
            centre |= np.abs(d - off) <= fd / 2
        present = np.ones_like(d)
        if m.style == "dashed":
            present = _periodic_cover(s + m.phase, fs, m.dash, m.period)
        if m.wear > 0:
            present = present * _worn(wear_noise, m.wear)
        c = c * present
        # A line thinner than a pixel still gets a one-pixel-wide label where its centre crosses the
        # pixel, so far lines stay connected in the labels as they do in the image.
        thin_label |= centre & (present >= 0.5) & (c >= 0.25)
        sel = c > cov
        paint_rgb[sel] = PAINT[m.color]
        cov = np.maximum(cov, c)
    if lay.crossing_s is not None:
        cs, cl = lay.crossing_s, lay.crossing_len
        zebra = _periodic_cover(d + 50.25, fd, 0.5, 1.0) * _band_cover(s, fs, cs, cs + cl)
        zebra = zebra * (carriage.astype(np.float32))
        ego_side = (d <= lay.boundaries[lay.n_oncoming]) & (d >= lay.boundaries[-1])
        stop = _band_cover(s, fs, cs - 2.0, cs - 1.6) * ego_side
        onc = (d > lay.boundaries[lay.n_oncoming]) & (d <= lay.boundaries[0])
        stop = np.maximum(stop, _band_cover(s, fs, cs + cl + 1.6, cs + cl + 2.0) * onc)
        cross = np.maximum(zebra, stop)
        cross = cross * _worn(wear_noise, lay.markings[0].wear)
        sel = cross > cov
        paint_rgb[sel] = PAINT["white"]
        cov = np.maximum(cov, cross)
    paint_tone = (0.92 + 0.05 * t_fine * fine_gain)[..., None]
    img = img * (1 - cov[..., None]) + paint_rgb * paint_tone * cov[..., None]

    seg = np.zeros((h - r0, w), np.uint8)
    seg[in_road] = 1
    seg[in_road & ((cov >= 0.5) | thin_label)] = 2
    seg[~valid] = IGNORE  # beyond the modelled road
    seg[~ground] = 0

    full_img = np.zeros((h, w, 3), np.float32)
    full_seg = np.zeros((h, w), np.uint8)
    full_img[sl] = img
    full_seg[sl] = seg
    paint = np.zeros((h, w), np.float32)
    paint[sl] = cov
    return full_img, full_seg, paint


def _worn(noise: np.ndarray, wear: float) -> np.ndarray:
    """Paint left after wear (0..1 per pixel): worn paint has holes, it does not fade evenly, so what is
    left keeps its contrast and its label (a faint, evenly faded line would be visible but unlabelled).
    ``wear`` is about the fraction removed; ``noise`` is a zero-mean texture with std about 1."""
    if wear <= 0:
        return np.ones_like(noise)
    threshold = 2.2 * (wear - 0.5)  # about the wear-quantile of the noise
    return np.clip((noise - threshold) / 0.15 + 0.5, 0, 1)


def _band_cover(v: np.ndarray, foot: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Fraction of each pixel's footprint [v - foot/2, v + foot/2] inside [lo, hi]."""
    half = np.maximum(foot, 1e-4) / 2
    overlap = np.minimum(v + half, hi) - np.maximum(v - half, lo)
    return np.clip(overlap / (2 * half), 0, 1).astype(np.float32)


def _periodic_cover(v: np.ndarray, foot: np.ndarray, on: float, period: float) -> np.ndarray:
    """Fraction of each footprint covered by a square wave that is on for [0, on) of every period."""

    def cum(t):  # covered length from 0 to t
        return np.floor(t / period) * on + np.minimum(np.mod(t, period), on)

    half = np.maximum(foot, 1e-4) / 2
    return np.clip((cum(v + half) - cum(v - half)) / (2 * half), 0, 1).astype(np.float32)
