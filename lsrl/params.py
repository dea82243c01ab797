"""Parameter overrides: ``-D NAME=VALUE`` on the command line, or ``params={...}`` from Python.

An override takes the type of the parameter's default: a number (read exactly: "3", "1/3",
"0.25", "1e10"), a string (quotes optional) or a vector (comma-separated numbers). From Python, a
value may also be given directly (an int, a Fraction, a float, a list of numbers).
"""

from __future__ import annotations

from fractions import Fraction

from gmpy2 import mpq

from lsrl import compiletime as ct
from lsrl.errors import UsageError
from lsrl.ir.numbers import exact, number


def read_override(name: str, override: object, default: object) -> object:
    """The value of parameter ``name`` given ``override``; ``default`` fixes the expected type."""
    if ct.is_number(default):
        return _number(name, override)
    if ct.is_vector(default):
        items = override.strip().strip("[]").split(",") if isinstance(override, str) else override
        if not isinstance(items, (list, tuple)) or not items:
            raise UsageError(f"bad value for parameter '{name}': expected a vector, got {override!r}")
        return tuple(_number(name, item) for item in items)
    if isinstance(default, str):
        if not isinstance(override, str):
            raise UsageError(f"bad value for parameter '{name}': expected a string, got {override!r}")
        text = override.strip()
        return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text
    raise UsageError(f"parameter '{name}' holds {ct.describe(default)} and cannot be set from outside")


def _number(name: str, value: object) -> object:
    if isinstance(value, str):
        try:
            return exact(value)
        except ValueError:
            raise UsageError(f"bad value for parameter '{name}': '{value}' is not a number") from None
    if isinstance(value, (int, Fraction, float, mpq)) and not isinstance(value, bool):
        try:
            return number(value)
        except (ValueError, TypeError):
            pass
    raise UsageError(f"bad value for parameter '{name}': {value!r} is not a number")
