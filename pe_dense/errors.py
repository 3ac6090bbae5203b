"""The package's error family (ground floor: imports nothing of ``pe_dense``).

Every error the package raises about what it was given (a checkpoint, a config, data, a size, an option) is a
``PEDenseError``, whose message names the problem and the fix; ``pe-dense`` prints that message and exits with status 2.
Anything else is a bug and keeps its traceback. ``PEDenseError`` is a ``ValueError``, so code that caught
``ValueError`` still does.
"""


class PEDenseError(ValueError):
    """Bad input to pe_dense, with a message that names the problem and the fix."""

    def __str__(self):
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class UnknownNameError(PEDenseError, KeyError):
    """A name that is not known (a model, a config key, an option): a ``KeyError`` too."""


class WrongTypeError(PEDenseError, TypeError):
    """An argument of the wrong kind (an unknown keyword, images of the wrong dtype): a ``TypeError`` too."""
