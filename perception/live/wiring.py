"""A camera node put together from its configs: what ``perception camera`` and ``perception soak`` run.

Outputs and the status server are opened before the model loads, so a port in use or an unwritable folder
fails at once; whatever was opened is closed again when a later step fails.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

from perception.config import LiveConfig, PipelineConfig
from perception.live.capture import LatestFrameCapture
from perception.live.http import PreviewRenderer, StatusServer
from perception.live.node import CameraNode, NodeSettings
from perception.live.transports import UdpOutput, ZmqOutput, parse_host_port
from perception.pipeline import build_pipeline
from perception.sinks import RecordSink, RotatingJsonlSink
from perception.sources import CameraSpec, OpenCVGrabber

log = logging.getLogger(__name__)


def build_camera_node(
    config: PipelineConfig, config_file: str | os.PathLike | None, live: LiveConfig, spec: CameraSpec
) -> tuple[CameraNode, StatusServer | None]:
    """The node for camera ``spec`` with the pipeline of ``config`` (paths relative to ``config_file``) and
    the outputs, preview and limits of ``live``; and its status server (None without ``live.http``), not
    yet started."""
    outputs: list[RecordSink] = []
    server = None
    preview = None
    try:
        if live.http is not None:
            host, port = parse_host_port(live.http, what="--http")
            preview = PreviewRenderer(
                fps=live.preview_fps, quality=live.preview_quality, alpha=config.output.overlay_alpha
            )
            server = StatusServer(host, port, health=lambda: {"state": "starting", "healthy": False}, preview=preview)
        if live.udp is not None:
            outputs.append(UdpOutput(*parse_host_port(live.udp, what="--udp")))
        if live.zmq is not None:
            outputs.append(ZmqOutput(live.zmq, topic=live.zmq_topic))
        if live.log_dir is not None:
            outputs.append(RotatingJsonlSink(live.log_dir, int(live.log_max_mb * 2**20), live.log_keep))
        if live.ros2:
            from perception.live.ros2 import Ros2Output

            outputs.append(
                Ros2Output(
                    live.ros2_node,
                    live.ros2_detections_topic,
                    live.ros2_mask_topic,
                    live.ros2_scene_topic,
                    live.ros2_frame_id,
                )
            )
        pipeline = build_pipeline(config, config_file)
    except BaseException:
        for out in outputs:
            out.close()
        if server is not None:
            server.close()
        elif preview is not None:
            preview.close()
        raise
    capture = LatestFrameCapture(
        lambda: OpenCVGrabber(spec),
        name=spec.name,
        lossless=spec.is_file and not spec.realtime,
        stall_timeout_s=live.stall_timeout_s,
        reconnect_initial_s=live.reconnect_initial_s,
        reconnect_max_s=live.reconnect_max_s,
        give_up_after=1 if spec.is_file else None,  # a file that cannot be opened will not start to open
    )
    node = CameraNode(
        capture,
        pipeline,
        outputs,
        NodeSettings(max_age_s=live.max_age_ms / 1e3, watchdog_s=live.watchdog_s),
        preview=preview,
        model_name=pipeline.contract.name,
    )
    if server is not None:
        server.health = node.health
    log.info(
        "camera %s (%s%s); model %s (%s); outputs: %s",
        spec.name,
        spec.kind,
        ", real time" if spec.is_file and spec.realtime else "",
        pipeline.contract.name,
        pipeline.backend.description,
        ", ".join([o.name for o in outputs] + ([server.url] if server else []))
        or "none (add --http, --udp, --zmq or --log-dir)",
    )
    return node, server


def stop_on_signals(stop: threading.Event) -> None:
    """SIGINT and SIGTERM (docker stop, systemd) set ``stop``: the loop ends, outputs are flushed."""

    def handler(signum, _frame):
        log.info("%s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
