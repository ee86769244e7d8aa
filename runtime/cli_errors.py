"""Shared by every tseg CLI: bad input becomes one line and a non-zero exit."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import TypeVar

import click

from tseg.runtime.errors import TsegError, logger

F = TypeVar("F", bound=Callable)
INTERRUPTED_EXIT = 130  # 128 + SIGINT, what shells report for Ctrl-C


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters escaped, so it prints as one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _command_name() -> str:
    context = click.get_current_context(silent=True)
    return context.info_name if context is not None and context.info_name else "tseg"


class OneLineCommand(click.Command):
    """A click command whose usage errors (bad option values, unknown or missing options)
    are one line and exit 1, like every other bad input, instead of click's usage block and exit 2."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as err:
            name = info_name or self.name or "the command"
            raise click.ClickException(one_line(f"{err.format_message()} (see {name} --help)")) from None


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes (click's test runner swaps it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ sets it; the property decides
        pass


def show_notes() -> None:
    """Shows tseg's notes and warnings (:data:`tseg.runtime.errors.logger`) on stderr, bare, once per process."""
    if not any(isinstance(handler, _StderrHandler) for handler in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def one_line_errors(func: F) -> F:
    """Turns user-facing errors raised by ``func`` into ``Error: ...`` and exit 1.

    TsegError and file-system errors (missing, unreadable, no permission) are
    the user's to fix, so they get no traceback; nor does running out of memory
    (an input too big for the machine). Ctrl-C prints ``interrupted`` and exits
    130. Anything else is a bug and keeps its traceback.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        show_notes()
        try:
            return func(*args, **kwargs)
        except TsegError as err:
            raise click.ClickException(one_line(str(err))) from None
        except OSError as err:
            where = f": {err.filename}" if err.filename else ""
            raise click.ClickException(one_line(f"{err.strerror or err}{where}")) from None
        except MemoryError as err:
            detail = (str(err).strip().splitlines() or [""])[0][:200]
            raise click.ClickException(
                one_line(
                    f"out of memory while running {_command_name()}"
                    + (f" ({detail})" if detail else "")
                    + ": use smaller inputs or a machine with more memory"
                )
            ) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            raise click.exceptions.Exit(INTERRUPTED_EXIT) from None

    return wrapper  # type: ignore[return-value]
