"""Calibration: trained Keras model -> quantized TFLite bundle with a chosen operating point.

Modules: ``convert`` (TFLite conversion), ``representative`` (sample drawing, image loading), ``guard``
(float vs converted parity), ``operating_point`` (threshold and confidence intervals), ``commissioning``
(camera reference), ``report`` (HTML + PNG), ``calibrate`` (the pipeline), ``evaluate`` (bundle metrics on
a labelled folder). TensorFlow is only imported inside the functions that convert or run Keras.
"""
