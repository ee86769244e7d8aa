"""Shared by every tseg CLI: bad input becomes one line and a non-zero exit."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import click

from tseg.runtime.errors import TsegError

F = TypeVar("F", bound=Callable)


def one_line_errors(func: F) -> F:
    """Turns user-facing errors raised by ``func`` into ``Error: ...`` and exit 1.

    TsegError and file-system errors (missing, unreadable, no permission) are
    the user's to fix, so they get no traceback. Anything else is a bug and
    keeps its traceback.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except TsegError as err:
            raise click.ClickException(str(err)) from None
        except OSError as err:
            raise click.ClickException(f"{err.strerror or err}: {err.filename or ''}".rstrip(": ")) from None

    return wrapper  # type: ignore[return-value]
