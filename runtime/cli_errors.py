"""Shared by every tseg CLI: bad input becomes one line and a non-zero exit."""

from __future__ import annotations

import ast
import functools
import logging
import re
import shlex
import sys
from collections.abc import Callable
from typing import TypeVar

import click

from tseg.runtime.errors import HELD_NOTE, TsegError, logger

F = TypeVar("F", bound=Callable)
INTERRUPTED_EXIT = 130  # 128 + SIGINT, what shells report for Ctrl-C


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters escaped, so it prints as one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# ``name=value`` where a library message names a parameter as a Python keyword: device='cpu', trt_fp16=True.
# ``(name)`` where a message says which parameter a path came from: "photos/a.jpg (paths)".
_ORIGIN = re.compile(r"\(([A-Za-z_]\w*)\)")
_KEYWORD = re.compile(r"(?<![\w./\-])([A-Za-z_]\w*)=('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s,;:()\[\]]+)")


def _spelling(param: click.Parameter) -> str:
    """How the user types ``param``: its long flag (``--batch-size``), or an argument's metavar (``PATHS``)."""
    if isinstance(param, click.Option):
        return max(param.opts, key=lambda opt: (opt.startswith("--"), len(opt)))
    return param.human_readable_name


def spelling(command: click.Command, name: str) -> str:
    """How the user types ``command``'s parameter ``name`` (``batch_size`` -> ``--batch-size``)."""
    return _spelling(next(param for param in command.params if param.name == name))


def _flag_and_value(param: click.Parameter | None, literal: str) -> str | None:
    """``--device cpu`` for ``device='cpu'``; ``--trt-fp16`` for ``trt_fp16=True``; None when it has no spelling."""
    if not isinstance(param, click.Option):
        return None
    try:
        value = ast.literal_eval(literal)
    except (ValueError, SyntaxError):
        value = literal
    if param.is_flag and isinstance(value, bool):
        opts = param.opts if value else param.secondary_opts
        return max(opts, key=len) if opts else None
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return f"{_spelling(param)} {shlex.quote(str(value))}"
    return None


def cli_message(text: str, *, parameter: str | None = None, command: click.Command | None = None) -> str:
    """A library message in ``command``'s words: its Python parameter names become the command's flags.

    The one place where tseg's CLIs translate (see :class:`~tseg.runtime.errors.TsegError`): a
    leading ``parameter`` (``batch_size: need ...``) becomes its flag (``--batch-size: need ...``),
    every ``name=value`` keyword of one of the command's parameters becomes the flag with its
    value (``device='cpu'`` -> ``--device cpu``, ``trt_fp16=True`` -> ``--trt-fp16``), and a
    parameter named in parentheses after a path becomes its spelling (``a.jpg (paths)`` ->
    ``a.jpg (PATHS)``). Names that are not the command's parameters stay as they are.

    Args:
        text: the message.
        parameter: the parameter it starts with (:attr:`TsegError.parameter`), or None.
        command: the click command; default: the current context's.
    """
    if command is None:
        context = click.get_current_context(silent=True)
        command = context.command if context is not None else None
    if command is None:
        return text
    params = {param.name: param for param in command.params}
    if parameter in params and re.match(rf"{re.escape(parameter)}(?![\w=])", text):
        text = _spelling(params[parameter]) + text[len(parameter):]
    text = _KEYWORD.sub(lambda m: _flag_and_value(params.get(m[1]), m[2]) or m[0], text)
    return _ORIGIN.sub(lambda m: f"({_spelling(params[m[1]])})" if m[1] in params else m[0], text)


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
    """Writes to whatever ``sys.stderr`` is when a record comes (click's test runner swaps it),
    in the words of the command that last called :func:`show_notes` (notes come from worker threads too).

    Notes logged with ``extra={HELD_NOTE: True}`` (which engine ``device='auto'`` chose) wait while a command
    runs (:func:`one_line_errors`): shown when it succeeds, dropped when it stops with an error, so that bad
    input stays one line."""

    command: click.Command | None = None

    def __init__(self) -> None:
        super().__init__()
        self.holding = False
        self.held: list[logging.LogRecord] = []

    def hold(self) -> None:
        """Hold the notes that wait for the command's success from now on."""
        self.holding, self.held = True, []

    def emit(self, record: logging.LogRecord) -> None:
        if self.holding and getattr(record, HELD_NOTE, False):
            self.held.append(record)
        else:
            super().emit(record)

    def end_hold(self, *, show: bool) -> None:
        """Show (or drop) the held notes; stop holding."""
        held, self.held, self.holding = self.held, [], False
        for record in held if show else ():
            super().emit(record)

    def format(self, record: logging.LogRecord) -> str:
        return cli_message(super().format(record), command=self.command)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ sets it; the property decides
        pass


def show_notes() -> _StderrHandler:
    """Shows tseg's notes and warnings (:data:`tseg.runtime.errors.logger`) on stderr, bare, once per process,
    with parameter names translated into the current command's flags (:func:`cli_message`); returns the
    handler that does so."""
    handler = next((h for h in logger.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    context = click.get_current_context(silent=True)
    handler.command = context.command if context is not None else None
    return handler


def one_line_errors(func: F) -> F:
    """Turns user-facing errors raised by ``func`` into ``Error: ...`` and exit 1.

    TsegError and file-system errors (missing, unreadable, no permission) are
    the user's to fix, so they get no traceback (a TsegError's parameter names
    become the command's flags, :func:`cli_message`); nor does running out of memory
    (an input too big for the machine). Ctrl-C prints ``interrupted`` and exits
    130. Anything else is a bug and keeps its traceback. Held notes
    (:class:`_StderrHandler`) are shown when ``func`` returns, dropped when it fails.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        handler = show_notes()
        handler.hold()
        succeeded = False
        try:
            result = func(*args, **kwargs)
            succeeded = True
            return result
        except TsegError as err:
            raise click.ClickException(one_line(cli_message(str(err), parameter=err.parameter))) from None
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
        finally:
            handler.end_hold(show=succeeded)  # after a failure, its one line says what matters

    return wrapper  # type: ignore[return-value]
