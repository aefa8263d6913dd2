"""The synthetic driving world: a road with lanes and markings, roadside clutter, agents, and light.

Everything lives in road coordinates (s along the centreline in metres, d to its left in metres), so one
sampled world renders as a single frame or as a clip in which the ego car drives along the road and the
agents move along their lanes with stable ids. ``render.py`` turns a world and an ego pose into pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

DS = 0.5  # centreline sampling step (m)


@dataclass(frozen=True)
class Centerline:
    """A planar curve sampled every DS metres: arc length s [M], world x/y [M], heading [M] (rad)."""

    s: np.ndarray
    x: np.ndarray
    y: np.ndarray
    heading: np.ndarray

    @staticmethod
    def from_curvature(curvature: np.ndarray) -> Centerline:
        """Integrate a curvature profile [M] (1/m, positive turns left) sampled every DS metres."""
        heading = np.concatenate([[0.0], np.cumsum(curvature[:-1] * DS)])
        x = np.concatenate([[0.0], np.cumsum(np.cos(heading[:-1]) * DS)])
        y = np.concatenate([[0.0], np.cumsum(np.sin(heading[:-1]) * DS)])
        return Centerline(np.arange(len(curvature)) * DS, x, y, heading)

    @property
    def length(self) -> float:
        return float(self.s[-1])

    def pose(self, s: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World x, y and heading at arc length(s), linearly interpolated (clamped to the ends)."""
        return np.interp(s, self.s, self.x), np.interp(s, self.s, self.y), np.interp(s, self.s, self.heading)

    def to_world(self, s, d) -> tuple[np.ndarray, np.ndarray]:
        """Road coordinates (s, d) -> world x, y; d is to the left of the direction of travel."""
        x, y, h = self.pose(s)
        return x - np.sin(h) * d, y + np.cos(h) * d


@dataclass(frozen=True)
class Marking:
    """A painted line along the road at lateral offset ``d`` (m).

    style: solid, dashed, double (two solid lines 0.1 m apart either side of d) or none.
    """

    d: float
    style: str
    color: str  # white or yellow
    width: float = 0.15
    dash: float = 3.0
    period: float = 12.0
    phase: float = 0.0
    wear: float = 0.0  # 0 fresh paint .. 1 almost gone

    @property
    def visible(self) -> bool:
        return self.style != "none"


@dataclass(frozen=True)
class RoadLayout:
    """Cross-section of the road. Lanes are numbered left to right; lane i spans boundaries i and i+1."""

    lane_width: float
    n_lanes: int
    n_oncoming: int  # the leftmost n_oncoming lanes carry traffic towards the ego car
    markings: tuple[Marking, ...]  # n_lanes + 1 boundaries, left edge first
    shoulder_left: float
    shoulder_right: float
    sidewalk_left: float  # 0: none (grass or dirt verge instead)
    sidewalk_right: float
    verge: str  # grass, dirt or concrete
    asphalt: tuple[float, float, float]  # BGR 0..1
    crossing_s: float | None = None  # zebra crossing start (m along the road); a stop line sits before it
    crossing_len: float = 4.0

    @property
    def boundaries(self) -> np.ndarray:
        """[n_lanes + 1] lateral offsets of the lane boundaries, left edge first (d decreases)."""
        return (self.n_lanes / 2 - np.arange(self.n_lanes + 1)) * self.lane_width

    @property
    def left_edge(self) -> float:
        return self.n_lanes / 2 * self.lane_width + self.shoulder_left

    @property
    def right_edge(self) -> float:
        return -self.n_lanes / 2 * self.lane_width - self.shoulder_right

    def lane_center(self, lane: int) -> float:
        b = self.boundaries
        return float((b[lane] + b[lane + 1]) / 2)


@dataclass(frozen=True)
class Prop:
    """Unlabelled roadside clutter: building, tree, pole (street light) or wall, in road coordinates."""

    kind: str
    s: float
    d: float
    length: float  # along the road
    depth: float  # away from the road
    height: float
    color: tuple[float, float, float]
    seed: int


