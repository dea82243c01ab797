"""The user-facing errors: a message and, where known, the source location it points at."""

from __future__ import annotations

from lsrl.ir.errors import CompileWarning, LsrlError

__all__ = ["CompileWarning", "LsrlError", "UsageError", "read_user_file"]


class UsageError(LsrlError):
    """A mistake in how the compiler was called (an option, a parameter value, input data) rather
    than in a program's text: it has no source location, even when found while compiling."""


def read_user_file(path: str, what: str) -> str:
    """The text of a file the user named; an unreadable one is their mistake, not a crash."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise UsageError(f"cannot read {what}{path}: {reason}") from None
