"""Host post-processing of the network's outputs: ``network_outputs.py`` (outputs by the contract's names →
per-image values), ``decode.py`` (grid → boxes) and ``nms.py``."""
