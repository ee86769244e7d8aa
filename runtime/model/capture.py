"""Keeping native libraries' output off the terminal while they load (ONNX Runtime's provider logs).

ONNX Runtime logs provider failures from C++ (file descriptor 2) and its Python wrapper prints
a TensorRT fallback banner to stdout; neither belongs in tseg's output, but the text says why a
provider did not load, so it is captured rather than dropped.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from collections.abc import Iterator


def _flush_streams() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            stream.flush()


def _redirect_descriptors(sink: int) -> list[tuple[int, int]]:
    """Points descriptors 1 and 2 at ``sink``; returns (descriptor, saved copy) pairs to restore."""
    saved = []
    try:
        for fd in (1, 2):
            copy = os.dup(fd)
            saved.append((fd, copy))
            os.dup2(sink, fd)
    except OSError:  # a closed descriptor (daemons, embedded interpreters): capture what we can
        pass
    return saved


@contextlib.contextmanager
def captured_output() -> Iterator[io.StringIO]:
    """Collects what native code and Python write to stdout and stderr inside the block.

    ONNX Runtime logs provider failures from C++ (file descriptor 2) and its Python
    wrapper prints a TensorRT fallback banner to stdout; neither belongs in tseg's
    output. The text is available in the yielded buffer after the block. Without a
    temp file to capture into, only Python-level output is captured.
    """
    text = io.StringIO()
    _flush_streams()
    with contextlib.ExitStack() as stack:
        try:
            sink = stack.enter_context(tempfile.TemporaryFile())
        except OSError:
            sink = None
        saved = _redirect_descriptors(sink.fileno()) if sink is not None else []
        try:
            with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
                yield text
        finally:
            _flush_streams()
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)
            if sink is not None:
                sink.seek(0)
                text.write(sink.read(65536).decode("utf-8", errors="replace"))
