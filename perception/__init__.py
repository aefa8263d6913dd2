"""Camera perception for driving: road, lane markings and objects from dashcam frames.

The runtime path (sources → preprocess → runtime → postprocess → fusion → pipeline → sinks → runner) needs
only numpy, OpenCV and ONNX Runtime; `nets/`, `train/` and `export/` need PyTorch. The layers and the rule
that nothing imports upward are written down, and checked, in tests/test_layers.py.
"""

__version__ = "0.1.0"
