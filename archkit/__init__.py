"""archkit: what a convolutional network costs, how it is wired, and whether its ONNX export
computes what the Keras model computes.

Importing archkit does not import TensorFlow; only archkit.keras.export and archkit.verify do.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
