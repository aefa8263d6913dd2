"""The unlabelled scenery of a synthetic frame as 3D polygons: buildings (with windows), walls, trees and
poles (with street lights), each a ``DrawJob`` of the clutter instance.
"""

from __future__ import annotations

import numpy as np

from perception.data.synth.raster import (
    CLUTTER,
    DrawContext,
    DrawJob,
    Primitive,
    billboard_axes,
    box_faces,
    local,
    visible,
)
from perception.data.synth.world import Prop


def prop_job(ctx: DrawContext, p: Prop) -> DrawJob | None:
    cam = ctx.cam_pos()
    rng = np.random.default_rng(p.seed)
    if p.kind in ("building", "wall"):
        side = np.sign(p.d) or 1.0
        s0, s1 = p.s, p.s + p.length
        a = np.array(ctx.place(s0, p.d))
        b = np.array(ctx.place(s1, p.d))
        along = b - a
        L = float(np.linalg.norm(along))
        if L < 0.1:
            return None
        yaw = float(np.arctan2(along[1], along[0]))
        center = (a + b) / 2
        y_lo, y_hi = (0.0, p.depth) if side > 0 else (-p.depth, 0.0)
        prims = []
        for pts, n, name in box_faces(center, yaw, (-L / 2, y_lo, 0.0), (L / 2, y_hi, p.height)):
            if name == "bottom" or not visible(pts, n, cam):
                continue
            prims.append(Primitive(pts, ctx.shade(p.color, n)))
            facade = (name == "right" and side > 0) or (name == "left" and side < 0)
            if facade and p.kind == "building":
                prims.extend(_windows(ctx, rng, center, yaw, L, 0.0 if side > 0 else 0.0, p, n))
        dist = float(np.hypot(*center))
        return DrawJob(dist + p.depth / 2, CLUTTER, p.kind, prims)
    center = ctx.place(p.s, p.d)
    dist = float(np.hypot(*center))
    if center[0] < -3:
        return None
    right, _ = billboard_axes(center, (0.0, 0.0))
    up = np.array([0.0, 0.0, 1.0])
    base = np.array([center[0], center[1], 0.0])
    if p.kind == "tree":
        trunk_w = 0.12 + 0.02 * p.height
        prims = [
            Primitive(
                np.array(
                    [
                        base - right * trunk_w,
                        base + right * trunk_w,
                        base + right * trunk_w * 0.7 + up * p.height * 0.6,
                        base - right * trunk_w * 0.7 + up * p.height * 0.6,
                    ]
                ),
                ctx.shade((0.12, 0.2, 0.28), up * 0.3),
            )
        ]
        r = p.height * 0.3
        for k, (dx, dz, rr, tone) in enumerate(((0, 0.68, 1.0, 1.0), (-0.35, 0.6, 0.7, 0.8), (0.3, 0.75, 0.7, 1.15))):
            ang = np.linspace(0, 2 * np.pi, 18, endpoint=False)
            jag = rr * r * (1 + 0.12 * rng.standard_normal(len(ang)))
            c = base + right * dx * r + up * p.height * dz
            pts = c + np.outer(np.cos(ang) * jag, right) + np.outer(np.sin(ang) * jag * 0.9, up)
            col = tuple(float(v) * tone for v in p.color)
            prims.append(Primitive(pts, ctx.shade(col, np.array([0.3 * (k - 1), 0.0, 1.0]) / 1.05)))
        return DrawJob(dist, CLUTTER, p.kind, prims)
    # Pole with a lamp arm towards the road.
    w = 0.09
    prims = [
        Primitive(
            np.array(
                [
                    base - right * w,
                    base + right * w,
                    base + right * w * 0.6 + up * p.height,
                    base - right * w * 0.6 + up * p.height,
                ]
            ),
            ctx.shade((0.45, 0.45, 0.47), up * 0.4),
        )
    ]
    arm_end = np.array([*ctx.place(p.s, p.d - np.sign(p.d) * 1.5), p.height])
    prims.append(Primitive(np.array([base + up * p.height, arm_end]), (0.4, 0.4, 0.42), line=0.08))
    if ctx.world.env.street_lights:
        lamp = arm_end - up * 0.12
        prims.append(Primitive(np.array([lamp - right * 0.25, lamp + right * 0.25]), (0.7, 0.95, 1.0), True, 0.15))
    return DrawJob(dist, CLUTTER, p.kind, prims)


def _windows(ctx: DrawContext, rng, center, yaw, L, y_face, p: Prop, normal) -> list[Primitive]:
    prims = []
    floor_h = float(rng.uniform(2.8, 3.6))
    col_w = float(rng.uniform(2.0, 3.5))
    win_w, win_h = col_w * float(rng.uniform(0.4, 0.7)), floor_h * float(rng.uniform(0.4, 0.6))
    glass = (0.35, 0.3, 0.25) if not ctx.night else (0.05, 0.05, 0.06)
    lit = (0.45, 0.75, 0.95)
    n_cols = int(L // col_w)
    n_rows = int((p.height - 1.0) // floor_h)
    off = 0.03 if p.d > 0 else -0.03  # a hair in front of the facade
    y = -off
    for r in range(1, n_rows):
        z0 = r * floor_h + (floor_h - win_h) / 2
        for c in range(n_cols):
            x0 = -L / 2 + (c + 0.5) * col_w - win_w / 2
            pts = local(
                center, yaw, [[x0, y, z0], [x0 + win_w, y, z0], [x0 + win_w, y, z0 + win_h], [x0, y, z0 + win_h]]
            )
            on = ctx.night and rng.random() < 0.3
            prims.append(Primitive(pts, lit if on else ctx.shade(glass, normal), emissive=on))
    return prims
