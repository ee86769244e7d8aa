"""Fixtures shared by the runtime tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.onnx_models import colour_blocks_image, write_colour_model


@pytest.fixture(scope="module")
def colour_onnx(tmp_path_factory) -> Path:
    """The hand-made colour model (tests/onnx_models.py): labels are a known function of the pixels."""
    return write_colour_model(tmp_path_factory.mktemp("colour") / "colour.onnx")


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory) -> Path:
    """Images of odd sizes with every class in view, one of them in a subfolder."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(9)
    (root / "sub").mkdir()
    for name, (height, width) in {"a.png": (37, 53), "b.png": (64, 21), "sub/c.png": (90, 120)}.items():
        Image.fromarray(colour_blocks_image(rng, height, width)).save(root / name)
    return root


@pytest.fixture(scope="session")
def report_pair(tiny_coco_dir, tmp_path_factory):
    """Two reports of the tiny split, A without and B with the CRF (tests/runtime/report_pair.py); read-only."""
    from tests.runtime.report_pair import make_report_pair

    return make_report_pair(tmp_path_factory.mktemp("report-pair") / "reports", tiny_coco_dir / "val.json")
