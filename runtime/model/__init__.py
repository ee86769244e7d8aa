"""One .onnx file on one device: its metadata, the file read without a session, sessions, TensorRT."""
