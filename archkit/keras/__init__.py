"""The Keras side: the only importers of tensorflow, keras and tf2onnx (export, Keras-side parity,
Keras timing, the pipeline from a registered architecture to its analysis)."""
