"""The one exception type that user-facing boundaries raise, and the logger for what is not an error.

CLIs turn a :class:`TsegError` into a single line and a non-zero exit; anything
else is a bug and keeps its traceback. Library code never prints: notes (which
device a session chose) go to :data:`logger` at INFO, doubts (class names that
differ) at WARNING; the CLIs show both on stderr, a Python caller decides.
"""

import logging

logger = logging.getLogger("tseg")

HELD_NOTE = "tseg_held_note"
"""A log record attribute (``extra={HELD_NOTE: True}``): a note that a CLI shows once its command has
run without an error (which engine ``device='auto'`` chose), so that bad input stays one line."""


def note_choice(text: str, *, warn: bool) -> None:
    """Log what an ``"auto"`` setting chose: a WARNING, shown at once, when something installed could not
    be used; else an INFO note the CLIs show once the command has succeeded (:data:`HELD_NOTE`)."""
    logger.log(logging.WARNING if warn else logging.INFO, text, extra=None if warn else {HELD_NOTE: True})


class TsegError(ValueError):
    """Bad input from a user: a file, an argument, a dataset or a model.

    The message names what was expected, what came, and the valid options. It speaks to a
    Python caller: a parameter is named as the function names it, either as the message's
    first word (``model file not found: x.onnx``, with ``parameter="model"``) or as a Python
    keyword (``use device='cpu'``). The CLIs translate both into their flags (``--model``,
    ``--device cpu``) in one place, :func:`tseg.runtime.cli_errors.cli_message`.

    Attributes:
        parameter: the parameter the message starts with, or None (a Python caller can
            test it instead of parsing the text).
    """

    def __init__(self, message: str = "", *, parameter: str | None = None):
        super().__init__(message)
        self.parameter = parameter

    def __reduce__(self):  # keeps ``parameter`` across pickling (process pools)
        return _rebuild, (type(self), str(self), self.parameter)


def _rebuild(cls: type, message: str, parameter: str | None) -> TsegError:
    return cls(message, parameter=parameter)


class TsegTypeError(TsegError, TypeError):
    """An argument of the wrong type or dtype: a ``TypeError`` to Python callers, one line to the CLIs."""
