"""The rasteriser core of the synthetic renderer: the draw-list types, road ↔ vehicle-frame geometry,
projection and near-plane clipping, shading, procedural textures, and the per-pixel ground rays of a camera.

What is drawn lives beside it: ``road.py`` (the ground: asphalt, kerbs, verges, paint), ``agents.py``
(vehicles, people, signs), ``props.py`` (buildings, walls, trees, poles); ``render.py`` puts a frame together.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import cv2
import numpy as np

from perception.camera_model import CameraModel
from perception.data.synth.world import World

CLUTTER = 65535  # instance id of unlabelled geometry (buildings, trees, poles, sign posts)
NEAR = 0.3  # near clipping plane (m)
FAR_GROUND = 400.0  # ground beyond this is not labelled (ignore): the road is not modelled that far
IGNORE = 255


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


def shade(color, normal: np.ndarray, light: np.ndarray, ambient: float, diffuse: float):
    f = ambient + diffuse * max(0.0, float(normal @ light))
    return tuple(float(c * f) for c in color)


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


class GroundRays:
    """A camera's per-pixel rays, computed once per camera: where each pixel's ray meets the ground (vehicle
    frame, m), the ground footprint of each pixel, the distance along the ray, and each ray's elevation and
    azimuth.

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


@dataclass
class DrawContext:
    """What the object builders need of a frame: the world, the ego pose, the light and the camera."""

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
        return shade(color, normal, self.light, self.ambient, self.diffuse)

    def cam_pos(self) -> np.ndarray:
        return np.array([0.0, 0.0, self.camera.mounting.height_m])


def box_faces(center, yaw, lo, hi):
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


def visible(face_pts: np.ndarray, normal: np.ndarray, cam: np.ndarray) -> bool:
    return float(normal @ (cam - face_pts.mean(0))) > 0


def local(center, yaw, pts):
    c, s = np.cos(yaw), np.sin(yaw)
    p = np.asarray(pts, float)
    return np.column_stack([center[0] + c * p[:, 0] - s * p[:, 1], center[1] + s * p[:, 0] + c * p[:, 1], p[:, 2]])


def billboard_axes(center, cam_xy) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors: ``right`` across the view ray (horizontal) and ``toward`` the camera."""
    ray = np.array([center[0] - cam_xy[0], center[1] - cam_xy[1]])
    ray /= np.linalg.norm(ray) + 1e-9
    return np.array([ray[1], -ray[0], 0.0]), np.array([-ray[0], -ray[1], 0.0])


def rasterise(camera: CameraModel, job: DrawJob):
    """Project a job's primitives: ([(pts int32 x4, colour, emissive)], [(pts, colour, emissive, px)])."""
    polys, lines = [], []
    f = camera.K[0, 0]
    for p in job.prims:
        if p.line > 0:
            q = project_polygon(camera, p.points, closed=False)
            if q is None:
                continue
            depth = max(float(np.mean(camera.to_camera(p.points)[:, 2])), NEAR)
            px = max(1, int(round(p.line * f / depth)))
            lines.append((np.round(q * 4).astype(np.int32), p.color, p.emissive, px))
        else:
            q = project_polygon(camera, p.points)
            if q is None or len(q) < 3:
                continue
            polys.append((np.round(q * 4).astype(np.int32), p.color, p.emissive))
    return polys, lines
