"""The exceptions derive raises.

Every error derive raises on purpose derives from :class:`DeriveError`, so a caller can catch them all
at once; the subclasses also derive from the built-in exception a Python user expects (``ValueError``
for bad input), so ``except ValueError`` keeps working.
"""


class DeriveError(Exception):
    """Base class of every error raised by derive."""


class ExpressionError(DeriveError, ValueError):
    """An activation expression or name is outside derive's expression language, or unsafe."""


class SpecificationError(DeriveError, ValueError):
    """A network, activation or loss specification is invalid (unknown name, bad sizes, ...)."""


class DerivationError(DeriveError):
    """SymPy could not derive, simplify or print what a kernel needs."""


class BuildError(DeriveError):
    """Compiling a generated kernel failed.

    Attributes
    ----------
    command : list of str
        The command that failed, so that a person can rerun it by hand.
    output : str
        What the command printed (stdout and stderr).
    """

    def __init__(self, message, command=(), output=""):
        self.command = list(command)
        self.output = output
        text = message
        if self.command:
            text += "\ncommand: " + " ".join(self.command)
        if output:
            text += "\noutput:\n" + output
        super().__init__(text)
