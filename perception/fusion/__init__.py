"""Fusion: everything after the network that keeps state from frame to frame or works in metres.

Lanes: ``lane_lines.py`` (lines found on the ground plane), ``ego_lane.py`` (the ego lane measured and
filtered, the departure warning), ``lane_estimator.py`` (the two per frame), ``image_lanes.py`` (lanes in
image space, with or without a camera), ``self_calibration.py`` (the camera estimated online). Objects:
``association.py``, ``motion_model.py``, ``tracking.py`` (ByteTrack). ``scene.py`` puts them together into
the frame's ``Scene`` (distances, TTC, warnings).
"""
