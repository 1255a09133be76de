"""User-facing errors: one line, exit code 2, nothing already written is lost."""

from __future__ import annotations


class SafelrmError(Exception):
    """An error caused by the user's input (a file, a config, a name).

    The CLI prints ``error: <message>`` on one line and exits with code 2. The message names
    the file, line or field at fault.
    """

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


def where(path: object, line: int | None = None, field: str | None = None) -> str:
    """Format an input location as ``file:line field 'x'`` for error messages."""
    out = str(path)
    if line is not None:
        out += f":{line}"
    if field is not None:
        out += f" field '{field}'"
    return out
