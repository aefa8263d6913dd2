"""Rasterise a ``World`` seen from the ego camera into an ideal pinhole image with exact label buffers.

The ground is shaded per pixel: every pixel below the horizon is cast onto the ground plane and turned
into road coordinates (s, d), so asphalt texture, paint, kerbs and verges are placed in metres and seen in
correct perspective. Paint is box-filtered over each pixel's ground footprint, and a pixel is labelled
lane marking where paint covers at least half of it. Objects are lists of 3D polygons drawn far to near
(painter's order) into the image, an instance-id buffer and the segmentation mask; boxes come from the
instance buffer, so they hold only the visible part of each object.

Lens distortion, weather and sensor effects are applied afterwards (``effects.py``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import cv2
import numpy as np

from perception.camera_model import CameraModel
from perception.data.synth.world import Agent, Prop, World

CLUTTER = 65535  # instance id of unlabelled geometry (buildings, trees, poles, sign posts)
NEAR = 0.3  # near clipping plane (m)
FAR_GROUND = 400.0  # ground beyond this is not labelled (ignore): the road is not modelled that far
IGNORE = 255
PAINT = {"white": (0.93, 0.93, 0.93), "yellow": (0.15, 0.75, 0.92)}


@dataclass
class Primitive:
    """A 3D polygon (vehicle frame, m) with a BGR colour 0..1; ``line`` > 0 draws an outline that wide (m)."""

    points: np.ndarray
    color: tuple[float, float, float]
    emissive: bool = False
    line: float = 0.0


@dataclass
class DrawJob:
    depth: float
    instance: int  # track id, or CLUTTER
    cls: str
    prims: list[Primitive] = field(default_factory=list)


@dataclass
class ObjectInfo:
    """What the renderer knows of one labelled object (before occlusion is measured on the buffers)."""

    track_id: int
    cls: str
    alone_px: int  # pixels it would cover inside the image with nothing in front of it
    full_box: tuple[float, float, float, float]  # projected extent, may reach outside the image
    distance: float  # ground distance from the camera to its contact point (m)
    position: tuple[float, float, float]  # contact centre in the vehicle frame (m)
    size: tuple[float, float, float]  # length, width, height (m)
    speed: float


@dataclass
class Rendered:
    image: np.ndarray  # float32 [H, W, 3] BGR 0..1 (linear-ish; effects add exposure and gamma)
    seg: np.ndarray  # uint8 [H, W] 0 background, 1 drivable, 2 lane, 255 ignore
    instance: np.ndarray  # uint16 [H, W] track id, 0 none, CLUTTER
    depth: np.ndarray  # float32 [H, W] metres along the ray (inf for sky)
    emissive: np.ndarray  # float32 [H, W] light sources (for bloom)
    objects: list[ObjectInfo]


# ----------------------------------------------------------------------------------------------------------
# Geometry helpers


def ego_transform(world: World) -> tuple[np.ndarray, np.ndarray]:
    """(origin [2], R [2, 2]) such that vehicle = R @ (world - origin)."""
    ego = world.ego
    x, y = world.centerline.to_world(ego.s, ego.d)
    _, _, h = world.centerline.pose(ego.s)
    theta = float(h) + ego.heading
    c, s = np.cos(theta), np.sin(theta)
    return np.array([x, y], float), np.array([[c, s], [-s, c]])


def road_to_vehicle(world: World, s, d, origin, rot) -> tuple[np.ndarray, np.ndarray]:
    wx, wy = world.centerline.to_world(np.asarray(s, float), np.asarray(d, float))
    v = rot @ np.stack([np.ravel(wx) - origin[0], np.ravel(wy) - origin[1]])
    return v[0].reshape(np.shape(wx)), v[1].reshape(np.shape(wx))


def road_heading_vehicle(world: World, s, rot) -> np.ndarray:
    """Heading of the road tangent at s, in the vehicle frame (rad)."""
    _, _, h = world.centerline.pose(s)
    # rot = [[cos t, sin t], [-sin t, cos t]] for the ego's world heading t, so t = atan2(rot[0, 1], rot[0, 0]).
    return np.asarray(h) - np.arctan2(rot[0, 1], rot[0, 0])


def clip_near(pc: np.ndarray, near: float = NEAR) -> np.ndarray:
    """Clip a polygon [N, 3] in camera coordinates against the plane z = near (Sutherland-Hodgman)."""
    out = []
    n = len(pc)
    for i in range(n):
        a, b = pc[i], pc[(i + 1) % n]
        ina, inb = a[2] >= near, b[2] >= near
        if ina:
            out.append(a)
        if ina != inb:
            t = (near - a[2]) / (b[2] - a[2])
            out.append(a + t * (b - a))
    return np.array(out).reshape(-1, 3)


def project_polygon(cam: CameraModel, pts_vehicle: np.ndarray, closed: bool = True) -> np.ndarray | None:
    """Vehicle-frame polygon [N, 3] -> pixel polygon [M, 2] float (None when entirely behind the camera)."""
    pc = cam.to_camera(pts_vehicle)
    if closed:
        pc = clip_near(pc)
    else:
        pc = pc[pc[:, 2] >= NEAR]
    if len(pc) < 2:
        return None
    k = cam.K
    return np.stack([k[0, 0] * pc[:, 0] / pc[:, 2] + k[0, 2], k[1, 1] * pc[:, 1] / pc[:, 2] + k[1, 2]], 1)


def _shade(color, normal: np.ndarray, light: np.ndarray, ambient: float, diffuse: float):
    f = ambient + diffuse * max(0.0, float(normal @ light))
    return tuple(float(c * f) for c in color)


# ----------------------------------------------------------------------------------------------------------
# Noise textures (tiled, sampled in metres so they stay glued to the ground)


def noise_tile(rng: np.random.Generator, size: int = 256, octaves=(4, 16, 64, 256)) -> np.ndarray:
    """float32 [size, size] zero-mean multi-octave value noise, std about 1, seamlessly tileable."""
    acc = np.zeros((size, size), np.float32)
    for i, o in enumerate(octaves):
        small = rng.standard_normal((o, o)).astype(np.float32)
        # Upsample a 3x3 tiling by exactly size / o and keep the middle: periodic with period `size`.
        big = cv2.resize(np.tile(small, (3, 3)), (3 * size, 3 * size), interpolation=cv2.INTER_CUBIC)
        acc += big[size : 2 * size, size : 2 * size] * np.float32(0.6**i)
    return (acc - acc.mean()) / (acc.std() + 1e-6)


@functools.lru_cache(maxsize=64)
def texture(kind: str, variant: int) -> np.ndarray:
    """A read-only noise tile from a fixed bank (variant 0..15): textures cost ~4 ms each to make, and a
    bank of 16 per kind gives enough variety while clips and repeated seeds reuse them."""
    kinds = {"fine": (4, 16, 64, 256), "coarse": (2, 4, 8), "clouds": (3, 8, 24), "skyline": (4, 12, 40)}
    tile = noise_tile(np.random.default_rng([list(kinds).index(kind), variant % 16]), 256, kinds[kind])
    tile.flags.writeable = False
    return tile


def sample_tile(tile: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Sample a tile at texel coordinates (wrapping), bilinear."""
    return cv2.remap(tile, u.astype(np.float32), v.astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


# ----------------------------------------------------------------------------------------------------------
# The renderer


class Renderer:
    """Renders worlds for one camera; caches the per-pixel ground rays of that camera.

    Args:
        camera: pinhole camera (distortion is ignored here and applied by ``effects.distort``).
    """

    def __init__(self, camera: CameraModel):
        self.camera = camera
        w, h = camera.image_size
        self.width, self.height = w, h
        u, v = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        hinv = np.linalg.inv(camera.ground_to_image()).astype(np.float32)
        g0, g1, g2 = (hinv[i, 0] * u + hinv[i, 1] * v + hinv[i, 2] for i in range(3))
        with np.errstate(divide="ignore", invalid="ignore"):
            gx, gy = g0 / g2, g1 / g2
        ground = (g2 > 0) & (gx > 0.5)
        self.ground = ground
        self.gx = np.where(ground, gx, np.nan).astype(np.float32)
        self.gy = np.where(ground, gy, np.nan).astype(np.float32)
        cam_h = np.float32(camera.mounting.height_m)
        # Ground footprint of a pixel (m): across the road, the change of ground position from one column
        # to the next; along it, from one row to the next (exact for any viewing angle, finite differences).
        big = np.float32(1e6)
        gxf, gyf = np.where(ground, self.gx, big), np.where(ground, self.gy, big)
        # A pixel's extent along each ground axis is what its square spans there: |d/du| + |d/dv|. (Road
        # coordinates d, s are close to vehicle y, x over the short distances a footprint spans.)
        dxu, dxv = np.gradient(gxf, axis=1), np.gradient(gxf, axis=0)
        dyu, dyv = np.gradient(gyf, axis=1), np.gradient(gyf, axis=0)
        self.foot_d = np.where(ground, np.abs(dyu) + np.abs(dyv), 1e3)
        self.foot_s = np.where(ground, np.abs(dxu) + np.abs(dxv), 1e3)
        self.foot_d = np.minimum(self.foot_d, 50.0).astype(np.float32)
        self.foot_s = np.minimum(self.foot_s, 50.0).astype(np.float32)
        # Distance along the ray, for fog.
        self.ground_depth = np.where(ground, np.sqrt(self.gx**2 + self.gy**2 + cam_h**2), np.inf).astype(np.float32)
        # Elevation and azimuth of each pixel's ray in the vehicle frame (rad), for sky and skyline.
        m = (camera.rotation.T @ np.linalg.inv(camera.K)).astype(np.float32)
        r0, r1, r2 = (m[i, 0] * u + m[i, 1] * v + m[i, 2] for i in range(3))
        self.elevation = np.arctan2(r2, np.hypot(r0, r1))
        self.azimuth = np.arctan2(r1, r0)
        rows = np.flatnonzero(ground.any(1))
        self.first_ground_row = int(rows[0]) if len(rows) else h

    # -- ground ------------------------------------------------------------------------------------------

    def _road_coords(self, world: World, origin, rot) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per ground pixel: arc length s, lateral offset d (m) and a mask of where they are valid."""
        ego_s = world.ego.s
        s_samples = np.arange(max(ego_s - 20, 0), min(ego_s + FAR_GROUND, world.centerline.length), 0.5)
        xv, yv = road_to_vehicle(world, s_samples, np.zeros_like(s_samples), origin, rot)
        hv = road_heading_vehicle(world, s_samples, rot)
        # Keep the stretch where the centreline moves away from the car monotonically (x increasing).
        inc = np.concatenate([[True], np.diff(xv) > 0])
        stop = int(np.argmin(inc)) if not inc.all() else len(xv)
        xv, yv, hv, s_samples = xv[:stop], yv[:stop], hv[:stop], s_samples[:stop]
        gx, gy = self.gx, self.gy
        yc = np.interp(gx, xv, yv)
        hc = np.interp(gx, xv, hv)
        sc = np.interp(gx, xv, s_samples)
        dy = gy - yc
        d = dy * np.cos(hc)
        s = sc + dy * np.sin(hc)
        valid = self.ground & (gx >= xv[0]) & (gx <= xv[-1])
        return s.astype(np.float32), d.astype(np.float32), valid

    def _ground(self, world: World, origin, rot, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ground colour [H, W, 3], seg [H, W] and a paint mask, for ground pixels."""
        lay = world.layout
        h, w = self.height, self.width
        r0 = self.first_ground_row
        sl = np.s_[r0:]
        s, d, valid = (a[sl] for a in self._road_coords(world, origin, rot))
        ground = self.ground[sl]
        fd, fs = self.foot_d[sl], self.foot_s[sl]
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

    def _sky(self, world: World) -> np.ndarray:
        """float32 [H, W, 3] sky colour with clouds; rows entirely on the ground are left black."""
        env = world.env
        out = np.zeros((self.height, self.width, 3), np.float32)
        rows = np.flatnonzero(~self.ground.all(1))
        if not len(rows):
            return out
        r1 = int(rows[-1]) + 1
        el_full, az_full = self.elevation[:r1], self.azimuth[:r1]
        el = np.clip(el_full / np.radians(25), 0, 1)[..., None]
        top, hor = np.array(env.sky_top, np.float32), np.array(env.sky_horizon, np.float32)
        sky = hor * (1 - el) ** 1.5 + top * (1 - (1 - el) ** 1.5)
        rng = np.random.default_rng(world.seed + 1)
        clouds = texture("clouds", world.seed)
        az = (az_full - rng.uniform(-3, 3)) % (2 * np.pi)
        cu = az / (2 * np.pi) * 256 * 4
        cv = 256 / (np.tan(np.clip(el_full, 0.02, 1.5)) * 8 + 1)
        c = np.clip(sample_tile(clouds, cu, cv) * 0.5 + rng.uniform(-0.6, 0.4), 0, 1)[..., None]
        cloud_col = np.float32(0.95 if env.time == "day" else 0.25 if env.time == "night" else 0.7)
        out[:r1] = sky * (1 - 0.7 * c) + cloud_col * 0.7 * c
        return out

    def _skyline(self, world: World, img, seg, depth) -> None:
        """Distant hills or tree line just above the horizon, fixed in world azimuth."""
        rng = np.random.default_rng(world.seed + 2)
        profile = texture("skyline", world.seed)[world.seed % 256]
        _, _, road_h = world.centerline.pose(world.ego.s)
        az = (self.azimuth + world.ego.heading + float(road_h) * 0.2) % (2 * np.pi)
        idx = (az / (2 * np.pi) * 255).astype(np.int32)
        height = np.radians(rng.uniform(0.5, 3.0)) * (1 + 0.5 * profile[idx])
        hill = (self.elevation < height) & ~self.ground
        col = np.array(world.horizon_color, np.float32) * (0.85 + 0.1 * profile[idx][..., None])
        img[hill] = col[hill]
        depth[hill] = 2000.0

    def _shadows(self, world: World, origin, rot) -> np.ndarray:
        """float32 [H, W] shadow strength on the ground (0..1), from props and agents, for sun-lit scenes."""
        env = world.env
        out = np.zeros((self.height, self.width), np.float32)
        if env.time == "night" or env.sun_elevation <= 1:
            return out
        tan_el = np.tan(np.radians(max(env.sun_elevation, 5)))
        _, _, road_h = world.centerline.pose(world.ego.s)
        az = np.radians(env.sun_azimuth)
        sun_dir = np.array([np.cos(az), np.sin(az)])  # vehicle frame, pointing towards the sun
        polys = []
        for job_pts, height in self._shadow_casters(world, origin, rot):
            shift = -sun_dir * height / tan_el
            hull = cv2.convexHull(np.concatenate([job_pts, job_pts + shift]).astype(np.float32)).reshape(-1, 2)
            poly = project_polygon(self.camera, np.column_stack([hull, np.zeros(len(hull))]))
            if poly is not None:
                polys.append(np.round(poly * 4).astype(np.int32))
        if polys:
            cv2.fillPoly(out, polys, 1.0, lineType=cv2.LINE_AA, shift=2)
            out = cv2.GaussianBlur(out, (0, 0), 1.5)
        strength = 0.55 if env.sun_elevation < 60 and env.time == "day" else 0.3
        return out * strength * self.ground

    def _shadow_casters(self, world: World, origin, rot):
        """(ground footprint [N, 2] in the vehicle frame, height) of things that cast shadows."""
        for p in world.props:
            if abs(p.s - world.ego.s) > 150:
                continue
            if p.kind == "tree":
                x, y = road_to_vehicle(world, p.s, p.d, origin, rot)
                r = p.height * 0.3
                ang = np.linspace(0, 2 * np.pi, 12, endpoint=False)
                # The canopy's shadow: the canopy circle, lifted to its height, cast onto the ground.
                yield np.column_stack([x + r * np.cos(ang), y + r * np.sin(ang)]), p.height * 0.75
            elif p.kind in ("building", "wall"):
                side = np.sign(p.d) or 1.0
                ss = [p.s, p.s + p.length, p.s + p.length, p.s]
                dd = [p.d, p.d, p.d + side * p.depth, p.d + side * p.depth]
                x, y = road_to_vehicle(world, ss, dd, origin, rot)
                yield np.column_stack([x, y]), p.height
        for a in world.agents:
            if a.cls != "car" or abs(a.s - world.ego.s) > 120:
                continue
            x, y = road_to_vehicle(world, a.s, a.d, origin, rot)
            yaw = float(road_heading_vehicle(world, a.s, rot)) + a.heading_in_road()
            c, s = np.cos(yaw), np.sin(yaw)
            lx, ly = a.length / 2, a.width / 2
            corners = np.array([[lx, ly], [lx, -ly], [-lx, -ly], [-lx, ly]])
            pts = corners @ np.array([[c, s], [-s, c]]) + (x, y)
            yield pts, a.height * 0.8

    # -- objects -----------------------------------------------------------------------------------------

    def _jobs(self, world: World, origin, rot) -> list[DrawJob]:
        env = world.env
        az, el = np.radians(env.sun_azimuth), np.radians(max(env.sun_elevation, 10))
        light = np.array([np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), np.sin(el)])
        night = env.time == "night"
        ambient, diffuse = (0.22, 0.1) if night else (0.55, 0.5) if env.time == "day" else (0.45, 0.3)
        if env.fog > 0 or env.rain > 0:
            ambient, diffuse = ambient + 0.1, diffuse * 0.4
        ctx = _Ctx(world, origin, rot, light, ambient, diffuse, night, self.camera)
        jobs = []
        for p in world.props:
            if -30 < p.s + p.length - world.ego.s and p.s - world.ego.s < 250:
                job = _prop_job(ctx, p)
                if job is not None:
                    jobs.append(job)
        for a in world.agents:
            if -15 < a.s - world.ego.s < 200:
                jobs.extend(_agent_jobs(ctx, a))
        jobs.sort(key=lambda j: -j.depth)
        return jobs

    def render(self, world: World) -> Rendered:
        origin, rot = ego_transform(world)
        h, w = self.height, self.width
        img, seg, _paint = self._ground(world, origin, rot, None)
        env = world.env
        sun_f = {"day": 1.0, "dusk": 0.7, "night": 0.18}[env.time]
        if env.fog > 0 or env.rain > 0:
            sun_f *= 0.75
        img *= sun_f
        shadow = self._shadows(world, origin, rot)
        img *= (1 - shadow)[..., None]
        if env.time == "night":
            img *= self._headlight_gain(world, origin, rot)[..., None]
        depth = np.where(self.ground, self.ground_depth, np.inf).astype(np.float32)
        sky = self._sky(world)
        img = np.where(self.ground[..., None], img, sky)
        self._skyline(world, img, seg, depth)
        if env.rain > 0:  # wet road: darker, with a sheen of sky
            img = np.where(self.ground[..., None], img * (1 - 0.35 * env.rain) + 0.08 * env.rain * sky, img)

        instance = np.zeros((h, w), np.uint16)
        emissive = np.zeros((h, w), np.float32)
        objects: list[ObjectInfo] = []
        scratch = np.zeros((h, w), np.uint8)
        agents = {a.track_id: a for a in world.agents}
        for job in self._jobs(world, origin, rot):
            polys, lines = self._rasterise(job)
            if not polys and not lines:
                continue
            labelled = job.instance != CLUTTER
            if labelled:
                scratch[:] = 0
                for pts, _, _ in polys:
                    cv2.fillPoly(scratch, [pts], 1, shift=2)
                for pts, _, _, t in lines:
                    cv2.polylines(scratch, [pts], False, 1, t, shift=2)
            for pts, col, emis in polys:
                cv2.fillPoly(img, [pts], col, lineType=cv2.LINE_AA, shift=2)
                cv2.fillPoly(instance, [pts], job.instance, shift=2)
                cv2.fillPoly(depth, [pts], job.depth, shift=2)
                # A nearer surface hides the lights behind it (no glow through a truck).
                cv2.fillPoly(emissive, [pts], 1.0 if emis else 0.0, lineType=cv2.LINE_AA, shift=2)
            for pts, col, emis, t in lines:
                cv2.polylines(img, [pts], False, col, t, lineType=cv2.LINE_AA, shift=2)
                cv2.polylines(instance, [pts], False, job.instance, t, shift=2)
                cv2.polylines(depth, [pts], False, job.depth, t, shift=2)
                cv2.polylines(emissive, [pts], False, 1.0 if emis else 0.0, t, lineType=cv2.LINE_AA, shift=2)
            if labelled:
                a = agents[job.instance]
                allp = np.concatenate([p[0] for p in polys] + [ln[0] for ln in lines]).reshape(-1, 2) / 4.0
                x, y = road_to_vehicle(world, a.s, a.d, origin, rot)
                objects.append(
                    ObjectInfo(
                        track_id=job.instance,
                        cls=job.cls,
                        alone_px=int(np.count_nonzero(scratch)),
                        full_box=(
                            float(allp[:, 0].min()),
                            float(allp[:, 1].min()),
                            float(allp[:, 0].max()),
                            float(allp[:, 1].max()),
                        ),
                        distance=float(np.hypot(x, y)),
                        position=(float(x), float(y), float(a.mount)),
                        size=(a.length, a.width, a.height),
                        speed=a.speed * (a.direction or 1.0),
                    )
                )
        seg[instance > 0] = 0  # anything standing on the road hides it
        return Rendered(img, seg, instance, depth, emissive, objects)

    def _rasterise(self, job: DrawJob):
        """Project a job's primitives: ([(pts int32 x4, colour, emissive)], [(pts, colour, emissive, px)])."""
        polys, lines = [], []
        f = self.camera.K[0, 0]
        for p in job.prims:
            if p.line > 0:
                q = project_polygon(self.camera, p.points, closed=False)
                if q is None:
                    continue
                depth = max(float(np.mean(self.camera.to_camera(p.points)[:, 2])), NEAR)
                px = max(1, int(round(p.line * f / depth)))
                lines.append((np.round(q * 4).astype(np.int32), p.color, p.emissive, px))
            else:
                q = project_polygon(self.camera, p.points)
                if q is None or len(q) < 3:
                    continue
                polys.append((np.round(q * 4).astype(np.int32), p.color, p.emissive))
        return polys, lines

    def _headlight_gain(self, world: World, origin, rot) -> np.ndarray:
        """Night: light on the ground from the ego headlights and street lights (multiplier)."""
        x, y = np.nan_to_num(self.gx, nan=1e4), np.nan_to_num(self.gy, nan=1e4)
        beam = np.exp(-((y / (0.25 * x + 1.2)) ** 2)) / (1 + (x / 28) ** 2) * (x > 2)
        gain = 1 + 5.0 * beam
        if world.env.street_lights:
            for p in world.props:
                if p.kind == "pole" and -10 < p.s - world.ego.s < 120:
                    px, py = road_to_vehicle(world, p.s, p.d - np.sign(p.d) * 1.5, origin, rot)
                    gain += 3.0 * np.exp(-((x - px) ** 2 + (y - py) ** 2) / 30.0)
        return gain.astype(np.float32) * self.ground + (~self.ground)


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