@dataclass(frozen=True)
class Agent:
    """A labelled object: car, pedestrian, cyclist or traffic_sign.

    ``s``/``d`` locate the ground contact centre; ``direction`` +1 travels with increasing s, -1 against
    it, 0 faces across the road (crossing pedestrians) ; ``speed`` in m/s along that direction.
    """

    track_id: int
    cls: str
    s: float
    d: float
    length: float
    width: float
    height: float
    color: tuple[float, float, float]
    direction: float = 1.0
    speed: float = 0.0
    shape: str = ""  # car body style or sign type
    phase: float = 0.0  # walking/pedalling phase (rad)
    lateral_speed: float = 0.0  # m/s in d (crossing pedestrians, lane changes)
    mount: float = 0.0  # sign plate bottom height (m)

    def heading_in_road(self) -> float:
        """Heading relative to the road tangent (rad)."""
        if self.direction == 0:
            return np.pi / 2 if self.lateral_speed >= 0 else -np.pi / 2
        return 0.0 if self.direction > 0 else np.pi


@dataclass(frozen=True)
class Environment:
    """Light and weather. Angles in degrees; ``time`` is day, dusk or night."""

    time: str
    sun_elevation: float
    sun_azimuth: float  # relative to the road direction at the ego car, positive to the left
    fog: float  # extinction coefficient 1/m (0 clear)
    rain: float  # 0..1
    sky_top: tuple[float, float, float]
    sky_horizon: tuple[float, float, float]
    exposure: float = 1.0
    street_lights: bool = False


@dataclass(frozen=True)
class EgoState:
    """The ego car on the road: arc length s, lateral offset d (m, left positive), heading error (rad)."""

    s: float
    d: float
    heading: float = 0.0
    speed: float = 12.0
    lane: int = 0


@dataclass(frozen=True)
class World:
    centerline: Centerline
    layout: RoadLayout
    props: tuple[Prop, ...]
    agents: tuple[Agent, ...]
    env: Environment
    ego: EgoState
    seed: int
    horizon_color: tuple[float, float, float] = (0.55, 0.6, 0.55)
    extras: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------
# Sampling


def _rand_color(rng: np.random.Generator, palette: list[tuple[float, float, float]], jitter: float = 0.06):
    c = np.array(palette[rng.integers(len(palette))]) + rng.normal(0, jitter, 3)
    return tuple(float(v) for v in np.clip(c, 0.02, 0.98))


# BGR, 0..1
CAR_COLORS = [
    (0.9, 0.9, 0.9),
    (0.12, 0.12, 0.12),
    (0.55, 0.55, 0.55),
    (0.7, 0.72, 0.75),
    (0.15, 0.15, 0.65),
    (0.6, 0.3, 0.12),
    (0.2, 0.35, 0.2),
    (0.1, 0.2, 0.35),
    (0.85, 0.85, 0.82),
    (0.2, 0.5, 0.8),
    (0.35, 0.3, 0.3),
]
CLOTHES = [(0.15, 0.15, 0.15), (0.5, 0.3, 0.15), (0.2, 0.2, 0.6), (0.7, 0.7, 0.7), (0.3, 0.5, 0.3), (0.1, 0.1, 0.3)]
BUILDING_COLORS = [(0.55, 0.6, 0.65), (0.35, 0.4, 0.55), (0.7, 0.72, 0.72), (0.45, 0.45, 0.45), (0.5, 0.6, 0.7)]
CAR_SHAPES = {  # length, width, height, cabin start/end fraction, cabin top height fraction
    "sedan": (4.6, 1.8, 1.45),
    "hatchback": (4.0, 1.75, 1.5),
    "suv": (4.7, 1.9, 1.75),
    "van": (5.2, 2.0, 2.2),
    "truck": (8.0, 2.5, 3.4),
    "pickup": (5.3, 1.95, 1.8),
}
SIGN_TYPES = ("prohibitory", "warning", "mandatory", "stop", "speed", "info", "yield")


