"""Training: MobileNetV3 + squeeze-and-excitation classifiers on labeled defect folders (TensorFlow/Keras).

Everything here imports TensorFlow; the edge side never imports this package.
"""
