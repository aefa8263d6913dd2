"""Rasterise a ``World`` seen from the ego camera into an ideal pinhole image with exact label buffers.

The ground is shaded per pixel (``road.py``): every pixel below the horizon is cast onto the ground plane and
turned into road coordinates (s, d), so asphalt texture, paint, kerbs and verges are placed in metres and
seen in correct perspective. Objects (``agents.py``: vehicles, people, signs; ``props.py``: buildings,
walls, trees, poles) are lists of 3D polygons drawn far to near (painter's order) into the image, an
instance-id buffer and the segmentation mask; boxes come from the instance buffer, so they hold only the
visible part of each object. ``raster.py`` is the core they share (projection, shading, textures, rays).
Here: the sky, the skyline, shadows, night lighting, and the frame put together.

Lens distortion, weather and sensor effects are applied afterwards (``effects.py``).
"""

from __future__ import annotations

import cv2
import numpy as np

from perception.camera_model import CameraModel
from perception.data.synth.agents import agent_jobs
from perception.data.synth.props import prop_job
from perception.data.synth.raster import (
    CLUTTER,
    DrawContext,
    DrawJob,
    GroundRays,
    ObjectInfo,
    Rendered,
    ego_transform,
    project_polygon,
    rasterise,
    road_heading_vehicle,
    road_to_vehicle,
    sample_tile,
    texture,
)
from perception.data.synth.road import shade_ground
from perception.data.synth.world import World


class Renderer:
    """Renders worlds for one camera; caches the per-pixel ground rays of that camera.

    Args:
        camera: pinhole camera (distortion is ignored here and applied by ``effects.distort``).
    """

    def __init__(self, camera: CameraModel):
        self.camera = camera
        self.rays = GroundRays(camera)
        self.width, self.height = self.rays.width, self.rays.height

    def _sky(self, world: World) -> np.ndarray:
        """float32 [H, W, 3] sky colour with clouds; rows entirely on the ground are left black."""
        env = world.env
        out = np.zeros((self.height, self.width, 3), np.float32)
        rows = np.flatnonzero(~self.rays.ground.all(1))
        if not len(rows):
            return out
        r1 = int(rows[-1]) + 1
        el_full, az_full = self.rays.elevation[:r1], self.rays.azimuth[:r1]
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
        az = (self.rays.azimuth + world.ego.heading + float(road_h) * 0.2) % (2 * np.pi)
        idx = (az / (2 * np.pi) * 255).astype(np.int32)
        height = np.radians(rng.uniform(0.5, 3.0)) * (1 + 0.5 * profile[idx])
        hill = (self.rays.elevation < height) & ~self.rays.ground
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
        return out * strength * self.rays.ground

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

    def _jobs(self, world: World, origin, rot) -> list[DrawJob]:
        env = world.env
        az, el = np.radians(env.sun_azimuth), np.radians(max(env.sun_elevation, 10))
        light = np.array([np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), np.sin(el)])
        night = env.time == "night"
        ambient, diffuse = (0.22, 0.1) if night else (0.55, 0.5) if env.time == "day" else (0.45, 0.3)
        if env.fog > 0 or env.rain > 0:
            ambient, diffuse = ambient + 0.1, diffuse * 0.4
        ctx = DrawContext(world, origin, rot, light, ambient, diffuse, night, self.camera)
        jobs = []
        for p in world.props:
            if -30 < p.s + p.length - world.ego.s and p.s - world.ego.s < 250:
                job = prop_job(ctx, p)
                if job is not None:
                    jobs.append(job)
        for a in world.agents:
            if -15 < a.s - world.ego.s < 200:
                jobs.extend(agent_jobs(ctx, a))
        jobs.sort(key=lambda j: -j.depth)
        return jobs

    def render(self, world: World) -> Rendered:
        origin, rot = ego_transform(world)
        h, w = self.height, self.width
        img, seg, _paint = shade_ground(self.rays, world, origin, rot, None)
        env = world.env
        sun_f = {"day": 1.0, "dusk": 0.7, "night": 0.18}[env.time]
        if env.fog > 0 or env.rain > 0:
            sun_f *= 0.75
        img *= sun_f
        shadow = self._shadows(world, origin, rot)
        img *= (1 - shadow)[..., None]
        if env.time == "night":
            img *= self._headlight_gain(world, origin, rot)[..., None]
        depth = np.where(self.rays.ground, self.rays.ground_depth, np.inf).astype(np.float32)
        sky = self._sky(world)
        img = np.where(self.rays.ground[..., None], img, sky)
        self._skyline(world, img, seg, depth)
        if env.rain > 0:  # wet road: darker, with a sheen of sky
            img = np.where(self.rays.ground[..., None], img * (1 - 0.35 * env.rain) + 0.08 * env.rain * sky, img)

        instance = np.zeros((h, w), np.uint16)
        emissive = np.zeros((h, w), np.float32)
        objects: list[ObjectInfo] = []
        scratch = np.zeros((h, w), np.uint8)
        agents = {a.track_id: a for a in world.agents}
        for job in self._jobs(world, origin, rot):
            polys, lines = rasterise(self.camera, job)
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

    def _headlight_gain(self, world: World, origin, rot) -> np.ndarray:
        """Night: light on the ground from the ego headlights and street lights (multiplier)."""
        x, y = np.nan_to_num(self.rays.gx, nan=1e4), np.nan_to_num(self.rays.gy, nan=1e4)
        beam = np.exp(-((y / (0.25 * x + 1.2)) ** 2)) / (1 + (x / 28) ** 2) * (x > 2)
        gain = 1 + 5.0 * beam
        if world.env.street_lights:
            for p in world.props:
                if p.kind == "pole" and -10 < p.s - world.ego.s < 120:
                    px, py = road_to_vehicle(world, p.s, p.d - np.sign(p.d) * 1.5, origin, rot)
                    gain += 3.0 * np.exp(-((x - px) ** 2 + (y - py) ** 2) / 30.0)
        return gain.astype(np.float32) * self.rays.ground + (~self.rays.ground)
