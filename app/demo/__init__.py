"""The one-command demo: synthetic line video, training, calibration, station and controller together."""
