"""Line side of the inspector: the reference line controller, dashboards integration and monitoring.

Nothing here imports TensorFlow; it needs paho-mqtt (a core dependency) and, for the Sparkplug B bridge,
pysparkplug (the ``sparkplug`` extra).
"""
