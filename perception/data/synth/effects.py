"""Camera and weather effects on a rendered frame: fog, glare, rain, exposure, hood, lens distortion, blur,
sensor noise and JPEG artefacts. Geometric effects (hood, distortion) change the label buffers the same
way as the image; photometric ones leave labels alone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from perception.camera_model import CameraModel
from perception.data.synth.raster import Rendered
from perception.data.synth.world import World


@dataclass(frozen=True)
class EffectOptions:
    """Probabilities and ranges of the appearance effects (per frame; a clip draws them once)."""

    distortion_p: float = 0.25
    distortion_k1: tuple[float, float] = (-0.32, -0.05)
    hood_p: float = 0.3
    motion_blur_p: float = 0.2
    defocus_p: float = 0.1
    noise_sigma: tuple[float, float] = (1.0, 6.0)  # grey levels (night doubles it)
    jpeg_p: float = 0.5
    jpeg_quality: tuple[int, int] = (35, 95)
    vignette_p: float = 0.5


@dataclass(frozen=True)
class EffectDraw:
    """The effect choices for one frame or one whole clip (so a clip does not flicker between looks)."""

    k1: float
    k2: float
    hood: float  # fraction of the height the hood covers (0 none)
    hood_color: tuple[float, float, float]
    motion_blur: int  # kernel length in pixels (0 none)
    motion_angle: float
    defocus: float
    noise_sigma: float
    jpeg_quality: int  # 0 = no JPEG round trip
    vignette: float
    white_balance: tuple[float, float, float]
    gamma: float


def draw_effects(rng: np.random.Generator, world: World, opts: EffectOptions = EffectOptions()) -> EffectDraw:
    distort = rng.random() < opts.distortion_p
    k1 = float(rng.uniform(*opts.distortion_k1)) if distort else 0.0
    night = world.env.time == "night"
    sigma = float(rng.uniform(*opts.noise_sigma)) * (2.0 if night else 1.0)
    return EffectDraw(
        k1=k1,
        k2=float(-0.3 * k1 * rng.uniform(0, 0.5)) if distort else 0.0,
        hood=float(rng.uniform(0.06, 0.14)) if rng.random() < opts.hood_p else 0.0,
        hood_color=tuple(float(v) for v in rng.choice([(0.05, 0.05, 0.05), (0.25, 0.25, 0.27), (0.6, 0.6, 0.62)])),
        motion_blur=int(rng.integers(3, 10)) if rng.random() < opts.motion_blur_p else 0,
        motion_angle=float(rng.normal(0, 10)),
        defocus=float(rng.uniform(0.6, 1.4)) if rng.random() < opts.defocus_p else 0.0,
        noise_sigma=sigma,
        jpeg_quality=int(rng.integers(*opts.jpeg_quality)) if rng.random() < opts.jpeg_p else 0,
        vignette=float(rng.uniform(0.1, 0.35)) if rng.random() < opts.vignette_p else 0.0,
        white_balance=tuple(float(v) for v in np.clip(rng.normal(1, 0.04, 3), 0.85, 1.15)),
        gamma=float(rng.uniform(0.85, 1.15)),
    )


def lens_camera(camera: CameraModel, draw: EffectDraw) -> CameraModel:
    """The camera as recorded: the same intrinsics plus the drawn radial distortion."""
    if draw.k1 == 0.0:
        return camera
    # r (1 + k1 r^2) stops growing at r^2 = -1 / (3 k1); past that point the lens would fold the image
    # corners back onto themselves. Keep the corner (normalised radius r_c) well inside: |k1| <= 0.6 * 4 / (27 r_c^2).
    w, h = camera.image_size
    k = camera.K
    r_c2 = max(((w - k[0, 2]) / k[0, 0]) ** 2, (k[0, 2] / k[0, 0]) ** 2) + max(
        ((h - k[1, 2]) / k[1, 1]) ** 2, (k[1, 2] / k[1, 1]) ** 2
    )
    k1 = max(draw.k1, -0.6 * 4 / (27 * r_c2))
    return replace(camera, dist_coeffs=(float(k1), float(draw.k2 * k1 / draw.k1), 0.0, 0.0, 0.0))


class Distorter:
    """Remaps ideal pinhole buffers to how a lens with radial distortion records them.

    Barrel distortion pulls scene content from outside the pinhole frame into the corners, so the ideal
    image is rendered with a margin (``render_camera``: same focal length, larger canvas) and every
    recorded pixel samples it; nothing at the border is invented or left unlabelled.
    """

    def __init__(self, camera: CameraModel):
        w, h = camera.image_size
        grid = np.stack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)), -1)
        # For each recorded (distorted) pixel, the ideal pixel it sees.
        # OpenCV's default 5 iterations are off by pixels near the edge of strong lenses; iterate to 1e-9.
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-9)
        und = cv2.undistortPoints(
            grid.reshape(-1, 1, 2), camera.K, camera.D, R=np.eye(3), P=camera.K, criteria=criteria
        )
        und = und.reshape(h, w, 2)
        left = int(np.ceil(max(0.0, -und[..., 0].min()))) + 2
        top = int(np.ceil(max(0.0, -und[..., 1].min()))) + 2
        right = int(np.ceil(max(0.0, und[..., 0].max() - (w - 1)))) + 2
        bottom = int(np.ceil(max(0.0, und[..., 1].max() - (h - 1)))) + 2
        k = camera.K
        k[0, 2] += left
        k[1, 2] += top
        self.render_camera = replace(
            camera,
            image_size=(w + left + right, h + top + bottom),
            camera_matrix=tuple(tuple(r) for r in k.tolist()),
            dist_coeffs=(),
        )
        self.map = (und + np.array([left, top], np.float32)).astype(np.float32)

    def image(self, img: np.ndarray) -> np.ndarray:
        return cv2.remap(img, self.map, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def labels(self, buf: np.ndarray, outside: int) -> np.ndarray:
        return cv2.remap(buf, self.map, None, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=outside)


def hood_mask(h: int, w: int, hood: float) -> np.ndarray:
    """bool [h, w]: the pixels the ego car's bonnet covers when it takes ``hood`` of the frame height (the
    ``effects.hood`` of a synthetic sample's meta); all False for 0."""
    mask = np.zeros((h, w), np.uint8)
    if hood > 0:
        top = int(h * (1 - hood))
        cv2.ellipse(mask, (w // 2, h + int(h * 0.05)), (int(w * 0.75), h - top + int(h * 0.05)), 0, 180, 360, 1, -1)
    return mask.astype(bool)


def apply_hood(r: Rendered, draw: EffectDraw, world: World) -> None:
    """Paint the ego car's bonnet over the bottom of the frame (background in the labels)."""
    if draw.hood <= 0:
        return
    h, w = r.seg.shape
    m = hood_mask(h, w, draw.hood)
    col = np.array(draw.hood_color, np.float32)
    shade = np.linspace(1.0, 0.6, h, dtype=np.float32)[:, None, None]
    sky = np.array(world.env.sky_horizon, np.float32) * 0.25
    r.image[m] = np.broadcast_to(col * shade + sky * (1 - shade), (h, w, 3))[m]
    r.seg[m] = 0
    r.instance[m] = 0
    r.depth[m] = 1.0


def photometric(img: np.ndarray, r: Rendered, world: World, draw: EffectDraw, rng: np.random.Generator) -> np.ndarray:
    """Fog, glare, rain streaks, exposure, vignetting, blur and noise on a float image -> uint8 BGR."""
    env = world.env
    h, w = img.shape[:2]
    if env.fog > 0:
        t = np.exp(-env.fog * np.minimum(r.depth, 3000.0))[..., None]
        fog_col = np.array(env.sky_horizon, np.float32) * (0.3 if env.time == "night" else 0.95)
        img = img * t + fog_col * (1 - t)
    if r.emissive.any():
        glow = cv2.GaussianBlur(r.emissive, (0, 0), max(2.0, w / 200))
        img = img + (glow * (1.2 if env.time == "night" else 0.3))[..., None] * np.array([0.9, 0.95, 1.0], np.float32)
    if env.rain > 0:
        streaks = np.zeros((h, w), np.float32)
        n = int(env.rain * w * h / 900)
        xs, ys = rng.integers(0, w, n), rng.integers(0, h, n)
        length = rng.integers(h // 40 + 2, h // 12 + 3, n)
        slant = rng.normal(0.15, 0.05)
        for x, y, ln in zip(xs, ys, length, strict=True):
            cv2.line(streaks, (int(x), int(y)), (int(x + slant * ln), int(y + ln)), 1.0, 1, cv2.LINE_AA)
        img = img * (1 - 0.12 * env.rain) + (streaks * 0.18 * env.rain)[..., None]
        img = cv2.GaussianBlur(img, (0, 0), 0.6)
    img = img * env.exposure * np.array(draw.white_balance, np.float32)
    if draw.vignette > 0:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        rr = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
        img = img * (1 - draw.vignette * np.clip(rr / 2, 0, 1))[..., None]
    img = np.clip(img, 0, 1) ** draw.gamma
    if draw.motion_blur:
        k = np.zeros((draw.motion_blur, draw.motion_blur), np.float32)
        k[draw.motion_blur // 2, :] = 1.0
        rot = cv2.getRotationMatrix2D(((draw.motion_blur - 1) / 2, (draw.motion_blur - 1) / 2), draw.motion_angle, 1)
        k = cv2.warpAffine(k, rot, k.shape[::-1])
        img = cv2.filter2D(img, -1, k / max(k.sum(), 1e-6))
    if draw.defocus:
        img = cv2.GaussianBlur(img, (0, 0), draw.defocus)
    out = img * 255.0 + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(draw.noise_sigma)
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    if draw.jpeg_quality:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, draw.jpeg_quality])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out
