"""The camera node's outputs with real consumers: a UDP socket, a ZeroMQ SUB socket, the JSONL files on disk.

Each record is the one the node builds (``scene_to_json`` of a real FrameResult, serialised compactly);
the consumer must get it back byte for byte (UDP, ZeroMQ) or line for line (JSONL).
"""

from __future__ import annotations

import json
import os
import re
import socket
import time

import numpy as np
import pytest

from perception.errors import ConfigError, OutputError
from perception.frames import Detections, FrameResult, Letterbox, SegMap
from perception.live.transports import MAX_UDP_PAYLOAD, UdpOutput, ZmqOutput, parse_host_port
from perception.sinks import RotatingJsonlSink, scene_to_json

NAMES = ("car", "pedestrian", "cyclist")


def make_result(n_dets: int = 3, index: int = 0, h: int = 120, w: int = 160, seed: int = 0) -> FrameResult:
    """A FrameResult with ``n_dets`` boxes inside a ``h`` x ``w`` frame and a small segmentation map."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, [w - 20, h - 20], (n_dets, 2))
    wh = rng.uniform(4, 20, (n_dets, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1)
    ids = rng.integers(0, 3, (96, 128), dtype=np.uint8)
    return FrameResult(
        frame_index=index,
        timestamp_s=index / 30,
        frame_size=(h, w),
        detections=Detections(boxes, rng.uniform(0.3, 1.0, n_dets), rng.integers(0, len(NAMES), n_dets)),
        det_class_names=NAMES,
        seg=SegMap(ids, ("background", "drivable", "lane")),
        letterbox=Letterbox((h, w), (96, 128), (0, 0, w, h), 0.8, 0, 0),
        timings_ms={"inference": 4.2},
    )


def make_record(n_dets: int = 3, index: int = 0) -> tuple[dict, bytes, FrameResult]:
    """(record, line, result) exactly as CameraNode hands them to an output."""
    result = make_result(n_dets, index)
    record = scene_to_json(result)
    record["live"] = {"seq": index, "capture_unix_s": 1.5e9 + index, "age_ms": 1.0, "latency_ms": 12.5}
    line = json.dumps(record, separators=(",", ":")).encode()
    return record, line, result


# --------------------------------------------------------------------------------------------------------
# UDP


@pytest.fixture()
def udp_receiver():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2.0)
    yield sock
    sock.close()


def test_udp_each_record_is_one_newline_terminated_json_datagram(udp_receiver):
    out = UdpOutput(*udp_receiver.getsockname())
    try:
        sent = [make_record(3, i) for i in range(5)]
        for record, line, result in sent:
            out.publish(record, line, result)
        for record, line, _ in sent:
            data, _ = udp_receiver.recvfrom(65535)
            assert data.endswith(b"\n") and data.count(b"\n") == 1
            assert data == line + b"\n"
            assert json.loads(data) == record
        assert (out.sent, out.errors, out.trimmed) == (5, 0, 0)
        assert out.name == f"udp://127.0.0.1:{udp_receiver.getsockname()[1]}"
    finally:
        out.close()


def test_udp_oversize_record_arrives_without_its_detections(udp_receiver):
    record, line, result = make_record(n_dets=4000)
    assert len(line) > MAX_UDP_PAYLOAD
    out = UdpOutput(*udp_receiver.getsockname())
    try:
        out.publish(record, line, result)
        data, _ = udp_receiver.recvfrom(65535)
    finally:
        out.close()
    assert len(data) <= MAX_UDP_PAYLOAD and data.endswith(b"\n")
    got = json.loads(data)
    assert "detections" not in got
    assert got["detections_trimmed"] == 4000
    assert got == {**{k: v for k, v in record.items() if k != "detections"}, "detections_trimmed": 4000}
    assert (out.trimmed, out.sent, out.errors) == (1, 1, 0)


def test_udp_to_a_port_where_nothing_listens_never_raises():
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now: the kernel answers with ICMP port unreachable
    out = UdpOutput("127.0.0.1", port)
    try:
        record, line, result = make_record()
        for _ in range(20):
            out.publish(record, line, result)
            time.sleep(0.002)  # let an ICMP error come back between sends
        assert out.sent + out.errors == 20
    finally:
        out.close()


def test_udp_over_ipv6_loopback():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    try:
        rx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        rx.bind(("::1", 0))
    except OSError as err:
        pytest.skip(f"no IPv6 loopback here ({err})")
    rx.settimeout(2.0)
    try:
        out = UdpOutput(*parse_host_port(f"[::1]:{rx.getsockname()[1]}"))
        record, line, result = make_record()
        out.publish(record, line, result)
        data, _ = rx.recvfrom(65535)
        out.close()
        assert json.loads(data) == record
    finally:
        rx.close()


# --------------------------------------------------------------------------------------------------------
# ZeroMQ


def _subscriber(endpoint: str, topic: bytes):
    import zmq

    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, topic)
    sub.connect(endpoint)
    return sub


def test_zmq_subscriber_receives_topic_and_line():
    pytest.importorskip("zmq")
    out = ZmqOutput("tcp://127.0.0.1:*", topic="cam0")
    assert re.fullmatch(r"tcp://127\.0\.0\.1:\d+", out.endpoint) and not out.endpoint.endswith(":0")
    sub = _subscriber(out.endpoint, b"cam0")
    try:
        record, line, result = make_record(5)
        deadline = time.monotonic() + 3.0
        first = None
        while first is None and time.monotonic() < deadline:  # PUB/SUB slow joiner: publish until one arrives
            out.publish(record, line, result)
            if sub.poll(50):
                first = sub.recv_multipart()
        assert first is not None, "no message within 3 s"
        assert first == [b"cam0", line]
        assert json.loads(first[1]) == record
        # once joined, every message published arrives, in order
        more = [make_record(1, i) for i in range(1, 4)]
        for rec, ln, res in more:
            out.publish(rec, ln, res)
        got = []
        while len(got) < 3 and sub.poll(2000):
            topic, body = sub.recv_multipart()
            if json.loads(body)["frame"] != 0:  # skip the remaining copies of the joining record
                got.append(json.loads(body))
        assert got == [rec for rec, _, _ in more]
        assert out.errors == 0 and out.sent >= 4
    finally:
        sub.close(0)
        out.close()


def test_zmq_subscriber_to_another_topic_gets_nothing():
    pytest.importorskip("zmq")
    out = ZmqOutput("tcp://127.0.0.1:*", topic="cam0")
    other = _subscriber(out.endpoint, b"cam1")
    mine = _subscriber(out.endpoint, b"cam0")
    try:
        record, line, result = make_record()
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            out.publish(record, line, result)
            if mine.poll(50):
                break
        assert mine.poll(0), "the matching subscriber got nothing within 3 s"
        assert not other.poll(100)
    finally:
        other.close(0)
        mine.close(0)
        out.close()


def test_zmq_endpoint_in_use_is_an_output_error_naming_it():
    pytest.importorskip("zmq")
    out = ZmqOutput("tcp://127.0.0.1:*")
    try:
        with pytest.raises(OutputError, match=re.escape(out.endpoint) + ".*in use"):
            ZmqOutput(out.endpoint)
    finally:
        out.close()


def test_zmq_bad_endpoint_is_an_output_error():
    pytest.importorskip("zmq")
    with pytest.raises(OutputError, match="nonsense://x"):
        ZmqOutput("nonsense://x")


# --------------------------------------------------------------------------------------------------------
# Rotating JSONL


def _lines(path) -> list[dict]:
    text = path.read_bytes()
    assert text == b"" or text.endswith(b"\n")
    return [json.loads(line) for line in text.splitlines()]


def test_jsonl_lines_are_valid_and_flushed_before_close(tmp_path):
    out = RotatingJsonlSink(tmp_path / "logs", max_bytes=2**20, keep=3)
    try:
        records = [make_record(2, i) for i in range(5)]
        for i, (record, line, result) in enumerate(records):
            out.publish(record, line, result)
            # readable by another reader at once, without close(): every line is flushed
            assert _lines(out.files[-1]) == [r for r, _, _ in records[: i + 1]]
        assert len(out.files) == 1
        assert re.fullmatch(r"camera-\d{8}T\d{6}Z(-\d+)?\.jsonl", out.files[0].name)
        assert out.sent == 5 and out.errors == 0
    finally:
        out.close()
    out.close()  # twice is fine


def test_jsonl_rotates_past_max_bytes_and_keeps_only_the_newest_files(tmp_path):
    records = [make_record(1, i) for i in range(40)]
    longest = max(len(line) for _, line, _ in records) + 1
    out = RotatingJsonlSink(tmp_path, max_bytes=3 * longest, keep=3)
    try:
        created = [out.files[-1]]  # the file written after each rotation (a name may recur once deleted)
        for record, line, result in records:
            out.publish(record, line, result)
            if out.files[-1] != created[-1]:
                created.append(out.files[-1])
            assert out.files[-1].exists(), "the file being written was deleted"
            assert all(p.stat().st_size <= 3 * longest for p in out.files)
        assert out.errors == 0 and out.sent == 40
        assert len(created) >= 40 // 3  # a new file every 3 lines (or so)
        on_disk = sorted(tmp_path.glob("camera-*.jsonl"))
        assert len(on_disk) == 3
        assert sorted(out.files) == on_disk
        # the 3 files left are the newest ones and hold the last records, in order, with no gap
        assert out.files == created[-3:]
        seqs = [r["live"]["seq"] for p in out.files for r in _lines(p)]
        assert seqs == list(range(seqs[0], 40))
        assert len(seqs) >= 7
    finally:
        out.close()


def test_jsonl_never_deletes_the_file_it_writes_when_older_files_look_newer(tmp_path):
    """A device without a real-time clock boots with its clock behind: the previous run's files then carry
    later modification times than the files this run writes. Rotation must still delete the previous run's
    files first, and never the file being written (whose lines would silently go nowhere)."""
    future = time.time() + 3600
    for i in range(3):
        old = tmp_path / f"camera-20990101T00000{i}Z.jsonl"
        old.write_text('{"old": true}\n')
        os.utime(old, (future + i, future + i))
    records = [make_record(0, i) for i in range(12)]
    longest = max(len(line) for _, line, _ in records) + 1
    out = RotatingJsonlSink(tmp_path, max_bytes=2 * longest, keep=3)
    try:
        for record, line, result in records:
            out.publish(record, line, result)
            assert out.files[-1].exists(), "the file being written was deleted"
    finally:
        out.close()
    left = list(tmp_path.glob("camera-*.jsonl"))
    assert len(left) == 3 and sorted(left) == sorted(out.files)  # the previous run's files went first
    seqs = [r["live"]["seq"] for p in out.files for r in _lines(p)]
    assert seqs == list(range(6, 12))


def test_jsonl_does_not_delete_other_files_in_the_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    out = RotatingJsonlSink(tmp_path, max_bytes=10, keep=1)
    try:
        for i in range(5):
            record, line, result = make_record(0, i)
            out.publish(record, line, result)
    finally:
        out.close()
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert len(list(tmp_path.glob("camera-*.jsonl"))) == 1
    assert [r["live"]["seq"] for r in _lines(out.files[-1])] == [4]  # a line over max_bytes gets its own file


@pytest.mark.parametrize("max_bytes, keep", [(0, 3), (-5, 3), (100, 0)])
def test_jsonl_bad_limits_are_config_errors(tmp_path, max_bytes, keep):
    with pytest.raises(ConfigError, match="JSONL log"):
        RotatingJsonlSink(tmp_path, max_bytes=max_bytes, keep=keep)
    assert list(tmp_path.iterdir()) == []


def test_jsonl_unwritable_folder_is_an_output_error_naming_it(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match=re.escape(str(blocker / "logs"))):
        RotatingJsonlSink(blocker / "logs")


# --------------------------------------------------------------------------------------------------------
# parse_host_port


@pytest.mark.parametrize(
    "text, expected",
    [
        ("8080", ("127.0.0.1", 8080)),
        (" 9000 ", ("127.0.0.1", 9000)),
        ("0", ("127.0.0.1", 0)),
        ("0.0.0.0:9", ("0.0.0.0", 9)),
        ("localhost:65535", ("localhost", 65535)),
        ("[::1]:80", ("::1", 80)),
        ("[::]:5555", ("::", 5555)),
        (":7000", ("127.0.0.1", 7000)),
    ],
)
def test_parse_host_port(text, expected):
    assert parse_host_port(text) == expected


def test_parse_host_port_default_host():
    assert parse_host_port("80", default_host="0.0.0.0") == ("0.0.0.0", 80)
    assert parse_host_port("10.0.0.2:80", default_host="0.0.0.0") == ("10.0.0.2", 80)


@pytest.mark.parametrize(
    "text, why",
    [
        ("abc", "expected PORT or HOST:PORT"),
        ("", "expected PORT or HOST:PORT"),
        ("host:", "expected PORT or HOST:PORT"),
        ("[::1]", "expected PORT or HOST:PORT"),
        ("1:70000", "port 70000 is outside 0-65535"),
        ("-1", "port -1 is outside 0-65535"),
    ],
)
def test_parse_host_port_rejects_bad_input_naming_the_option(text, why):
    with pytest.raises(ConfigError, match=re.escape(f"--udp '{text}': {why}")):
        parse_host_port(text, what="--udp")
