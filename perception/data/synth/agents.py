"""The labelled objects of a synthetic frame as 3D polygons: cars (sedan to truck), pedestrians, cyclists and
traffic signs (the plate labelled, the post clutter), each a ``DrawJob`` for the renderer.
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
from perception.data.synth.world import Agent


def _car_prims(ctx: DrawContext, a: Agent, center, yaw) -> list[Primitive]:
    L, W, H = a.length, a.width, a.height
    cam = ctx.cam_pos()
    clear = 0.18 if a.shape != "truck" else 0.4
    prims: list[Primitive] = []
    rng = np.random.default_rng(a.track_id * 7919 + 13)
    glass = (0.22 + 0.08 * rng.random(), 0.18, 0.16) if not ctx.night else (0.05, 0.05, 0.05)
    body_top = {"sedan": 0.55, "hatchback": 0.55, "suv": 0.6, "van": 0.5, "truck": 0.35, "pickup": 0.55}[a.shape] * H
    parts = []  # (lo, hi, color, is_glass_sides)
    parts.append(((-L / 2, -W / 2, clear), (L / 2, W / 2, body_top), a.color, False))
    if a.shape == "truck":
        parts.append(((L / 2 - 2.3, -W / 2, body_top), (L / 2, W / 2, H * 0.8), a.color, True))
        parts.append(((-L / 2, -W / 2 + 0.05, body_top), (L / 2 - 2.4, W / 2 - 0.05, H), (0.8, 0.8, 0.8), False))
    elif a.shape == "pickup":
        parts.append(((-0.05 * L, -W / 2 + 0.1, body_top), (0.25 * L, W / 2 - 0.1, H), a.color, True))
    elif a.shape == "van":
        parts.append(((-L / 2, -W / 2 + 0.05, body_top), (0.3 * L, W / 2 - 0.05, H), a.color, True))
    else:
        back = -0.38 * L if a.shape in ("hatchback", "suv") else -0.28 * L
        parts.append(((back, -W / 2 + 0.12, body_top), (0.18 * L, W / 2 - 0.12, H), a.color, True))
    # Wheels: dark boxes at the corners (visible under and beside the body).
    wheel_r = 0.33 if a.shape != "truck" else 0.5
    for wx in (-L / 2 + 0.8 * wheel_r + 0.4, L / 2 - 0.8 * wheel_r - 0.4):
        for wy in (-W / 2 + 0.12, W / 2 - 0.12):
            lo = (wx - wheel_r, wy - 0.12, 0.0)
            hi = (wx + wheel_r, wy + 0.12, 2 * wheel_r)
            for pts, n, _ in box_faces(center, yaw, lo, hi):
                if visible(pts, n, cam):
                    prims.append(Primitive(pts, ctx.shade((0.06, 0.06, 0.06), n)))
    for lo, hi, color, glass_sides in parts:
        for pts, n, name in box_faces(center, yaw, lo, hi):
            if not visible(pts, n, cam) or name == "bottom":
                continue
            col = glass if glass_sides and name != "top" else color
            if glass_sides and name != "top":
                # Window in a frame of body colour.
                prims.append(Primitive(pts, ctx.shade(color, n)))
                m = pts.mean(0)
                inner = m + (pts - m) * np.array([0.85, 0.85, 0.8])
                inner[:, 2] += 0.02
                prims.append(Primitive(inner, ctx.shade(col, n) if not ctx.night else col))
            else:
                prims.append(Primitive(pts, ctx.shade(col, n)))
    # Lights and plate on the face the camera sees (rear or front).
    for name, sign in (("back", -1), ("front", 1)):
        x = sign * L / 2 + sign * 0.01
        face_n = local((0, 0), yaw, [[sign, 0, 0]])[0]
        face_pt = local(center, yaw, [[x, 0, body_top]])[0]
        if not visible(face_pt[None], face_n, cam):
            continue
        zl = body_top - 0.18
        if name == "back":
            color, emis = ((0.1, 0.1, 0.95), True) if ctx.night else ((0.12, 0.12, 0.7), False)
        else:
            color, emis = ((1.0, 1.0, 1.0), True) if ctx.night else ((0.85, 0.85, 0.8), False)
        for y in (-W / 2 + 0.12, W / 2 - 0.42):
            pts = local(center, yaw, [[x, y, zl], [x, y + 0.3, zl], [x, y + 0.3, zl + 0.13], [x, y, zl + 0.13]])
            prims.append(Primitive(pts, color, emissive=emis))
        pts = local(
            center,
            yaw,
            [[x, -0.26, clear + 0.12], [x, 0.26, clear + 0.12], [x, 0.26, clear + 0.23], [x, -0.26, clear + 0.23]],
        )
        prims.append(Primitive(pts, ctx.shade((0.85, 0.88, 0.88), face_n)))
    return prims


def _person_prims(ctx: DrawContext, a: Agent, center, walk_dir: np.ndarray, skin) -> list[Primitive]:
    H = a.height
    right, _ = billboard_axes(center, (0.0, 0.0))
    base = np.array([center[0], center[1], 0.0])
    up = np.array([0.0, 0.0, 1.0])
    across = abs(float(walk_dir[:2] @ right[:2]))  # how much of the stride the camera sees
    swing = 0.28 * np.sin(a.phase) * across * np.sign(walk_dir[:2] @ right[:2] or 1)
    rng = np.random.default_rng(a.track_id * 104729 + 7)
    trousers = tuple(float(v) for v in rng.choice([(0.15, 0.15, 0.15), (0.45, 0.3, 0.2), (0.3, 0.3, 0.3)]))
    top = a.color
    hip, shoulder = 0.52 * H, 0.82 * H

    def quad(p0, p1, width, color):
        axis = (p1 - p0) / (np.linalg.norm(p1 - p0) + 1e-9)
        side = np.cross(axis, np.cross(right, axis))
        side = side / (np.linalg.norm(side) + 1e-9) * width / 2
        return Primitive(np.array([p0 - side, p0 + side, p1 + side, p1 - side]), color)

    prims = []
    for sgn in (-1, 1):
        foot = base + right * (sgn * 0.07 + sgn * swing * 0.5)
        prims.append(quad(base + up * hip + right * sgn * 0.08, foot, 0.13, ctx.shade(trousers, np.array([0, 0, 1.0]))))
    prims.append(quad(base + up * hip, base + up * shoulder, 0.34 * H / 1.75, ctx.shade(top, np.array([0, 0, 1.0]))))
    for sgn in (-1, 1):
        hand = base + up * (hip - 0.02) + right * (sgn * 0.2 - sgn * swing * 0.4)
        prims.append(quad(base + up * shoulder + right * sgn * 0.17, hand, 0.08, ctx.shade(top, np.array([0, 0, 1.0]))))
    head_c = base + up * (0.93 * H)
    ang = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    r = 0.075 * H
    head = head_c + np.outer(np.cos(ang), right) * r * 0.85 + np.outer(np.sin(ang), up) * r
    prims.append(Primitive(head, ctx.shade(skin, np.array([0, 0, 1.0]))))
    hair = head_c + up * 0.35 * r + np.outer(np.cos(ang[:7] / 2 * 2), right) * r * 0.88
    hair = np.vstack([hair, head_c + up * 0.3 * r])
    prims.append(Primitive(hair, (0.08, 0.08, 0.1)))
    return prims


def _cyclist_prims(ctx: DrawContext, a: Agent, center, yaw) -> list[Primitive]:
    prims = []
    fwd = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    up = np.array([0.0, 0.0, 1.0])
    base = np.array([center[0], center[1], 0.0])
    r = 0.34
    ang = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    for off in (-0.52, 0.52):
        c = base + fwd * off + up * r
        ring = c + np.outer(np.cos(ang), fwd) * r + np.outer(np.sin(ang), up) * r
        prims.append(Primitive(np.vstack([ring, ring[:1]]), (0.05, 0.05, 0.05), line=0.05))
    frame_col = tuple(float(v) for v in np.random.default_rng(a.track_id).uniform(0.1, 0.9, 3))
    seat, bar = base + fwd * -0.2 + up * 0.9, base + fwd * 0.4 + up * 0.95
    crank = base + up * 0.35
    for p0, p1 in ((base + fwd * -0.52 + up * r, seat), (seat, crank), (crank, bar), (bar, base + fwd * 0.52 + up * r)):
        prims.append(Primitive(np.array([p0, p1]), frame_col, line=0.035))
    # Rider: torso leaning forward from the saddle, head, legs down to the cranks.
    H = a.height
    shoulder = seat + fwd * 0.35 + up * 0.55 * H / 1.75
    prims.append(Primitive(np.array([seat, shoulder]), ctx.shade(a.color, up), line=0.32))
    prims.append(Primitive(np.array([shoulder, bar]), ctx.shade(a.color, up), line=0.08))
    knee_l = crank + fwd * 0.25 + up * 0.35 + fwd * 0.1 * np.sin(a.phase)
    prims.append(
        Primitive(np.array([seat, knee_l, crank + fwd * 0.15 * np.cos(a.phase)]), (0.15, 0.15, 0.2), line=0.12)
    )
    head = shoulder + fwd * 0.08 + up * 0.2
    right, _ = billboard_axes(head, (0.0, 0.0))
    hr = 0.13
    ring = head + np.outer(np.cos(ang), right) * hr + np.outer(np.sin(ang), up) * hr
    prims.append(Primitive(ring, ctx.shade((0.2, 0.6, 0.9), up)))
    return prims


def _sign_prims(ctx: DrawContext, a: Agent, center, yaw) -> tuple[list[Primitive], list[Primitive]]:
    """(post, plate): the post is clutter, the plate is the labelled traffic sign."""
    facing = np.array([-np.cos(yaw), -np.sin(yaw), 0.0])  # faces traffic approaching along +s
    side = np.array([np.sin(yaw), -np.cos(yaw), 0.0])
    up = np.array([0.0, 0.0, 1.0])
    size = a.width
    base = np.array([center[0], center[1], 0.0])
    mid = base + up * (a.mount + size / 2)
    post = [
        Primitive(
            np.array([base - side * 0.04, base + side * 0.04, mid + side * 0.04, mid - side * 0.04]) - facing * 0.03,
            ctx.shade((0.55, 0.55, 0.55), facing),
        )
    ]
    n = {"prohibitory": 20, "mandatory": 20, "speed": 4, "info": 4, "warning": 3, "yield": 3, "stop": 8}[a.shape]
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
    if a.shape in ("warning",):
        ang = ang + np.pi / 2
    elif a.shape == "yield":
        ang = ang - np.pi / 2
    elif a.shape == "stop":
        ang = ang + np.pi / 8
    elif n == 4:
        ang = ang + np.pi / 4
    scale = size / 2 * (np.sqrt(2) if n == 4 else 1.0)
    aspect = 1.3 if a.shape == "info" else 1.0

    def shape(k):
        return mid + np.outer(np.cos(ang), side) * scale * k * aspect + np.outer(np.sin(ang), up) * scale * k

    colors = {
        "prohibitory": ((0.1, 0.1, 0.8), (0.95, 0.95, 0.95)),
        "mandatory": ((0.7, 0.35, 0.05), (0.75, 0.4, 0.1)),
        "speed": ((0.1, 0.1, 0.1), (0.95, 0.95, 0.95)),
        "info": ((0.35, 0.55, 0.1), (0.4, 0.6, 0.15)),
        "warning": ((0.1, 0.1, 0.75), (0.95, 0.95, 0.95))
        if ctx.world.seed % 2
        else ((0.1, 0.1, 0.1), (0.1, 0.8, 0.95)),
        "yield": ((0.1, 0.1, 0.8), (0.95, 0.95, 0.95)),
        "stop": ((0.1, 0.1, 0.75), (0.15, 0.15, 0.8)),
    }[a.shape]
    lit = ctx.night  # retro-reflective signs shine in headlights
    c0 = colors[0] if lit else ctx.shade(colors[0], facing)
    c1 = colors[1] if lit else ctx.shade(colors[1], facing)
    plate = [Primitive(shape(1.0), c0), Primitive(shape(0.78), c1)]
    glyph = (0.95, 0.95, 0.95) if a.shape in ("mandatory", "stop", "info") else (0.08, 0.08, 0.08)
    if a.shape != "yield":
        w = size * 0.25
        pts = np.array(
            [
                mid - side * w - up * w * 0.35,
                mid + side * w - up * w * 0.35,
                mid + side * w + up * w * 0.35,
                mid - side * w + up * w * 0.35,
            ]
        )
        plate.append(Primitive(pts, glyph if lit else ctx.shade(glyph, facing)))
    return post, plate


def agent_jobs(ctx: DrawContext, a: Agent) -> list[DrawJob]:
    center = ctx.place(a.s, a.d)
    dist = float(np.hypot(*center))
    yaw = ctx.yaw(a.s) + a.heading_in_road()
    if center[0] < -2 and dist > 8:
        return []
    if a.cls == "car":
        return [DrawJob(dist, a.track_id, a.cls, _car_prims(ctx, a, center, yaw))]
    if a.cls == "pedestrian":
        skin = tuple(
            float(v)
            for v in np.random.default_rng(a.track_id).choice([(0.55, 0.65, 0.85), (0.35, 0.45, 0.6), (0.2, 0.28, 0.4)])
        )
        walk = np.array([np.cos(yaw), np.sin(yaw), 0.0])
        return [DrawJob(dist, a.track_id, a.cls, _person_prims(ctx, a, center, walk, skin))]
    if a.cls == "cyclist":
        return [DrawJob(dist, a.track_id, a.cls, _cyclist_prims(ctx, a, center, yaw))]
    post, plate = _sign_prims(ctx, a, center, ctx.yaw(a.s))
    return [DrawJob(dist + 0.05, CLUTTER, "post", post), DrawJob(dist, a.track_id, a.cls, plate)]
