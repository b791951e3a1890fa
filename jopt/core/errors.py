"""The exception users see for bad input."""

__all__ = ["JoptError"]


class JoptError(ValueError):
    """A problem with the user's input: a config value, a data file, an argument.

    Its message is one line that names the problem and what is allowed. The command line
    prints it without a traceback and exits with code 2.
    """
