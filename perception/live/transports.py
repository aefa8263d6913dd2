"""The camera node's network outputs: UDP datagrams and ZeroMQ PUB (its JSONL log is ``perception.sinks``'
``RotatingJsonlSink``; ROS 2 is ``ros2.py``).

Each is a ``RecordSink``: it gets the record once serialised (``line``: one JSON object, UTF-8, no newline)
and never raises from ``publish``: a send that fails is counted in ``errors`` (and logged once per kind of
failure), because a consumer that went away must not stop the node. Opening an output can fail (a port in
use): that raises OutputError at start-up with the address in the message.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

from perception.errors import ConfigError, OutputError
from perception.frames import FrameResult
from perception.sinks import CountedSink

MAX_UDP_PAYLOAD = 65507  # IPv4: 65535 minus the IP and UDP headers


def parse_host_port(text: str, default_host: str = "127.0.0.1", what: str = "address") -> tuple[str, int]:
    """``"PORT"``, ``"HOST:PORT"`` or ``"[V6]:PORT"`` → (host, port); ConfigError naming ``what`` otherwise.

    Port 0 is allowed (the OS picks a free port; servers report the one they got).
    """
    t = text.strip()
    host, _, port_text = t.rpartition(":") if ":" in t else ("", "", t)
    host = host.strip("[]") or default_host
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"{what} '{text}': expected PORT or HOST:PORT") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{what} '{text}': port {port} is outside 0-65535")
    return host, port


class UdpOutput(CountedSink):
    """One datagram per frame: the JSON line plus a newline (so a capture of datagrams is JSONL).

    A record too large for one datagram (over 65,507 bytes: a scene with very many objects) is sent
    without its ``detections`` list (the tracked objects in ``scene`` remain) and counted in
    ``trimmed``; a consumer that is not listening costs nothing but an error count.
    """

    def __init__(self, host: str, port: int):
        super().__init__()
        self.name = f"udp://{host}:{port}"
        self.address = (host, port)
        self.trimmed = 0
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self._sock = socket.socket(family, socket.SOCK_DGRAM)
            self._sock.setblocking(False)  # a full send buffer drops the datagram, it never stalls the loop
        except OSError as err:
            raise OutputError(f"{self.name}: cannot create a UDP socket ({err})") from err

    def publish(self, record: dict[str, Any], line: bytes, result: FrameResult) -> None:
        payload = line + b"\n"
        if len(payload) > MAX_UDP_PAYLOAD:
            import json

            slim = {k: v for k, v in record.items() if k != "detections"}
            slim["detections_trimmed"] = len(record.get("detections") or [])
            payload = json.dumps(slim, separators=(",", ":")).encode() + b"\n"
            self.trimmed += 1
            if len(payload) > MAX_UDP_PAYLOAD:
                self._failed(f"record of {len(payload)} bytes does not fit one datagram")
                return
        try:
            self._sock.sendto(payload, self.address)
            self.sent += 1
        except OSError as err:  # ECONNREFUSED after an ICMP unreachable, ENOBUFS, EAGAIN, unreachable host
            self._failed(f"send failed: {err.strerror or err}")

    def close(self) -> None:
        self._sock.close()


class ZmqOutput(CountedSink):
    """ZeroMQ PUB socket bound to ``endpoint``; each frame is a two-part message [topic, JSON line].

    Subscribers filter on the topic. The send high-water mark bounds what is held for a slow subscriber
    (older messages are dropped by ZeroMQ, as PUB sockets do), so memory stays flat.
    """

    def __init__(self, endpoint: str, topic: str = "perception", high_water_mark: int = 100):
        super().__init__()
        try:
            import zmq
        except ImportError:
            raise ConfigError(
                "--zmq needs pyzmq, which is not installed: pip install 'perception[live]' (or pip install pyzmq)"
            ) from None
        self.name = endpoint
        self.topic = topic.encode()
        self._zmq = zmq
        self._ctx = zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.PUB)
        self._sock.setsockopt(zmq.SNDHWM, high_water_mark)
        self._sock.setsockopt(zmq.LINGER, 500)  # at close, give queued messages half a second, then go
        try:
            self._sock.bind(endpoint)
        except zmq.ZMQError as err:
            self._sock.close(0)
            if err.errno == errno.EADDRINUSE:
                raise OutputError(
                    f"{endpoint}: address already in use (another node? choose another --zmq port)"
                ) from None
            raise OutputError(f"{endpoint}: cannot bind the ZeroMQ socket ({err})") from None
        self.endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)  # the real port when bound to :*

    def publish(self, record: dict[str, Any], line: bytes, result: FrameResult) -> None:
        try:
            self._sock.send_multipart([self.topic, line], flags=self._zmq.NOBLOCK)
            self.sent += 1
        except self._zmq.ZMQError as err:
            self._failed(f"send failed: {err}")

    def close(self) -> None:
        self._sock.close()
