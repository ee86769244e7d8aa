"""A damaged or foreign checkpoint is one TsegError naming the file and what is wrong."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from click.testing import CliRunner

from tests.nested import drop_at, set_at
from tseg.export.cli import main as export_cli
from tseg.runtime.errors import TsegError
from tseg.runtime.model.metadata import MAX_CLASSES
from tseg.train.checkpoints import load_checkpoint, model_from_checkpoint


@pytest.fixture(scope="module")
def payload(tiny_run):
    return load_checkpoint(tiny_run.run_dir / "best.pt")


def _more_classes(p):
    """A spec for 5 classes (names, kwargs, palette agree) over weights trained for 4."""
    p["model"]["classes"].append("Plastic")
    p["model"]["kwargs"]["num_classes"] = 5
    p["model"]["palette"].append([1, 2, 3])


def _rename_key(p):
    state = p["state_dict"]
    key = next(iter(state))
    state["renamed." + key] = state.pop(key)


def _nan_weight(p):
    key = next(k for k, v in p["state_dict"].items() if v.is_floating_point())
    p["state_dict"][key] = p["state_dict"][key].clone().fill_(math.nan)


CASES = [
    ("no-model", drop_at(["model"]), "has no 'model' entry"),
    ("no-state-dict", drop_at(["state_dict"]), "has no 'state_dict' entry"),
    ("model-not-dict", set_at(["model"], [1, 2]), "'model' must be a dict"),
    ("no-classes", drop_at(["model", "classes"]), "the model spec lacks classes"),
    ("no-name", drop_at(["model", "name"]), "the model spec lacks name"),
    ("unknown-name", set_at(["model", "name"], "resnet9000"), "unknown model 'resnet9000'; valid:"),
    ("kwargs-not-dict", set_at(["model", "kwargs"], [4]), "model kwargs must be a dict"),
    ("unknown-kwarg", set_at(["model", "kwargs", "dropout"], 0.5), "unexpected keyword argument 'dropout'"),
    ("num-classes-string", set_at(["model", "kwargs", "num_classes"], "4"), "kwargs num_classes='4' does not match"),
    ("num-classes-missing", drop_at(["model", "kwargs", "num_classes"]), "kwargs num_classes=None does not match"),
    ("classes-vs-num-classes", set_at(["model", "kwargs", "num_classes"], 5), "num_classes=5 does not match its 4"),
    ("classes-not-strings", set_at(["model", "classes"], [1, 2, 3, 4]), "classes must be a list of non-empty names"),
    ("classes-duplicate", set_at(["model", "classes"], ["a", "a", "b", "c"]), f"need 2 to {MAX_CLASSES} distinct"),
    ("palette-short", set_at(["model", "palette"], [[0, 0, 0]] * 3), "need one palette colour per class (4), got 3"),
    ("palette-300", set_at(["model", "palette", 1], [300, 0, 0]), "palette colours must be (r, g, b) integers 0..255"),
    ("palette-strings", set_at(["model", "palette", 1], ["red", 0, 0]), "palette colours must be"),
    ("mean-nan", set_at(["model", "mean"], [math.nan, 0.5, 0.5]), "mean must be 3 finite numbers"),
    ("mean-two", set_at(["model", "mean"], [0.5, 0.5]), "mean must be 3 finite numbers"),
    ("std-zero", set_at(["model", "std"], [0.2, 0.0, 0.2]), "std must be 3 finite numbers > 0"),
    ("std-negative", set_at(["model", "std"], [0.2, -1.0, 0.2]), "std must be 3 finite numbers > 0"),
    ("std-inf", set_at(["model", "std"], [0.2, math.inf, 0.2]), "std must be 3 finite numbers > 0"),
    ("input-size-zero", set_at(["model", "input_size"], [0, 32]), "input_size must be (height, width) in 1..4096"),
    ("input-size-huge", set_at(["model", "input_size"], [10**9, 32]), "input_size must be (height, width)"),
    ("input-size-strings", set_at(["model", "input_size"], ["32", "32"]), "input_size must be (height, width)"),
    ("state-dict-not-tensors", set_at(["state_dict"], {"a": 1}), "state_dict must map parameter names to tensors"),
    ("weights-missing-key", _rename_key, "state_dict does not fit deeplabv3_mobilenet_v3_large with 4 classes"),
    ("weights-nan", _nan_weight, "weights hold NaN or infinity"),
    ("class-count-vs-weights", _more_classes, "wrong shape"),
]


@pytest.mark.parametrize(("name", "change", "message"), CASES, ids=[c[0] for c in CASES])
def test_damaged_checkpoints_are_one_line_errors(payload, name, change, message):
    broken = copy.deepcopy(payload)
    change(broken)
    with pytest.raises(TsegError) as info:
        model_from_checkpoint(broken, source="runs/x/best.pt")
    text = str(info.value)
    assert message in text, text
    assert text.startswith("runs/x/best.pt") and "\n" not in text


def test_missing_and_unexpected_keys_and_shapes_are_named(payload):
    broken = copy.deepcopy(payload)
    _more_classes(broken)
    _rename_key(broken)
    with pytest.raises(TsegError) as info:
        model_from_checkpoint(broken, source="ck.pt")
    text = str(info.value)
    assert "missing 1 (" in text and "unexpected 1 (renamed." in text
    assert "wrong shape" in text and "(4, " in text and "(5, " in text, "the last layer's class counts are shown"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (drop_at(["model"]), "has no 'model' entry"),
        (set_at(["model", "kwargs", "bogus"], 1), "cannot be built with kwargs"),
        (_more_classes, "does not fit deeplabv3_mobilenet_v3_large with 5 classes"),
        (set_at(["format_version"], "1"), "malformed format_version '1'"),
    ],
)
def test_export_cli_refuses_damaged_checkpoints_in_one_line(payload, tmp_path, change, message):
    broken = copy.deepcopy(payload)
    change(broken)
    torch.save(broken, tmp_path / "bad.pt")
    result = CliRunner().invoke(export_cli, ["--onnx", str(tmp_path / "bad.pt")])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and message in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt"], "nothing written"


@pytest.mark.parametrize("multi_grid", [[1, 2, 10**6], [0, 1, 2], [1, 2], "124", [1.0, 2, 4], [True, 2, 4]])
def test_builder_kwargs_that_would_blow_up_memory_or_crash_are_refused(multi_grid):
    from tseg.train.checkpoints import ModelSpec

    spec = ModelSpec(
        name="deeplabv3_resnet50",
        kwargs={"num_classes": 2, "multi_grid": multi_grid},
        classes=("a", "b"),
        palette=((0, 0, 0), (1, 1, 1)),
        mean=(0.5, 0.5, 0.5),
        std=(0.2, 0.2, 0.2),
        input_size=(32, 32),
    )
    with pytest.raises(TsegError, match=r"^ck.pt: model 'deeplabv3_resnet50' cannot be built .*multi_grid must be"):
        spec.build(source="ck.pt")
