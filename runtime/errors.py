"""The one exception type that user-facing boundaries raise.

CLIs turn a :class:`TsegError` into a single line and a non-zero exit; anything
else is a bug and keeps its traceback.
"""


class TsegError(ValueError):
    """Bad input from a user: a file, an argument, a dataset or a model.

    The message names what was expected, what came, and the valid options.
    """


class TsegTypeError(TsegError, TypeError):
    """An argument of the wrong type or dtype: a ``TypeError`` to Python callers, one line to the CLIs."""