# ----------------------------------------------------------------------------------------------------------
# Object geometry


@dataclass
class _Ctx:
    world: World
    origin: np.ndarray
    rot: np.ndarray
    light: np.ndarray
    ambient: float
    diffuse: float
    night: bool
    camera: CameraModel

    def place(self, s, d) -> tuple[float, float]:
        x, y = road_to_vehicle(self.world, s, d, self.origin, self.rot)
        return float(x), float(y)

    def yaw(self, s) -> float:
        return float(road_heading_vehicle(self.world, s, self.rot))

    def shade(self, color, normal):
        return _shade(color, normal, self.light, self.ambient, self.diffuse)

    def cam_pos(self) -> np.ndarray:
        return np.array([0.0, 0.0, self.camera.mounting.height_m])


def _box_faces(center, yaw, lo, hi):
    """Faces of an oriented box: local x in [lo0, hi0], y in [lo1, hi1], z in [lo2, hi2].

    Returns [(corners [4, 3] vehicle frame, outward normal [3], name)] for the 6 faces.
    """
    c, s = np.cos(yaw), np.sin(yaw)
    r = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    x0, y0, z0 = lo
    x1, y1, z1 = hi
    corners = {
        "back": ([[x0, y0, z0], [x0, y1, z0], [x0, y1, z1], [x0, y0, z1]], [-1, 0, 0]),
        "front": ([[x1, y0, z0], [x1, y0, z1], [x1, y1, z1], [x1, y1, z0]], [1, 0, 0]),
        "right": ([[x0, y0, z0], [x0, y0, z1], [x1, y0, z1], [x1, y0, z0]], [0, -1, 0]),
        "left": ([[x0, y1, z0], [x1, y1, z0], [x1, y1, z1], [x0, y1, z1]], [0, 1, 0]),
        "top": ([[x0, y0, z1], [x0, y1, z1], [x1, y1, z1], [x1, y0, z1]], [0, 0, 1]),
        "bottom": ([[x0, y0, z0], [x1, y0, z0], [x1, y1, z0], [x0, y1, z0]], [0, 0, -1]),
    }
    out = []
    for name, (pts, n) in corners.items():
        p = np.array(pts, float) @ r.T + np.array([center[0], center[1], 0.0])
        out.append((p, r @ np.array(n, float), name))
    return out


