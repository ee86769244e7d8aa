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
