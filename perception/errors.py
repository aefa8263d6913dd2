"""Errors a user can act on.

Each carries one line naming the file and the problem; the CLI prints it and exits non-zero, without a
traceback unless `--debug`. Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class PerceptionError(Exception):
    """Base class: ``str(err)`` is a complete one-line message for the user."""

    exit_code = 1


class InputError(PerceptionError):
    """A source (video, image folder, camera) is missing, unreadable or malformed."""


class ModelError(PerceptionError):
    """A model file is missing, not ONNX, or does not match the model contract."""


class ConfigError(PerceptionError):
    """A YAML config has an unknown key, a wrong type or a bad value."""


class OutputError(PerceptionError):
    """An output location cannot be written."""
