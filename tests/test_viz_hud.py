"""The overlay's HUD says what the scene knows: no camera, a camera still calibrating, the ego lane, warnings."""

from __future__ import annotations

import numpy as np

from perception.frames import AutoCamera, EgoLane, Scene
from perception.viz import hud_lines


def auto_camera(state: str, confidence: float) -> AutoCamera:
    return AutoCamera(
        state=state,
        pitch_deg=1.0,
        yaw_deg=0.5,
        height_m=1.4,
        height_source="lane width",
        hfov_deg=70.0,
        focal_source="prior",
        confidence=confidence,
        frames_used=12,
    )


EGO = EgoLane(
    width_m=3.6, offset_m=-0.3, heading_error_rad=np.radians(1.0), curvature_1pm=0.0, left_seen=True, right_seen=True
)


def test_without_a_camera_the_hud_says_lanes_are_in_the_image_only():
    assert hud_lines(Scene()) == ["no camera: lanes in the image only, no distances"]


def test_while_calibrating_the_hud_shows_the_confidence_not_a_missing_lane():
    lines = hud_lines(Scene(camera=auto_camera("calibrating", 0.42)))
    assert lines == ["calibrating camera (42%): no distances yet"]


def test_a_calibrated_auto_camera_is_marked_estimated_beside_the_ego_lane():
    lines = hud_lines(Scene(camera=auto_camera("calibrated", 0.9), ego_lane=EGO))
    assert lines[0] == "offset 0.30 m right  width 3.60 m"
    assert lines[1].startswith("heading +1.0 deg")
    assert lines[-1] == "camera: estimated from the lanes"


def test_a_camera_file_without_an_ego_lane_says_not_found_and_warnings_come_last():
    lines = hud_lines(Scene(camera="dashcam", warnings=("lane_departure_left",)))
    assert lines == ["ego lane: not found", "LANE DEPARTURE LEFT"]