def _visible(face_pts: np.ndarray, normal: np.ndarray, cam: np.ndarray) -> bool:
    return float(normal @ (cam - face_pts.mean(0))) > 0


def _local(center, yaw, pts):
    c, s = np.cos(yaw), np.sin(yaw)
    p = np.asarray(pts, float)
    return np.column_stack([center[0] + c * p[:, 0] - s * p[:, 1], center[1] + s * p[:, 0] + c * p[:, 1], p[:, 2]])


def _car_prims(ctx: _Ctx, a: Agent, center, yaw) -> list[Primitive]:
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
            for pts, n, _ in _box_faces(center, yaw, lo, hi):
                if _visible(pts, n, cam):
                    prims.append(Primitive(pts, ctx.shade((0.06, 0.06, 0.06), n)))
    for lo, hi, color, glass_sides in parts:
        for pts, n, name in _box_faces(center, yaw, lo, hi):
            if not _visible(pts, n, cam) or name == "bottom":
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
        face_n = _local((0, 0), yaw, [[sign, 0, 0]])[0]
        face_pt = _local(center, yaw, [[x, 0, body_top]])[0]
        if not _visible(face_pt[None], face_n, cam):
            continue
        zl = body_top - 0.18
        if name == "back":
            color, emis = ((0.1, 0.1, 0.95), True) if ctx.night else ((0.12, 0.12, 0.7), False)
        else:
            color, emis = ((1.0, 1.0, 1.0), True) if ctx.night else ((0.85, 0.85, 0.8), False)
        for y in (-W / 2 + 0.12, W / 2 - 0.42):
            pts = _local(center, yaw, [[x, y, zl], [x, y + 0.3, zl], [x, y + 0.3, zl + 0.13], [x, y, zl + 0.13]])
            prims.append(Primitive(pts, color, emissive=emis))
        pts = _local(
            center,
            yaw,
            [[x, -0.26, clear + 0.12], [x, 0.26, clear + 0.12], [x, 0.26, clear + 0.23], [x, -0.26, clear + 0.23]],
        )
        prims.append(Primitive(pts, ctx.shade((0.85, 0.88, 0.88), face_n)))
    return prims


