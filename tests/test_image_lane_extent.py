"""Lane lines in image space run as far as the road under them: up to where the road ends, through a car
standing on it, and down to the car's own bonnet, not past it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from perception.frames import SegMap
from perception.fusion.image_lanes import ROW_STEP_PX, ImageLine, RoadExtent, image_lanes
from perception.preprocess import letterbox_geometry

H, W = 360, 640
FRAME = (H, W)
CLASSES = ("background", "drivable", "lane")
ROAD = np.array([1, 2], np.uint8)
VP = (320.0, 150.0)  # where the road's borders and lines meet


def towards_vp(x_bottom: float, seen: tuple[float, float]) -> ImageLine:
    """A straight line through (x_bottom, H - 1) heading for the vanishing point, paint seen on ``seen`` rows."""
    slope = (x_bottom - VP[0]) / (H - 1 - VP[1])
    return ImageLine(
        coeffs=(x_bottom - slope * (H - 1), slope, 0.0), y_range=seen, coverage=0.5, residual_px=1.0, confidence=0.8
    )


def road_seg(
    input_hw: tuple[int, int], road_top: int, bonnet_top: int | None = None, letterbox=None, car=None
) -> SegMap:
    """Road between the borders through x = 0 and x = W - 1 at the bottom, from frame row ``road_top`` down;
    background (a bonnet) below ``bonnet_top`` and on the ``car`` box (x1, y1, x2, y2); drawn in frame
    pixels and letterboxed into the input."""
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    left, right = towards_vp(0.0, (0, 0)), towards_vp(W - 1.0, (0, 0))
    frame = ((xs >= left.x_at(ys)) & (xs <= right.x_at(ys)) & (ys >= road_top)).astype(np.uint8)
    if bonnet_top is not None:
        frame[bonnet_top:] = 0
    if car is not None:
        x1, y1, x2, y2 = (int(v) for v in car)
        frame[y1:y2, x1:x2] = 0
    lb = letterbox or letterbox_geometry(FRAME, input_hw)
    ids = np.zeros(input_hw, np.uint8)
    ch, cw = lb.content_hw
    ids[lb.pad_y : lb.pad_y + ch, lb.pad_x : lb.pad_x + cw] = cv2.resize(
        frame, (cw, ch), interpolation=cv2.INTER_NEAREST
    )
    return SegMap(ids, CLASSES)


def rows_of(points: np.ndarray) -> tuple[float, float]:
    return float(points[:, 1].min()), float(points[:, 1].max())


@pytest.mark.parametrize("input_hw", [(H, W), (384, 640), (288, 384)])
def test_a_line_seen_in_the_middle_runs_up_to_the_road_end_and_down_to_the_bottom(input_hw):
    lb = letterbox_geometry(FRAME, input_hw)
    extent = RoadExtent(road_seg(input_hw, road_top=180, letterbox=lb), lb, ROAD)
    line = towards_vp(200.0, (240.0, 300.0))
    top, bottom = extent.rows(line, FRAME)
    assert 180 <= top <= 180 + 2 * ROW_STEP_PX and bottom >= H - 1 - ROW_STEP_PX


def test_the_line_stops_at_the_bonnet():
    lb = letterbox_geometry(FRAME, (H, W))
    extent = RoadExtent(road_seg((H, W), road_top=180, bonnet_top=310), lb, ROAD)
    _, bottom = extent.rows(towards_vp(200.0, (240.0, 280.0)), FRAME)
    assert 300 <= bottom < 310


def test_a_car_on_the_road_does_not_end_the_line_but_the_verge_does():
    lb = letterbox_geometry(FRAME, (H, W))
    car = (150.0, 200.0, 300.0, 280.0)  # frame pixels, over the line's rows 200..280; not road in the mask
    seg = road_seg((H, W), road_top=180, car=car)
    line = towards_vp(200.0, (300.0, 340.0))
    top_without, _ = RoadExtent(seg, lb, ROAD).rows(line, FRAME)
    top_with, _ = RoadExtent(seg, lb, ROAD, np.array([car], np.float32)).rows(line, FRAME)
    assert top_without >= 280 and top_with <= 200
    # a line leaving the road sideways (steeper than the border) stops where it crosses it
    outward = ImageLine(coeffs=(200.0 + 3.0 * (H - 1), -3.0, 0.0), y_range=(330.0, 350.0), coverage=1.0,
                        residual_px=1.0, confidence=0.8)  # fmt: skip
    top, _ = RoadExtent(road_seg((H, W), road_top=0), lb, ROAD).rows(outward, FRAME)
    border_row = next(y for y in range(350, 0, -1) if outward.x_at(y) > towards_vp(W - 1.0, (0, 0)).x_at(y) + 4)
    assert border_row - 2 * ROW_STEP_PX <= top <= border_row + ROW_STEP_PX


def test_the_ego_lines_crossing_caps_the_line_from_above():
    lb = letterbox_geometry(FRAME, (H, W))
    extent = RoadExtent(road_seg((H, W), road_top=0), lb, ROAD)  # road up to the top: only the cap stops it
    left, right = towards_vp(160.0, (250.0, 350.0)), towards_vp(480.0, (250.0, 350.0))
    lanes = image_lanes([left, right], ["ego_left", "ego_right"], FRAME, extent)
    for lane in lanes:
        top, _ = rows_of(lane.points_image)
        assert VP[1] <= top <= VP[1] + 0.02 * H + ROW_STEP_PX


def test_without_a_road_mask_a_line_runs_to_the_bottom_as_before():
    line = towards_vp(200.0, (240.0, 300.0))
    (lane,) = image_lanes([line], ["ego_left"], FRAME)
    assert rows_of(lane.points_image) == (240.0, 350.0)
