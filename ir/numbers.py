"""Scalars of the IR: exact rationals (gmpy2.mpq) or float64 (Python float).

Every weight and every value in exact mode is an ``mpq``; a weight that came from an irrational
compile-time constant (``cos``, ``sqrt``, ``pi``) is a float. Mixing the two types directly would
produce gmpy2 ``mpfr`` values, so all mixed arithmetic goes through the helpers here.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Union

from gmpy2 import mpq

Number = Union[mpq, float]

ZERO = mpq(0)
ONE = mpq(1)


def is_exact(x: object) -> bool:
    return type(x) is mpq


def is_integer(x: object) -> bool:
    """An exact integer (a float stands for an irrational number, never an integer)."""
    return is_exact(x) and x.denominator == 1


def exact(x: object) -> mpq:
    """Convert an int, Fraction, mpq, numeric string ("1/3", "0.25", "1e10") or float to mpq.

    A float is read through its shortest decimal representation, so ``0.1`` becomes 1/10: the
    number the user wrote, not its binary approximation.
    """
    if type(x) is mpq:
        return x
    if isinstance(x, bool):
        raise TypeError("a truth value is not a number")
    if isinstance(x, int):
        return mpq(x)
    if isinstance(x, Fraction):
        return mpq(x.numerator, x.denominator)
    if isinstance(x, float):
        if x != x or x in (float("inf"), float("-inf")):
            raise ValueError(f"{x} has no exact value")
        value = Fraction(repr(x))
        return mpq(value.numerator, value.denominator)
    if isinstance(x, str):
        text = x.strip()
        try:
            value = Fraction(text)
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"not a number: {x!r}") from None
        return mpq(value.numerator, value.denominator)
    if hasattr(x, "numerator") and hasattr(x, "denominator"):  # numpy ints, sympy Rationals
        return mpq(int(x.numerator), int(x.denominator))
    if hasattr(x, "__index__"):
        return mpq(int(x))
    raise TypeError(f"cannot read {type(x).__name__} as an exact number")


def number(x: object) -> Number:
    """Normalize a scalar to the IR's types: floats stay float, everything else becomes mpq."""
    if isinstance(x, float):
        return x
    if hasattr(x, "dtype") and getattr(x.dtype, "kind", "") == "f":  # numpy float scalars
        return float(x)
    return exact(x)


def add(a: Number, b: Number) -> Number:
    if type(a) is float or type(b) is float:
        return float(a) + float(b)
    return a + b


def mul(a: Number, b: Number) -> Number:
    if type(a) is float or type(b) is float:
        return float(a) * float(b)
    return a * b


def inverse(a: Number) -> Number:
    if a == 0:
        raise ZeroDivisionError("division by zero")
    return 1 / a if type(a) is mpq else 1.0 / a


def format_number(x: Number) -> str:
    """Exact numbers print as "p" or "p/q"; floats as "float(REPR)" so the two never collide."""
    if type(x) is mpq:
        return str(x)
    return f"float({float(x)!r})"


def parse_number(text: str) -> Number:
    text = text.strip()
    if text.startswith("float(") and text.endswith(")"):
        return float(text[6:-1])
    return exact(text)


def same_number(a: Number, b: Number) -> bool:
    """Equal in value and in kind (exact or float): what a round trip must preserve."""
    return type(a) is type(b) and a == b
