"""Fusion: multi-object tracking (tracking.py) and the scene model built on the tracks."""