def sample_curvature(rng: np.random.Generator, length_m: float, curvy: float) -> np.ndarray:
    """Piecewise clothoid curvature profile: straights and arcs joined by linear ramps."""
    n = int(length_m / DS) + 1
    k = np.zeros(n)
    i, cur = 0, 0.0
    while i < n:
        seg = int(rng.uniform(40, 160) / DS)
        target = 0.0 if rng.random() > curvy else rng.choice([-1, 1]) / rng.uniform(120, 600)
        ramp = int(rng.uniform(20, 60) / DS)
        j = min(i + seg, n)
        r = min(ramp, j - i)
        k[i : i + r] = np.linspace(cur, target, r, endpoint=False) if r else []
        k[i + r : j] = target
        cur, i = target, j
    return k


def sample_layout(rng: np.random.Generator, markings: str = "any") -> RoadLayout:
    """A random road; ``markings`` "us" makes it US-marked (3 m dashes every 12 m, yellow centre line)."""
    style = rng.choice(["highway", "urban", "rural"], p=[0.35, 0.4, 0.25])
    n_lanes = int(rng.choice([1, 2, 3, 4], p=[0.1, 0.4, 0.25, 0.25]))
    if style == "highway":
        n_oncoming = 0
        lane_width = rng.uniform(3.4, 3.8)
    elif n_lanes == 1:
        n_oncoming = 0
        lane_width = rng.uniform(3.0, 4.0)
    else:
        n_oncoming = int(rng.integers(0, n_lanes // 2 + 1)) if rng.random() < 0.7 else 0
        lane_width = rng.uniform(2.9, 3.6)
    us = rng.random() < 0.5 or markings == "us"  # US convention: yellow centre line; else all white
    dash, period = (3.0, 12.0) if us else (rng.choice([3.0, 4.5, 6.0]), rng.choice([9.0, 12.0, 15.0]))
    wear = float(rng.choice([0.0, rng.uniform(0.1, 0.6)], p=[0.5, 0.5]))
    width = float(rng.uniform(0.1, 0.2))
    markings = []
    for b in range(n_lanes + 1):
        edge = b in (0, n_lanes)
        centre = n_oncoming and b == n_oncoming
        if edge:
            st = "solid" if rng.random() < 0.85 else "none"
            if style == "urban" and rng.random() < 0.4:
                st = "none"
            color = "yellow" if (us and b == 0 and n_oncoming == 0 and style == "highway") else "white"
        elif centre:
            st = rng.choice(["double", "solid", "dashed"], p=[0.5, 0.25, 0.25])
            color = "yellow" if us else "white"
        else:
            st, color = "dashed", "white"
        markings.append(
            Marking(
                d=0.0,
                style=str(st),
                color=color,
                width=width * (1.3 if edge else 1.0),
                dash=float(dash),
                period=float(period),
                phase=float(rng.uniform(0, period)),
                wear=float(np.clip(wear + rng.normal(0, 0.05), 0, 0.8)),
            )
        )
    bounds = (n_lanes / 2 - np.arange(n_lanes + 1)) * lane_width
    markings = tuple(replace(m, d=float(bd)) for m, bd in zip(markings, bounds, strict=True))
    shoulder = (lambda: rng.uniform(0.3, 2.8)) if style != "urban" else (lambda: rng.uniform(0.0, 0.6))
    sidewalk = (lambda: rng.uniform(1.5, 4.0)) if style == "urban" else (lambda: 0.0)
    gray = rng.uniform(0.28, 0.5)
    tint = rng.normal(0, 0.015, 3)
    crossing = float(rng.uniform(12, 45)) if style == "urban" and rng.random() < 0.35 else None
    return RoadLayout(
        lane_width=float(lane_width),
        n_lanes=n_lanes,
        n_oncoming=n_oncoming,
        markings=markings,
        shoulder_left=float(shoulder()),
        shoulder_right=float(shoulder()),
        sidewalk_left=float(sidewalk()),
        sidewalk_right=float(sidewalk()),
        verge=str(rng.choice(["grass", "dirt", "grass"] if style != "urban" else ["concrete", "grass"])),
        asphalt=tuple(float(v) for v in np.clip(gray + tint, 0.1, 0.7)),
        crossing_s=crossing,
    )


def sample_environment(rng: np.random.Generator, night_p: float = 0.15, weather_p: float = 0.2) -> Environment:
    u = rng.random()
    time = "night" if u < night_p else "dusk" if u < night_p + 0.1 else "day"
    bad = rng.random() < weather_p
    fog = float(rng.uniform(0.005, 0.04)) if bad and rng.random() < 0.6 else 0.0
    rain = float(rng.uniform(0.3, 1.0)) if bad and (fog == 0.0 or rng.random() < 0.4) else 0.0
    if time == "day":
        overcast = bad or rng.random() < 0.3
        top = (0.85, 0.75, 0.7) if overcast else (0.85, 0.55, 0.3)
        hor = (0.9, 0.88, 0.86) if overcast else (0.95, 0.85, 0.75)
        elev = float(rng.uniform(15, 70)) if not overcast else 80.0
    elif time == "dusk":
        top, hor, elev = (0.55, 0.35, 0.3), (0.45, 0.6, 0.85), float(rng.uniform(2, 10))
    else:
        top, hor, elev = (0.08, 0.04, 0.03), (0.2, 0.15, 0.12), -20.0
    jitter = rng.normal(0, 0.03, 3)
    return Environment(
        time=time,
        sun_elevation=elev,
        sun_azimuth=float(rng.uniform(-180, 180)),
        fog=fog,
        rain=rain,
        sky_top=tuple(float(v) for v in np.clip(np.array(top) + jitter, 0, 1)),
        sky_horizon=tuple(float(v) for v in np.clip(np.array(hor) + jitter, 0, 1)),
        exposure=float(rng.uniform(0.8, 1.2)),
        street_lights=time != "day" and rng.random() < 0.6,
    )


def sample_props(rng: np.random.Generator, layout: RoadLayout, s_max: float) -> tuple[Prop, ...]:
    """Buildings, trees, poles and walls on both sides, from s = 0 to s_max."""
    props = []
    urban = layout.sidewalk_left > 0 or layout.sidewalk_right > 0
    for side in (1, -1):
        edge = (layout.left_edge + layout.sidewalk_left) if side > 0 else (layout.right_edge - layout.sidewalk_right)
        s = float(rng.uniform(-10, 10))
        density = rng.uniform(0.3, 1.0)
        while s < s_max:
            u = rng.random()
            if urban and u < 0.55 * density:
                length = float(rng.uniform(8, 35))
                setback = float(rng.uniform(0.5, 6))
                props.append(
                    Prop(
                        "building",
                        s,
                        edge + side * setback,
                        length,
                        float(rng.uniform(6, 15)),
                        float(rng.uniform(4, 22)),
                        _rand_color(rng, BUILDING_COLORS, 0.08),
                        int(rng.integers(2**31)),
                    )
                )
                s += length + float(rng.uniform(0, 6))
            elif u < 0.8:
                setback = float(rng.uniform(1, 9 if not urban else 2))
                props.append(
                    Prop(
                        "tree",
                        s,
                        edge + side * setback,
                        0.0,
                        0.0,
                        float(rng.uniform(4, 12)),
                        _rand_color(rng, [(0.15, 0.35, 0.2), (0.2, 0.45, 0.35), (0.1, 0.3, 0.25)], 0.05),
                        int(rng.integers(2**31)),
                    )
                )
                s += float(rng.uniform(4, 20) / density)
            elif u < 0.9:
                props.append(
                    Prop(
                        "pole",
                        s,
                        edge + side * 0.4,
                        0.0,
                        0.0,
                        float(rng.uniform(6, 9)),
                        (0.5, 0.5, 0.5),
                        int(rng.integers(2**31)),
                    )
                )
                s += float(rng.uniform(15, 40))
            else:
                length = float(rng.uniform(10, 40))
                props.append(
                    Prop(
                        "wall",
                        s,
                        edge + side * float(rng.uniform(0.5, 4)),
                        length,
                        0.3,
                        float(rng.uniform(0.8, 2.5)),
                        _rand_color(rng, [(0.6, 0.62, 0.6), (0.3, 0.35, 0.45), (0.2, 0.3, 0.25)], 0.05),
                        int(rng.integers(2**31)),
                    )
                )
                s += length + float(rng.uniform(2, 20))
    return tuple(props)


def sample_agents(
    rng: np.random.Generator, layout: RoadLayout, ego: EgoState, s_range: tuple[float, float], density: float
) -> tuple[Agent, ...]:
    """Cars in lanes, pedestrians on sidewalks and crossings, cyclists near the edge, signs at the roadside."""
    agents: list[Agent] = []
    next_id = 1

    def add(**kw) -> None:
        nonlocal next_id
        agents.append(Agent(track_id=next_id, **kw))
        next_id += 1

    s0, s1 = s_range
    for lane in range(layout.n_lanes):
        oncoming = lane < layout.n_oncoming
        d = layout.lane_center(lane)
        s = s0 + float(rng.uniform(0, 25))
        while s < s1:
            if lane == ego.lane and abs(s - ego.s) < 7:
                s = ego.s + 7 + float(rng.uniform(0, 10))
                continue
            shape = str(rng.choice(list(CAR_SHAPES), p=[0.35, 0.2, 0.2, 0.1, 0.07, 0.08]))
            length, width, height = (v * rng.uniform(0.93, 1.07) for v in CAR_SHAPES[shape])
            add(
                cls="car",
                s=s,
                d=d + float(rng.normal(0, 0.2)),
                length=float(length),
                width=float(width),
                height=float(height),
                color=_rand_color(rng, CAR_COLORS),
                direction=-1.0 if oncoming else 1.0,
                speed=float(rng.uniform(6, 20)),
                shape=shape,
            )
            s += float(rng.exponential(35 / density)) + length + 4
    if layout.crossing_s is not None and rng.random() < 0.7:
        for _ in range(int(rng.integers(1, 4))):
            add(
                cls="pedestrian",
                s=layout.crossing_s + float(rng.uniform(0.5, layout.crossing_len - 0.5)),
                d=float(rng.uniform(layout.right_edge, layout.left_edge)),
                length=0.3,
                width=0.5,
                height=float(rng.uniform(1.45, 1.95)),
                color=_rand_color(rng, CLOTHES),
                direction=0.0,
                lateral_speed=float(rng.choice([-1, 1]) * rng.uniform(0.8, 1.6)),
                phase=float(rng.uniform(0, 6.3)),
            )
    for side in (1, -1):
        walk = layout.sidewalk_left if side > 0 else layout.sidewalk_right
        edge = layout.left_edge if side > 0 else layout.right_edge
        n_ped = int(rng.poisson(density * (4.0 if walk > 0 else 1.0)))
        for _ in range(n_ped):
            d = edge + side * (
                float(rng.uniform(0.4, max(walk - 0.3, 0.5))) if walk > 0 else float(rng.uniform(0.5, 2))
            )
            add(
                cls="pedestrian",
                s=float(rng.uniform(s0, s1)),
                d=d,
                length=0.3,
                width=0.5,
                height=float(rng.uniform(1.45, 1.95)),
                color=_rand_color(rng, CLOTHES),
                direction=float(rng.choice([-1, 1])),
                speed=float(rng.uniform(0.8, 1.7)),
                phase=float(rng.uniform(0, 6.3)),
            )
        if rng.random() < 0.6 * density:
            d = edge - side * 0.6 if layout.n_oncoming == 0 or side < 0 else edge - side * 0.6
            add(
                cls="cyclist",
                s=float(rng.uniform(s0 + 5, s1)),
                d=float(d),
                length=1.75,
                width=0.6,
                height=float(rng.uniform(1.6, 1.85)),
                color=_rand_color(rng, CLOTHES),
                direction=1.0 if side < 0 or layout.n_oncoming == 0 else -1.0,
                speed=float(rng.uniform(3, 7)),
                phase=float(rng.uniform(0, 6.3)),
            )
        s = s0 + float(rng.uniform(5, 40))
        while s < s1:
            size = float(rng.uniform(0.55, 0.9))
            walk_w = layout.sidewalk_left if side > 0 else layout.sidewalk_right
            add(
                cls="traffic_sign",
                s=s,
                d=edge + side * (walk_w + float(rng.uniform(0.3, 1.5))),
                length=0.05,
                width=size,
                height=size,
                color=(1.0, 1.0, 1.0),
                direction=-1.0,
                shape=str(rng.choice(SIGN_TYPES)),
                mount=float(rng.uniform(1.6, 2.6)),
            )
            s += float(rng.exponential(60 / density)) + 15
    return tuple(agents)


def sample_world(
    rng: np.random.Generator, length_m: float = 400.0, density: float = 1.0, markings: str = "any", **env_kw
) -> World:
    """One random world; the ego car starts 30 m into the road in a lane of its own direction."""
    layout = sample_layout(rng, markings)
    center = Centerline.from_curvature(sample_curvature(rng, length_m, curvy=float(rng.uniform(0.2, 0.8))))
    lane = int(rng.integers(layout.n_oncoming, layout.n_lanes))
    ego_s = 30.0
    ego = EgoState(
        s=ego_s,
        d=layout.lane_center(lane) + float(rng.normal(0, 0.3)),
        heading=float(np.radians(rng.normal(0, 1.0))),
        speed=float(rng.uniform(8, 25)),
        lane=lane,
    )
    if layout.crossing_s is not None:
        layout = replace(layout, crossing_s=ego_s + layout.crossing_s)
    env = sample_environment(rng, **env_kw)
    hue = rng.choice([(0.45, 0.55, 0.5), (0.55, 0.6, 0.65), (0.35, 0.45, 0.4)])
    return World(
        centerline=center,
        layout=layout,
        props=sample_props(rng, layout, length_m),
        agents=sample_agents(rng, layout, ego, (ego_s - 20, length_m), float(density * rng.uniform(0.4, 1.6))),
        env=env,
        ego=ego,
        seed=int(rng.integers(2**31)),
        horizon_color=tuple(float(v) for v in hue),
    )


def step_world(world: World, dt: float, rng: np.random.Generator) -> World:
    """Advance ego and agents by dt seconds along the road (same ids; a slow lateral drift of the ego)."""
    ego = world.ego
    drift = float(np.clip(ego.d - world.layout.lane_center(ego.lane) + rng.normal(0, 0.02), -0.7, 0.7))
    heading = float(np.clip(ego.heading * 0.9 + rng.normal(0, 0.002), -0.05, 0.05))
    ego = replace(ego, s=ego.s + ego.speed * dt, d=world.layout.lane_center(ego.lane) + drift, heading=heading)
    agents = []
    for a in world.agents:
        if a.cls == "traffic_sign":
            agents.append(a)
            continue
        speed = a.speed
        if a.cls == "car" and a.direction > 0:
            speed = _following_speed(a, world, ego)
        walking = a.cls == "pedestrian"
        phase = a.phase + dt * (speed + abs(a.lateral_speed)) * (4.0 if walking else 2.5)
        agents.append(
            replace(a, s=a.s + a.direction * speed * dt, d=a.d + a.lateral_speed * dt, phase=phase, speed=speed)
        )
    return replace(world, ego=ego, agents=tuple(agents))


def _following_speed(car: Agent, world: World, ego: EgoState) -> float:
    """Cars never drive through the one ahead in their lane: within 12 m they slow to its speed.

    The ego car counts as a leader for cars behind it; a car ahead of the ego that the ego closes in on
    speeds up to the ego's speed so the ego never drives through it either (the clip stays plausible).
    """
    half = world.layout.lane_width / 2
    speed = car.speed
    for other in world.agents:
        if other is car or other.cls != "car" or other.direction <= 0 or abs(other.d - car.d) > half:
            continue
        gap = other.s - car.s - (other.length + car.length) / 2
        if 0 <= gap < 12:
            speed = min(speed, other.speed)
    if abs(ego.d - car.d) < half:
        gap = car.s - ego.s - car.length / 2 - 2.5
        if 0 <= gap < 12:
            speed = max(speed, ego.speed)
        elif -car.length - 5 < gap < 0:
            speed = min(speed, ego.speed)
    return speed
