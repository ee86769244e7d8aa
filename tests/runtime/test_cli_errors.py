"""The CLI wrapper (tseg.runtime.cli_errors): one line for user errors, MemoryError, Ctrl-C; bugs keep a traceback."""

from __future__ import annotations

import click
import numpy as np
import pytest
from click.testing import CliRunner

from tseg.runtime.cli_errors import INTERRUPTED_EXIT, one_line_errors
from tseg.runtime.errors import TsegError


def _numpy_memory_error() -> MemoryError:
    try:
        np.empty((10**9, 10**9))  # refused at once: nothing is allocated
    except MemoryError as err:
        return err
    raise AssertionError("numpy allocated 8 EB")


def _command(exc: BaseException):
    @click.command()
    @one_line_errors
    def command():
        raise exc

    return command


@pytest.mark.parametrize(
    ("exc", "code", "line"),
    [
        (TsegError("bad\ninput"), 1, "Error: bad\\ninput"),
        (FileNotFoundError(2, "No such file or directory", "x.png"), 1, "Error: No such file or directory: x.png"),
        (MemoryError("Unable to allocate 23.3 GiB for an array"), 1, "Error: out of memory while running command"),
        (_numpy_memory_error(), 1, "Error: out of memory while running command (Unable to allocate"),
        (KeyboardInterrupt(), INTERRUPTED_EXIT, "interrupted"),
    ],
)
def test_user_errors_memory_and_ctrl_c_are_one_line_without_traceback(exc, code, line):
    result = CliRunner().invoke(_command(exc), [])
    assert result.exit_code == code
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(line), result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_bug_keeps_its_traceback():
    result = CliRunner().invoke(_command(KeyError("bug")), [])
    assert isinstance(result.exception, KeyError)


def _command_with_options(exc: BaseException):
    @click.command()
    @click.argument("paths", nargs=-1)
    @click.option("--model")
    @click.option("--batch-size", type=int)
    @click.option("--device")
    @click.option("--trt-fp16", is_flag=True)
    @click.option("-o", "--out")
    @one_line_errors
    def command(**_):
        raise exc

    return command


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (TsegError("model file not found: m.onnx", parameter="model"), "Error: --model file not found: m.onnx"),
        (TsegError("batch_size: need 1..8, got 0", parameter="batch_size"), "Error: --batch-size: need 1..8, got 0"),
        (TsegError("out x lies in y", parameter="out"), "Error: --out x lies in y"),
        (TsegError("paths: none given", parameter="paths"), "Error: PATHS: none given"),
        (
            TsegError("device='cuda': not loaded; use device='cpu' or 'auto'", parameter="device"),
            "Error: --device cuda: not loaded; use --device cpu or 'auto'",
        ),
        (TsegError("trt_fp16=True needs device='tensorrt'"), "Error: --trt-fp16 needs --device tensorrt"),
        (TsegError("out='a b' is taken"), "Error: --out 'a b' is taken"),
        (
            TsegError("out o lies in x (paths), m (model)", parameter="out"),
            "Error: --out o lies in x (PATHS), m (--model)",
        ),
        # Not this command's parameters, not declared, or only a word that begins like one: left alone.
        (TsegError("model file not found: m.onnx"), "Error: model file not found: m.onnx"),
        (TsegError("models: bad", parameter="model"), "Error: models: bad"),
        (TsegError("lr=0.1 is too high", parameter="lr"), "Error: lr=0.1 is too high"),
        (TsegError("x/device=cpu/m.onnx is missing"), "Error: x/device=cpu/m.onnx is missing"),
    ],
)
def test_parameter_names_become_the_commands_flags(exc, line):
    result = CliRunner().invoke(_command_with_options(exc), [])
    assert result.exit_code == 1
    assert result.stderr == line + "\n"


def test_notes_name_the_commands_flags():
    from tseg.runtime.errors import logger

    @click.command()
    @click.option("--device")
    @one_line_errors
    def command(**_):
        logger.info("note: device='auto': running on the CPU")

    result = CliRunner().invoke(command, [])
    assert result.exit_code == 0
    assert result.stderr == "note: --device auto: running on the CPU\n"


def test_tseg_error_keeps_its_parameter_through_pickling():
    import pickle

    from tseg.runtime.errors import TsegTypeError

    for err in (TsegError("model: bad", parameter="model"), TsegTypeError("tta: bad", parameter="tta")):
        copy = pickle.loads(pickle.dumps(err))
        assert (type(copy), str(copy), copy.parameter) == (type(err), str(err), err.parameter)
