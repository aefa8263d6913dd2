"""Where the camera node sends each frame's record: UDP datagrams, ZeroMQ PUB, rotating JSONL files.

Every output gets the record once serialised (``line``: one JSON object, UTF-8, no newline) and never
raises from ``publish``: a send that fails is counted in ``errors`` (and logged once per kind of failure),
because a consumer that went away must not stop the node. Opening an output can fail (a port in use, a
folder not writable): that raises OutputError at start-up with the address or path in the message.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from perception.errors import ConfigError, OutputError
from perception.frames import FrameResult

log = logging.getLogger(__name__)

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


class _Counted:
    """sent/errors counters and one log line per distinct failure (a dead consumer would flood the log)."""

    name = "output"

    def __init__(self) -> None:
        self.sent = 0
        self.errors = 0
        self._logged: set[str] = set()

    def _failed(self, why: str) -> None:
        self.errors += 1
        if why not in self._logged:
            self._logged.add(why)
            log.warning("output %s: %s (counted; logged once)", self.name, why)


class UdpOutput(_Counted):
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


class ZmqOutput(_Counted):
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


class RotatingJsonlOutput(_Counted):
    """JSONL log files in ``folder``: ``camera-<UTC start time>.jsonl``, a new file past ``max_bytes``,
    the oldest deleted beyond ``keep`` files. Each line is flushed, so a power cut leaves valid lines."""

    def __init__(self, folder: str | os.PathLike, max_bytes: int = 100 * 2**20, keep: int = 10):
        super().__init__()
        if max_bytes <= 0 or keep <= 0:
            raise ConfigError(f"JSONL log: max size ({max_bytes} bytes) and files kept ({keep}) must be > 0")
        from perception.paths import ensure_writable_dir

        self.folder = ensure_writable_dir(folder)
        self.name = f"jsonl:{self.folder}"
        self.max_bytes = max_bytes
        self.keep = keep
        self.files: list[Path] = []
        self._file = None
        self._size = 0
        self._open_new()

    def _open_new(self) -> None:
        if self._file is not None:
            self._file.close()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = self.folder / f"camera-{stamp}.jsonl"
        n = 1
        while path.exists() or path in self.files:
            path = self.folder / f"camera-{stamp}-{n}.jsonl"
            n += 1
        try:
            self._file = open(path, "wb")
        except OSError as err:
            raise OutputError(f"{path}: cannot write ({err.strerror})") from err
        self.files.append(path)
        self._size = 0
        # Oldest first: earlier runs' files by time, then this run's in the order written (not by mtime: a
        # clock that started behind, or coarse timestamps, must not make the file just opened look oldest).
        earlier = [p for p in self.folder.glob("camera-*.jsonl") if p not in self.files]
        existing = sorted(earlier, key=lambda p: p.stat().st_mtime) + [p for p in self.files if p.exists()]
        for old in existing[: max(0, len(existing) - self.keep)]:
            old.unlink(missing_ok=True)
            if old in self.files:
                self.files.remove(old)

    def publish(self, record: dict[str, Any], line: bytes, result: FrameResult) -> None:
        try:
            if self._size > 0 and self._size + len(line) + 1 > self.max_bytes:
                self._open_new()
            self._file.write(line + b"\n")
            self._file.flush()
            self._size += len(line) + 1
            self.sent += 1
        except (OSError, OutputError) as err:  # a full disk: count it, keep the node up
            self._failed(f"write failed: {err}")

    def close(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()