def _billboard_axes(center, cam_xy) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors: ``right`` across the view ray (horizontal) and ``toward`` the camera."""
    ray = np.array([center[0] - cam_xy[0], center[1] - cam_xy[1]])
    ray /= np.linalg.norm(ray) + 1e-9
    return np.array([ray[1], -ray[0], 0.0]), np.array([-ray[0], -ray[1], 0.0])


def _person_prims(ctx: _Ctx, a: Agent, center, walk_dir: np.ndarray, skin) -> list[Primitive]:
    H = a.height
    right, _ = _billboard_axes(center, (0.0, 0.0))
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


def _cyclist_prims(ctx: _Ctx, a: Agent, center, yaw) -> list[Primitive]:
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
    right, _ = _billboard_axes(head, (0.0, 0.0))
    hr = 0.13
    ring = head + np.outer(np.cos(ang), right) * hr + np.outer(np.sin(ang), up) * hr
    prims.append(Primitive(ring, ctx.shade((0.2, 0.6, 0.9), up)))
    return prims


def _sign_prims(ctx: _Ctx, a: Agent, center, yaw) -> tuple[list[Primitive], list[Primitive]]:
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


def _agent_jobs(ctx: _Ctx, a: Agent) -> list[DrawJob]:
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


def _prop_job(ctx: _Ctx, p: Prop) -> DrawJob | None:
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
        for pts, n, name in _box_faces(center, yaw, (-L / 2, y_lo, 0.0), (L / 2, y_hi, p.height)):
            if name == "bottom" or not _visible(pts, n, cam):
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
    right, _ = _billboard_axes(center, (0.0, 0.0))
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


def _windows(ctx: _Ctx, rng, center, yaw, L, y_face, p: Prop, normal) -> list[Primitive]:
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
            pts = _local(
                center, yaw, [[x0, y, z0], [x0 + win_w, y, z0], [x0 + win_w, y, z0 + win_h], [x0, y, z0 + win_h]]
            )
            on = ctx.night and rng.random() < 0.3
            prims.append(Primitive(pts, lit if on else ctx.shade(glass, normal), emissive=on))
    return prims
