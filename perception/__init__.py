"""Camera perception for driving: road, lane markings and objects from dashcam frames.

The runtime path (sources → preprocess → runtime → postprocess → pipeline → runner → sinks) needs only
numpy, OpenCV and ONNX Runtime; `nets/`, `train/` and `export/` need PyTorch.
"""

__version__ = "0.1.0"
