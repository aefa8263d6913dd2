"""ROS 2 output: the node's results on ROS topics (rclpy, when a ROS 2 install provides it).

Per frame, with topic names from the ``live:`` config:
- ``vision_msgs/Detection2DArray``: one Detection2D per detection (box centre and size in frame pixels,
  class name and score as the hypothesis, the track id as ``id`` when the object is tracked);
- ``sensor_msgs/Image`` (mono8): the segmentation class ids at frame size (0 background, 1 road, ...);
- ``std_msgs/String``: the frame's JSON record (the same as the JSONL line: lanes, ego lane, objects).

Headers carry the frame's capture time and the configured frame id. rclpy is not on PyPI; without it
``Ros2Output`` raises ConfigError saying so. What each message holds is computed by plain functions
(``detection_fields``) that are tested without ROS.
"""

from __future__ import annotations

import logging
from typing import Any

from perception.errors import ConfigError
from perception.frames import FrameResult

log = logging.getLogger(__name__)


def detection_fields(result: FrameResult) -> list[dict[str, Any]]:
    """The Detection2D contents per detection: centre x/y, size x/y (frame pixels), class name, score, id.

    ``id`` is the track id of the scene object of the same class whose (filtered) box overlaps the
    detection most, at IoU >= 0.5; "" for a detection no confirmed track matched.
    """
    import numpy as np

    from perception.postprocess.nms import box_iou

    names = result.det_class_names
    dets = result.detections
    objects = result.scene.objects if result.scene is not None else ()
    ids = [""] * len(dets)
    if objects and len(dets):
        boxes = np.stack([o.track.box_xyxy for o in objects])
        same_class = dets.labels[:, None] == np.array([o.track.label for o in objects])[None, :]
        iou = np.where(same_class, box_iou(dets.boxes_xyxy, boxes), 0.0)
        for i, row in enumerate(iou):
            best = int(np.argmax(row))
            if row[best] >= 0.5:
                ids[i] = str(objects[best].track.track_id)
    out = []
    for i, (box, score, label) in enumerate(zip(dets.boxes_xyxy, dets.scores, dets.labels, strict=True)):
        x1, y1, x2, y2 = (float(v) for v in box)
        out.append(
            {
                "center_x": (x1 + x2) / 2,
                "center_y": (y1 + y2) / 2,
                "size_x": x2 - x1,
                "size_y": y2 - y1,
                "class_id": names[int(label)],
                "score": float(score),
                "id": ids[i],
            }
        )
    return out


class Ros2Output:
    """Publishes each frame on three topics from one rclpy node (see the module docstring)."""

    def __init__(
        self,
        node_name: str,
        detections_topic: str,
        mask_topic: str,
        scene_topic: str,
        frame_id: str = "camera",
    ):
        try:
            import rclpy
            from sensor_msgs.msg import Image
            from std_msgs.msg import String
            from vision_msgs.msg import Detection2DArray
        except ImportError as err:
            raise ConfigError(
                f"ros2 output: {err.name or 'rclpy'} is not importable; source a ROS 2 install "
                "(e.g. /opt/ros/humble/setup.bash) with vision_msgs, or turn live.ros2 off"
            ) from None
        self.name = f"ros2:{node_name}"
        self.sent = 0
        self.errors = 0
        self.frame_id = frame_id
        self._rclpy = rclpy
        if not rclpy.ok():
            rclpy.init()
        self._node = rclpy.create_node(node_name)
        self._pub_dets = self._node.create_publisher(Detection2DArray, detections_topic, 10)
        self._pub_mask = self._node.create_publisher(Image, mask_topic, 2)
        self._pub_scene = self._node.create_publisher(String, scene_topic, 10)
        self._logged: set[str] = set()

    def _header(self, capture_unix_s: float) -> Any:
        from std_msgs.msg import Header

        header = Header()
        header.frame_id = self.frame_id
        sec = int(capture_unix_s)
        header.stamp.sec = sec
        header.stamp.nanosec = int((capture_unix_s - sec) * 1e9)
        return header

    def publish(self, record: dict[str, Any], line: bytes, result: FrameResult) -> None:
        from sensor_msgs.msg import Image
        from std_msgs.msg import String
        from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

        try:
            header = self._header(record.get("live", {}).get("capture_unix_s", 0.0))
            array = Detection2DArray()
            array.header = header
            for f in detection_fields(result):
                det = Detection2D()
                det.header = header
                det.id = f["id"]
                det.bbox.center.position.x = f["center_x"]
                det.bbox.center.position.y = f["center_y"]
                det.bbox.size_x = f["size_x"]
                det.bbox.size_y = f["size_y"]
                hyp = ObjectHypothesisWithPose()
                hyp.hypothesis.class_id = f["class_id"]
                hyp.hypothesis.score = f["score"]
                det.results.append(hyp)
                array.detections.append(det)
            self._pub_dets.publish(array)
            if result.seg is not None:
                mask = result.letterbox.mask_to_frame(result.seg.class_ids)
                img = Image()
                img.header = header
                img.height, img.width = int(mask.shape[0]), int(mask.shape[1])
                img.encoding = "mono8"
                img.step = img.width
                img.data = mask.tobytes()
                self._pub_mask.publish(img)
            self._pub_scene.publish(String(data=line.decode()))
            self.sent += 1
        except Exception as err:  # a ROS hiccup is counted; the node keeps running
            self.errors += 1
            why = type(err).__name__
            if why not in self._logged:
                self._logged.add(why)
                log.warning("output %s: publish failed: %s (counted; logged once)", self.name, err)

    def close(self) -> None:
        self._node.destroy_node()
        if self._rclpy.ok():
            self._rclpy.shutdown()
