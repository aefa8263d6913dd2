"""A one-line progress bar for long commands (run, synth, eval): frames done, frames/s and ETA."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """A one-line progress bar on a terminal; occasional plain lines when stderr is a file."""

    def __init__(self, total: int | None, stream: TextIO = sys.stderr, enabled: bool = True, unit: str = "frames"):
        self.total = total
        self.unit = unit
        self.stream = stream
        self.enabled = enabled
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.start = time.perf_counter()
        self.last = 0.0 if self.tty else self.start  # a log file gets its first line after the interval

    def update(self, done: int, note: str = "") -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self.last < (0.25 if self.tty else 10.0):
            return
        self.last = now
        elapsed = now - self.start
        fps = done / elapsed if elapsed > 0 else 0.0
        if self.total:
            frac = min(done / self.total, 1.0)
            eta = (self.total - done) / fps if fps > 0 else 0.0
            bar = "#" * int(frac * 30)
            text = f"[{bar:<30}] {done}/{self.total} {self.unit} {fps:5.1f}/s ETA {eta:4.0f}s"
        else:
            text = f"{done} {self.unit} {fps:5.1f}/s"
        if note:
            text += f" {note}"
        self.stream.write(("\r" + text) if self.tty else (text + "\n"))
        self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
