"""The live camera node (``perception camera``), in data-flow order:

capture.py  a Grabber (sources.py) read in its own thread; latest frame wins; reconnect with back-off
node.py     the loop: freshest frame → pipeline → outputs; drops, staleness, latency, watchdog, health
outputs.py  JSON lines over UDP and ZeroMQ PUB, rotating JSONL log files
http.py     /health, /metrics (Prometheus text) and an MJPEG preview of the overlay
ros2.py     a ROS 2 publisher (rclpy, when installed)
soak.py     hours on a looping clip: latency percentiles, drops and memory over time
"""
