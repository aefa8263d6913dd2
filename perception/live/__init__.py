"""The live camera node (``perception camera``), in data-flow order:

capture.py     a Grabber (sources.py) read in its own thread; latest frame wins; reconnect with back-off
node.py        the loop: freshest frame → pipeline → outputs; drops, staleness, latency, watchdog, health
transports.py  JSON lines over UDP and ZeroMQ PUB (the rotating JSONL log is ``sinks.RotatingJsonlSink``)
http.py        /health, /metrics (Prometheus text) and an MJPEG preview of the overlay
ros2.py        a ROS 2 publisher (rclpy, when installed)
wiring.py      a node put together from its configs: outputs, status server, pipeline, capture
soak.py        hours on a looping clip: latency percentiles, drops and memory over time
"""
