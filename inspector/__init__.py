"""Shared core of the defect inspector: config, datasets, preprocessing, model bundles and the CLI.

Nothing in this package imports TensorFlow, so it runs on an edge device with only a TFLite runtime.
"""

__version__ = "0.1.0"
