"""Camera calibration: chessboard intrinsics, mounting from lane lines, camera YAML validation, the CLI.

Synthetic chessboards are rendered exactly (every pixel supersampled through the known lens, no
warpPerspective aliasing), so the calibration must recover the known K. Synthetic lane frames are drawn
from ground-plane polygons projected by a known camera, so the mounting estimate must recover its pitch,
yaw and height. The real Udacity photos and clip are read from ../shared/data and skip when absent.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from conftest import SHARED_DATA, require_real_clip

from perception.calibration import (
    calibrate_chessboard,
    estimate_mounting,
    expand_image_paths,
    find_lane_lines,
    parse_board,
    read_video_frames,
    save_undistorted_example,
)
from perception.camera_model import CameraModel, Mounting, load_camera
from perception.cli import main
from perception.errors import ConfigError, InputError

CAMERA_CAL = SHARED_DATA / "camera_cal"

# The synthetic chessboard camera: 640x480, fx != fy and an off-centre principal point so that a
# calibration returning "the image centre" or "fx for both" fails; a small barrel k1.
SIZE = (640, 480)
K_TRUE = np.array([[610.0, 0.0, 326.5], [0.0, 603.0, 236.0], [0.0, 0.0, 1.0]])
D_TRUE = np.array([-0.06, 0.0, 0.0, 0.0, 0.0])
BOARD = (9, 6)
SQUARE_M = 0.025

# --------------------------------------------------------------------------------------------------------
# Helpers: synthetic chessboard photos


@functools.cache
def _ideal_rays(dist: tuple[float, ...], ss: int) -> np.ndarray:
    """float64 [H*ss, W*ss, 3] normalised rays (x, y, 1) seen by each sub-pixel of the distorting lens."""
    w, h = SIZE
    offs = (np.arange(ss) + 0.5) / ss - 0.5  # sub-pixel centres about the pixel centre (integer coords)
    xs = (np.arange(w)[:, None] + offs).ravel()
    ys = (np.arange(h)[:, None] + offs).ravel()
    grid = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 1, 2)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-10)
    norm = cv2.undistortPoints(grid, K_TRUE, np.array(dist), criteria=criteria).reshape(h * ss, w * ss, 2)
    return np.concatenate([norm, np.ones_like(norm[..., :1])], -1)


def render_board(rvec, centre_t, seed: int = 0, ss: int = 3, dist: tuple[float, ...] = tuple(D_TRUE)) -> np.ndarray:
    """uint8 [480, 640] photo of a 10x7-square board (9x6 inner corners) on white paper, grey wall.

    Pose: board rotated by ``rvec`` (Rodrigues, radians) with its centre at ``centre_t`` (m, camera frame).
    Each pixel averages ss x ss sub-pixels, each traced through the lens (K_TRUE, ``dist``) onto the board.
    """
    cols, rows = BOARD
    r, _ = cv2.Rodrigues(np.asarray(rvec, np.float64))
    centre = np.array([(cols - 1) / 2 * SQUARE_M, (rows - 1) / 2 * SQUARE_M, 0.0])
    t = np.asarray(centre_t, np.float64) - r @ centre
    h_plane = np.column_stack([r[:, 0], r[:, 1], t])  # board (X, Y, 1) -> camera ray
    rays = _ideal_rays(tuple(float(v) for v in dist), ss)
    p = rays @ np.linalg.inv(h_plane).T
    xy = p[..., :2] / p[..., 2:3] / SQUARE_M  # board coordinates in squares; inner corners at integers
    gx, gy = np.floor(xy[..., 0]), np.floor(xy[..., 1])
    on_squares = (gx >= -1) & (gx <= cols - 1) & (gy >= -1) & (gy <= rows - 1)
    on_paper = (xy[..., 0] >= -1.8) & (xy[..., 0] <= cols + 0.8) & (xy[..., 1] >= -1.8) & (xy[..., 1] <= rows + 0.8)
    value = np.where(on_paper, 225.0, 95.0)
    value = np.where(on_squares & ((gx + gy) % 2 == 0), 25.0, value)
    value = np.where(p[..., 2] > 0, value, 95.0)  # rays that meet the plane behind the camera see the wall
    h, w = SIZE[1], SIZE[0]
    image = value.reshape(h, ss, w, ss).mean(axis=(1, 3))
    image += np.random.default_rng(seed).normal(0, 2.0, image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


POSES = [  # (rvec radians, board centre in the camera frame, m): tilted both ways, reaching the corners
    ((0.4, 0.1, 0.0), (-0.1, -0.07, 0.6)),
    ((-0.4, 0.1, 0.05), (0.1, -0.07, 0.6)),
    ((0.1, 0.45, 0.0), (-0.1, 0.07, 0.6)),
    ((0.05, -0.45, -0.05), (0.1, 0.07, 0.6)),
    ((0.3, 0.3, 0.1), (0.0, 0.0, 0.5)),
    ((-0.3, -0.3, -0.1), (0.0, 0.0, 0.5)),
    ((0.25, -0.3, 0.3), (0.0, -0.08, 0.55)),
    ((-0.25, 0.3, -0.3), (0.0, 0.08, 0.55)),
]


@pytest.fixture(scope="module")
def board_dir(tmp_path_factory) -> Path:
    """A folder of 8 synthetic chessboard photos (PNG, 640x480)."""
    folder = tmp_path_factory.mktemp("boards")
    for i, (rvec, t) in enumerate(POSES):
        cv2.imwrite(str(folder / f"board{i + 1}.png"), render_board(rvec, t, seed=i))
    return folder


def copy_boards(board_dir: Path, dest: Path, n: int = 4) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for p in sorted(board_dir.glob("*.png"))[:n]:
        (dest / p.name).write_bytes(p.read_bytes())
    return dest


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["calibrate", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


# --------------------------------------------------------------------------------------------------------
# Chessboard calibration


def test_synthetic_chessboard_recovers_known_intrinsics(board_dir):
    result = calibrate_chessboard([board_dir], board=BOARD, square_m=SQUARE_M, name="synthetic")
    assert result.boards_used == len(POSES) and result.not_found == () and result.rejected == ()
    k = result.camera.K
    for got, want, what in [
        (k[0, 0], K_TRUE[0, 0], "fx"),
        (k[1, 1], K_TRUE[1, 1], "fy"),
        (k[0, 2], K_TRUE[0, 2], "cx"),
        (k[1, 2], K_TRUE[1, 2], "cy"),
    ]:
        assert abs(got - want) < 0.01 * want, f"{what}: {got:.2f} vs {want:.2f}"
    assert abs(result.camera.dist_coeffs[0] - D_TRUE[0]) < 0.02  # k1 (it trades off against k2, k3)
    assert result.rms_px < 0.5
    assert result.camera.image_size == SIZE and len(result.camera.dist_coeffs) == 5
    assert result.camera.name == "synthetic"
    assert [Path(f).name for f, _ in result.per_image_px] == [f"board{i + 1}.png" for i in range(len(POSES))]
    assert all(0 <= e < 0.5 for _, e in result.per_image_px)
    assert "RMS reprojection error" in result.format()


def test_board_not_found_is_reported_not_fatal(board_dir, tmp_path):
    folder = copy_boards(board_dir, tmp_path / "set", n=len(POSES))
    blank = np.full((SIZE[1], SIZE[0]), 128, np.uint8)
    cv2.imwrite(str(folder / "wall.png"), blank)
    result = calibrate_chessboard([folder / "*.png"], board=BOARD)
    assert [Path(f).name for f in result.not_found] == ["wall.png"]
    assert result.boards_used == len(POSES)
    assert "wall.png: board not found" in result.format()


def test_slightly_larger_photo_is_cropped_and_reported(board_dir, tmp_path):
    folder = copy_boards(board_dir, tmp_path / "set", n=4)
    img = cv2.imread(str(folder / "board1.png"), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(folder / "board1.png"), np.pad(img, ((0, 1), (0, 1)), mode="edge"))  # 641x481
    result = calibrate_chessboard([folder], board=BOARD)
    assert result.camera.image_size == SIZE
    assert [Path(f).name for f in result.cropped] == ["board1.png"]
    assert result.boards_used == 4


@pytest.mark.parametrize(
    "case", ["corrupt", "empty_file", "mixed_sizes", "wrong_board", "empty_folder", "no_match", "missing"]
)
def test_bad_input_raises_clear_error(board_dir, tmp_path, capsys, case):
    folder = copy_boards(board_dir, tmp_path / "set", n=4)
    inputs = [str(folder)]
    board = "9x6"
    if case == "corrupt":
        (folder / "board9.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 10)
        needle = ["board9.jpg", "not an image OpenCV can read"]
    elif case == "empty_file":
        (folder / "board9.png").write_bytes(b"")
        needle = ["board9.png", "file is empty"]
    elif case == "mixed_sizes":
        small = cv2.resize(cv2.imread(str(folder / "board2.png")), (320, 240))
        cv2.imwrite(str(folder / "board9.png"), small)
        needle = ["board9.png", "images of different sizes", "320x240", "640x480"]
    elif case == "wrong_board":
        board = "12x8"
        needle = ["board 12x8 found in 0 of 4 images; need >= 3", "check --board (inner corners, columns x rows)"]
    elif case == "empty_folder":
        (tmp_path / "empty").mkdir()
        inputs = [str(tmp_path / "empty")]
        needle = [str(tmp_path / "empty"), "no images"]
    elif case == "no_match":
        inputs = [str(folder / "*.tiff")]
        needle = ["*.tiff", "no image files match"]
    else:
        inputs = [str(tmp_path / "nowhere")]
        needle = ["nowhere", "no such file or folder"]

    with pytest.raises(InputError) as info:
        calibrate_chessboard(inputs, board=parse_board(board))
    msg = str(info.value)
    assert "\n" not in msg
    for n in needle:
        assert n in msg, msg

    out_yaml = tmp_path / "cam.yaml"
    code, _, err = run_cli(capsys, *inputs, "--board", board, "--out", str(out_yaml))
    assert code == 1
    line = one_line_error(err)
    for n in needle:
        assert n in line, line
    assert "Traceback" not in err
    assert not out_yaml.exists()


@pytest.mark.parametrize("text", ["9", "9x", "axb", "2x6", "9x6x1"])
def test_bad_board_argument(board_dir, tmp_path, capsys, text):
    with pytest.raises(ConfigError, match="--board"):
        parse_board(text)
    code, _, err = run_cli(capsys, str(board_dir), "--board", text, "--out", str(tmp_path / "c.yaml"))
    assert code == 1 and "--board" in one_line_error(err)


def test_expand_image_paths_natural_order_and_dedup(tmp_path):
    for name in ["calibration10.jpg", "calibration2.jpg", "calibration1.jpg", "notes.txt"]:
        (tmp_path / name).write_bytes(b"x")
    got = expand_image_paths([tmp_path, tmp_path / "calibration2.jpg", str(tmp_path / "calibration1*.jpg")])
    assert [p.name for p in got] == ["calibration1.jpg", "calibration2.jpg", "calibration10.jpg"]
    with pytest.raises(InputError, match="no calibration images given"):
        expand_image_paths([])


def test_cli_calibrate_writes_loadable_yaml_and_example(board_dir, tmp_path, capsys):
    out_yaml = tmp_path / "cams" / "synth_640x480.yaml"
    example = tmp_path / "undistorted.png"
    code, out, err = run_cli(
        capsys, str(board_dir), "--board", "9x6", "--square-mm", "25", "--out", str(out_yaml), "--example", str(example)
    )
    assert code == 0, err
    assert "RMS reprojection error" in out and "board8.png:" in out
    cam = load_camera(out_yaml)
    assert cam.name == "synth_640x480" and cam.image_size == SIZE
    np.testing.assert_allclose(cam.K, K_TRUE, rtol=0.01, atol=0.5)
    text = out_yaml.read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert header[0].startswith("# Camera synth_640x480")
    assert any(line.startswith(f"# made by: perception calibrate {board_dir} --board 9x6") for line in header)
    assert any("RMS reprojection error" in line for line in header)
    data = yaml.safe_load(text)
    assert set(data) == {"name", "image_size", "camera_matrix", "dist_coeffs", "mounting"}
    png = cv2.imread(str(example))
    assert png is not None and png.shape == (SIZE[1], 2 * SIZE[0] + 8, 3)


def test_save_undistorted_example_straightens(tmp_path):
    """A board filling the frame of a strong barrel lens: curved corner rows on the left, straight on the right."""
    strong = (-0.3, 0.08, 0.0, 0.0, 0.0)
    photo = tmp_path / "close.png"
    cv2.imwrite(str(photo), render_board((0.1, -0.1, 0.0), (0.0, 0.0, 0.34), ss=2, dist=strong))
    cam = CameraModel(SIZE, tuple(map(tuple, K_TRUE)), strong, name="synthetic")
    path = save_undistorted_example(cam, photo, tmp_path / "ex.png")
    pair = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    right = pair[:, SIZE[0] + 8 :]
    corners_found, corners = cv2.findChessboardCorners(right, BOARD, flags=cv2.CALIB_CB_ADAPTIVE_THRESH)
    assert corners_found
    # Undistorted corners of a flat board are related by a homography to the board grid: no curvature left.
    obj = np.mgrid[0 : BOARD[0], 0 : BOARD[1]].T.reshape(-1, 2).astype(np.float32)
    h, _ = cv2.findHomography(obj, corners.reshape(-1, 2))
    resid = cv2.perspectiveTransform(obj[None], h)[0] - corners.reshape(-1, 2)
    assert np.abs(resid).max() < 0.5
    left = pair[:, : SIZE[0]]
    _, raw = cv2.findChessboardCorners(left, BOARD, flags=cv2.CALIB_CB_ADAPTIVE_THRESH)
    h, _ = cv2.findHomography(obj, raw.reshape(-1, 2))
    assert np.abs(cv2.perspectiveTransform(obj[None], h)[0] - raw.reshape(-1, 2)).max() > 1.5  # it was curved


def test_real_udacity_calibration():
    if not CAMERA_CAL.is_dir():
        pytest.skip(f"chessboard photos not found at {CAMERA_CAL} (set PERCEPTION_SHARED_DATA)")
    result = calibrate_chessboard([CAMERA_CAL], board=(9, 6))
    assert len(result.images) == 20
    assert result.boards_used >= 15, result.format()
    assert result.rms_px < 1.0, result.format()
    assert result.camera.image_size == (1280, 720)
    k = result.camera.K
    assert 1100 < k[0, 0] < 1220 and 1100 < k[1, 1] < 1220  # published figures for this set: about 1155
    assert result.camera.dist_coeffs[0] < -0.15  # a strong barrel lens


# --------------------------------------------------------------------------------------------------------
# Mounting from lane lines

LANE_CAMERA = CameraModel(
    (960, 540),
    ((800.0, 0.0, 483.0), (0.0, 800.0, 266.0), (0.0, 0.0, 1.0)),
    (-0.08, 0.0, 0.0, 0.0, 0.0),
    name="lanes",
    mounting=Mounting(height_m=1.4, pitch_deg=3.0, yaw_deg=1.0, roll_deg=0.0),
)


def lane_frame(camera: CameraModel, lane_width_m: float, offset_m: float, phase_m: float, seed: int) -> np.ndarray:
    """uint8 [H, W, 3]: asphalt, sky above the horizon, a dashed left and a solid right line 0.15 m wide.

    The lines are ground-plane strips at y = offset +- lane_width / 2, x from 2 to 150 m, projected through
    the camera's lens (``distort=True``), so they converge to the camera's true vanishing point.
    """
    w, h = camera.image_size
    rng = np.random.default_rng(seed)
    image = np.full((h, w, 3), 85, np.uint8)
    image[: int(camera.horizon_y()) - 4] = (200, 170, 140)

    def strip(y: float, x0: float, x1: float) -> None:
        xs = np.linspace(x0, x1, 60)
        edge = [np.stack([xs, np.full_like(xs, y + s * 0.075), np.zeros_like(xs)], 1) for s in (-1, 1)]
        uv, depth = camera.project(np.concatenate([edge[0], edge[1][::-1]]), distort=True)
        ok = (depth > 0) & np.isfinite(uv).all(1)
        cv2.fillPoly(image, [np.round(uv[ok] * 16).astype(np.int32)], (230, 230, 230), cv2.LINE_AA, shift=4)

    left, right = offset_m + lane_width_m / 2, offset_m - lane_width_m / 2
    strip(right, 2.0, 150.0)
    for start in np.arange(2.0 - phase_m, 150.0, 12.0):  # 3 m dashes every 12 m
        strip(left, max(start, 2.0), start + 3.0)
    noisy = image.astype(np.float32) + rng.normal(0, 6.0, image.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def test_estimate_mounting_recovers_synthetic_camera():
    frames = [lane_frame(LANE_CAMERA, 3.6, offset_m=0.25 * np.sin(i), phase_m=i * 1.7, seed=i) for i in range(16)]
    # The estimator gets the lens but not the mounting.
    est = estimate_mounting(frames, replace(LANE_CAMERA, mounting=Mounting()), lane_width_m=3.6)
    # Frames whose nearest dash is far away (a gap in front) show no usable left line and are skipped.
    assert 12 <= est.frames_used <= 16 and est.frames_total == 16
    assert abs(est.pitch_deg - 3.0) < 0.3, est.format()
    assert abs(est.yaw_deg - 1.0) < 0.3, est.format()
    assert abs(est.height_m - 1.4) < 0.05 * 1.4, est.format()
    # The vanishing point is where the true camera images the forward direction.
    uv, _ = LANE_CAMERA.project(np.array([[1e6, 0.0, 0.0]]))
    np.testing.assert_allclose(est.vanishing_point, uv[0], atol=4.0)
    assert est.pitch_mad_deg < 0.3 and est.height_mad_m < 0.05
    m = est.mounting()
    assert m.roll_deg == 0.0 and m.height_m == est.height_m


def test_estimate_mounting_signs_follow_camera_rotation():
    """Looking down and turned left must come back positive, looking up and turned right negative."""
    for pitch, yaw in [(4.0, 2.0), (-1.5, -2.0)]:
        cam = replace(LANE_CAMERA, mounting=Mounting(height_m=1.2, pitch_deg=pitch, yaw_deg=yaw))
        frames = [lane_frame(cam, 3.7, 0.0, i * 2.3, seed=i) for i in range(16)]
        est = estimate_mounting(frames, replace(cam, mounting=Mounting()), lane_width_m=3.7)
        assert abs(est.pitch_deg - pitch) < 0.3 and abs(est.yaw_deg - yaw) < 0.3, (pitch, yaw, est.format())


def test_estimate_mounting_needs_lane_lines():
    blank = [np.full((540, 960, 3), 90, np.uint8) for _ in range(12)]
    with pytest.raises(InputError, match=r"found in 0 of 12 frames; need >= 10") as info:
        estimate_mounting(blank, LANE_CAMERA, source="blank.mp4")
    assert str(info.value).startswith("blank.mp4: ")
    assert find_lane_lines(blank[0][..., 0]) is None
    with pytest.raises(ConfigError, match="frame is 640x360, the camera is 960x540"):
        estimate_mounting([np.zeros((360, 640, 3), np.uint8)], LANE_CAMERA)


def test_real_clip_mounting():
    clip = require_real_clip()
    if not CAMERA_CAL.is_dir():
        pytest.skip(f"chessboard photos not found at {CAMERA_CAL} (set PERCEPTION_SHARED_DATA)")
    camera = calibrate_chessboard([CAMERA_CAL]).camera
    frames = read_video_frames(clip, 40)
    assert len(frames) == 40
    est = estimate_mounting(frames, camera.scaled_to(960, 540), lane_width_m=3.7)
    assert est.frames_used >= 30, est.format()
    assert 1.0 <= est.height_m <= 1.8, est.format()
    assert -5.0 <= est.pitch_deg <= 10.0, est.format()
    assert abs(est.yaw_deg) < 5.0, est.format()


def test_cli_mounting_writes_camera_at_video_size(tmp_path, capsys):
    # The calibrated camera at 1920x1080; the video at 960x540: the CLI must scale the intrinsics.
    big = replace(LANE_CAMERA.scaled_to(1920, 1080), mounting=Mounting())
    cam_yaml = tmp_path / "cam.yaml"
    cam_yaml.write_text("# made by: a test\n" + yaml.safe_dump(big.to_dict()))
    video = tmp_path / "lanes.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (960, 540))
    for i in range(16):
        writer.write(lane_frame(LANE_CAMERA, 3.6, 0.0, i * 1.3, seed=i))
    writer.release()
    out_yaml = tmp_path / "mounted.yaml"
    code, out, err = run_cli(
        capsys,
        "--mounting",
        str(video),
        "--camera",
        str(cam_yaml),
        "--lane-width-m",
        "3.6",
        "--frames",
        "16",
        "--out",
        str(out_yaml),
        "--note",
        "synthetic lanes",
    )
    assert code == 0, err
    assert "height" in out
    cam = load_camera(out_yaml)
    assert cam.image_size == (960, 540) and cam.name == "mounted"
    np.testing.assert_allclose(cam.K, LANE_CAMERA.K, atol=1.0)
    assert abs(cam.mounting.pitch_deg - 3.0) < 0.3 and abs(cam.mounting.yaw_deg - 1.0) < 0.3
    assert abs(cam.mounting.height_m - 1.4) < 0.07
    text = out_yaml.read_text()
    assert "# made by: perception calibrate --mounting" in text and "ASSUMPTION" in text
    assert "# note: synthetic lanes" in text and "#   made by: a test" in text  # provenance carried along

    # A camera of another aspect ratio is refused with one line naming the video.
    other = tmp_path / "cam43.yaml"
    other.write_text(yaml.safe_dump(replace(LANE_CAMERA.scaled_to(960, 540), image_size=(960, 720)).to_dict()))
    code, _, err = run_cli(capsys, "--mounting", str(video), "--camera", str(other), "--out", str(tmp_path / "x.yaml"))
    assert code == 1
    line = one_line_error(err)
    assert str(video) in line and "aspect ratio" in line


def test_cli_calibrate_needs_images_or_mounting(tmp_path, capsys):
    code, _, err = run_cli(capsys, "--out", str(tmp_path / "c.yaml"))
    assert code == 1 and "IMAGES" in one_line_error(err)
    code, _, err = run_cli(capsys, "--mounting", "v.mp4", "--out", str(tmp_path / "c.yaml"))
    assert code == 1 and "--camera" in one_line_error(err)


# --------------------------------------------------------------------------------------------------------
# Camera YAML validation

GOOD_CAMERA = {
    "name": "cam",
    "image_size": [1280, 720],
    "camera_matrix": [[1000.0, 0.0, 640.0], [0.0, 1000.0, 360.0], [0.0, 0.0, 1.0]],
    "dist_coeffs": [-0.2, 0.05, 0.0, 0.0, 0.0],
    "mounting": {"height_m": 1.3, "pitch_deg": 1.0, "yaw_deg": 0.0, "roll_deg": 0.0},
}


def _with(path: str, value) -> dict:
    data = yaml.safe_load(yaml.safe_dump(GOOD_CAMERA))
    keys = path.split(".")
    node = data
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


@pytest.mark.parametrize(
    "path, value, needles",
    [
        ("mounting.height_m", -1.2, ["mounting.height_m must be > 0 m (camera above the road), got -1.2"]),
        ("mounting.height_m", 0.0, ["mounting.height_m must be > 0 m"]),
        ("mounting.height_m", 130.0, ["mounting.height_m", "absurd"]),
        ("mounting.height_m", float("nan"), ["mounting.height_m must be a finite number"]),
        ("mounting.pitch_deg", 60.0, ["mounting.pitch_deg", "45"]),
        ("mounting.roll_deg", -90.0, ["mounting.roll_deg", "45"]),
        ("mounting.yaw_deg", 1.57e2, ["mounting.yaw_deg", "45"]),
        ("mounting.yaw_deg", float("inf"), ["mounting.yaw_deg must be a finite number"]),
        ("camera_matrix.0.0", 0.0, ["camera_matrix", "fx, fy > 0"]),
        ("camera_matrix.1.1", 0.0, ["camera_matrix", "fx, fy > 0"]),
        ("camera_matrix.0.0", float("nan"), ["camera_matrix[0][0] must be a finite number"]),
        ("camera_matrix.1.2", float("inf"), ["camera_matrix[1][2] must be a finite number"]),
        ("dist_coeffs.1", float("nan"), ["dist_coeffs[1] must be a finite number"]),
        ("camera_matrix.0.2", 1500.0, ["principal point", "outside", "1280x720"]),
        ("camera_matrix.1.2", -20.0, ["principal point", "outside"]),
        ("image_size", [1280, 0], ["image_size must be two positive integers"]),
        ("image_size", [-1280, 720], ["image_size must be two positive integers"]),
    ],
)
def test_camera_yaml_validation_names_the_key(tmp_path, path, value, needles):
    cam_yaml = tmp_path / "cam.yaml"
    cam_yaml.write_text(yaml.safe_dump(_with(path, value)))
    with pytest.raises(ConfigError) as info:
        load_camera(cam_yaml)
    msg = str(info.value)
    assert msg.startswith(f"{cam_yaml}: ") and "\n" not in msg
    for n in needles:
        assert n in msg, msg


def test_valid_camera_yaml_still_loads(tmp_path):
    cam_yaml = tmp_path / "cam.yaml"
    cam_yaml.write_text(yaml.safe_dump(GOOD_CAMERA))
    cam = load_camera(cam_yaml)
    assert cam.mounting == Mounting(1.3, 1.0, 0.0, 0.0)
    # Edges of the allowed ranges are allowed.
    edge = _with("mounting.pitch_deg", -45.0)
    edge["mounting"]["height_m"] = 10.0
    edge["camera_matrix"][0][2] = 0.0
    cam_yaml.write_text(yaml.safe_dump(edge))
    assert load_camera(cam_yaml).mounting.pitch_deg == -45.0


@pytest.mark.parametrize("name", ["udacity_1280x720.yaml", "solidwhiteright_960x540.yaml"])
def test_shipped_camera_files(name):
    path = Path(__file__).resolve().parents[1] / "configs" / "cameras" / name
    cam = load_camera(path)
    text = path.read_text()
    assert "# made by: perception calibrate" in text and "RMS reprojection error" in text
    if name.startswith("solidwhiteright"):
        assert cam.image_size == (960, 540)
        assert 1.0 <= cam.mounting.height_m <= 1.8
        assert "ASSUMPTION" in text and "undocumented" in text
        base = load_camera(path.parent / "udacity_1280x720.yaml").scaled_to(960, 540)
        np.testing.assert_allclose(cam.K, base.K, atol=1e-3)
        np.testing.assert_allclose(cam.D, base.D, rtol=1e-6)
    else:
        assert cam.image_size == (1280, 720)
