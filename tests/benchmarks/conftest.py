"""The benchmark tests use the runtime tests' hand-made models and photos."""

from tests.runtime.conftest import colour_onnx, photo_dir  # noqa: F401 (pytest fixtures)
