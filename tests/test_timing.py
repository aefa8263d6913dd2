"""``perception inspect --time``: the network-forward timing the model card quotes."""

from __future__ import annotations

import json

import pytest

from perception.cli import main
from perception.runtime import build_backend
from perception.runtime.timing import time_forward


def test_time_forward_reports_median_and_p90(fused_model):
    backend = build_backend("onnxruntime", fused_model, threads=1)
    t = time_forward(backend, runs=5, warmup=1)
    h, w = backend.contract.input_size
    assert t["input"] == f"1x{h}x{w}" and t["runs"] == 5 and t["threads"] == 1
    assert 0 < t["median_ms"] <= t["p90_ms"]
    with pytest.raises(ValueError, match="runs"):
        time_forward(backend, runs=0)


def test_inspect_time_prints_contract_and_timing(fused_model, capsys):
    assert main(["inspect", str(fused_model), "--time", "3", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    contract = json.loads(out[: out.rindex("}") + 1])
    assert contract["input"]["name"] == "images"
    assert "network forward at 1x" in out and "median" in out and "1 threads" in out


def test_inspect_time_on_a_torch_checkpoint(torch_checkpoint, capsys):
    """A training checkpoint (torch backend) is timed the same way."""
    assert main(["inspect", str(torch_checkpoint), "--time", "2"]) == 0
    assert "torch" in capsys.readouterr().err
