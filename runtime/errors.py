"""The one exception type that user-facing boundaries raise, and the logger for what is not an error.

CLIs turn a :class:`TsegError` into a single line and a non-zero exit; anything
else is a bug and keeps its traceback. Library code never prints: notes (which
device a session chose) go to :data:`logger` at INFO, doubts (class names that
differ) at WARNING; the CLIs show both on stderr, a Python caller decides.
"""

import logging

logger = logging.getLogger("tseg")


class TsegError(ValueError):
    """Bad input from a user: a file, an argument, a dataset or a model.

    The message names what was expected, what came, and the valid options.
    """


class TsegTypeError(TsegError, TypeError):
    """An argument of the wrong type or dtype: a ``TypeError`` to Python callers, one line to the CLIs."""
