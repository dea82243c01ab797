"""Compile-time values of the .lsrl language and their arithmetic.

A compile-time value is one of:

- a number: an exact rational (``mpq``), a rational multiple of pi (:class:`PiMultiple`, kept
  exact so that ``cos(2*pi/3)`` is exactly -1/2), or a float (an irrational result);
- a truth value (``bool``), from comparisons;
- a string (``str``), for parameters that choose between variants;
- a list (``tuple``) of values; a list of numbers is a vector and a list of equally long vectors a
  matrix; ``eye``, ``zeros``, ``ones`` and ``diag`` give sparse matrices (``ir.matrix.Matrix``).

Errors are ``LsrlError`` without a location; the elaborator adds the location of the expression.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Callable, Sequence

import gmpy2
import numpy as np
from gmpy2 import mpq

from lsrl.builder import Value
from lsrl.errors import LsrlError
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import Number
from lsrl.ir.pointwise import FLOAT_FUNCTION_VALUES

# Vectors and matrices longer than this are refused: far beyond any program, and a typo such as
# eye(100000000) would otherwise exhaust memory before anything could report it.
MAX_LENGTH = 100_000


@dataclass(frozen=True)
class PiMultiple:
    """The number ``ratio * pi``, with ``ratio`` an exact non-zero rational."""

    ratio: mpq

    def __float__(self) -> float:
        return as_float(self.ratio) * math.pi

    def __str__(self) -> str:
        if abs(self.ratio) == 1:
            return "pi" if self.ratio > 0 else "-pi"
        return f"{self.ratio}*pi"


PI = PiMultiple(mpq(1))

NUMBER_TYPES = (mpq, float, PiMultiple)


def is_number(v: object) -> bool:
    return type(v) in NUMBER_TYPES


def is_vector(v: object) -> bool:
    return type(v) is tuple and len(v) > 0 and all(type(x) in NUMBER_TYPES for x in v)


def is_matrix(v: object) -> bool:
    if isinstance(v, Matrix):
        return True
    return (
        type(v) is tuple
        and len(v) > 0
        and all(is_vector(row) for row in v)
        and len({len(row) for row in v}) == 1
    )


def holds_runtime(v: object) -> bool:
    """A list with a runtime vector somewhere inside: it becomes one runtime vector (a concat)."""
    return type(v) is tuple and any(isinstance(x, Value) or holds_runtime(x) for x in v)


def describe(v: object) -> str:
    """How a value is named in messages."""
    if isinstance(v, Value):
        return f"a runtime vector of length {v.dim}"
    if isinstance(v, bool):
        return "a truth value"
    if is_number(v):
        return f"the number {format_number(v)}"
    if isinstance(v, str):
        return f'the string "{v}"'
    if isinstance(v, Matrix):
        return f"a {v.rows}x{v.cols} matrix"
    if is_matrix(v):
        return f"a {len(v)}x{len(v[0])} matrix"  # type: ignore[index, arg-type]
    if is_vector(v):
        return f"a vector of length {len(v)}"  # type: ignore[arg-type]
    if type(v) is tuple:
        return "an empty list" if not v else f"a list of {len(v)} item{'s' if len(v) > 1 else ''}"
    if v is None:
        return "nothing"
    return getattr(v, "description", type(v).__name__)


def as_float(v: object) -> float:
    """A number as a float, for irrational results; one beyond float range is the user's error."""
    try:
        return float(v)  # type: ignore[arg-type]
    except OverflowError:
        raise LsrlError("a number is too large for floating point (where a result is irrational, it is a float)") from None


def format_number(v: object) -> str:
    if type(v) is float:
        return repr(v)
    return str(v)


# --- numbers -------------------------------------------------------------------------------------------
def to_ir_number(v: object) -> Number:
    """An IR scalar: exact rationals stay exact, multiples of pi become floats."""
    if type(v) is PiMultiple:
        return as_float(v)
    return v  # type: ignore[return-value]


def to_ir(v: object) -> object:
    """A value for the builder: numbers as IR scalars, lists recursively, matrices unchanged."""
    if type(v) is PiMultiple:
        return as_float(v)
    if type(v) is tuple:
        return tuple(to_ir(x) for x in v)
    return v


def as_integer(v: object, what: str) -> int:
    if type(v) is mpq and v.denominator == 1:
        return int(v)
    if type(v) is float and v.is_integer():
        return int(v)
    raise LsrlError(f"{what} must be an integer, got {describe(v)}")


def _pi_multiple(ratio: mpq) -> Number | PiMultiple:
    return PiMultiple(ratio) if ratio != 0 else mpq(0)


def _float_op(op: str, a: float, b: float) -> float:
    if op in "/%" and b == 0:
        raise LsrlError("division by zero")
    return {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv, "%": operator.mod}[op](a, b)


def number_binary(op: str, a: object, b: object) -> object:
    """``a op b`` for two compile-time numbers, exact wherever the result is rational."""
    ta, tb = type(a), type(b)
    if ta is mpq and tb is mpq:
        if op in "/%" and b == 0:
            raise LsrlError("division by zero")
        return {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv, "%": operator.mod}[op](a, b)
    if ta is PiMultiple or tb is PiMultiple:
        exact = _pi_binary(op, a, b)
        if exact is not None:
            return exact
    return _float_op(op, as_float(a), as_float(b))


def _pi_binary(op: str, a: object, b: object) -> object | None:
    """Results that stay a rational multiple of pi (or rational); None where they are irrational."""
    ta, tb = type(a), type(b)
    if op in "+-" and ta is PiMultiple and tb is PiMultiple:
        return _pi_multiple(a.ratio + b.ratio if op == "+" else a.ratio - b.ratio)  # type: ignore[union-attr]
    if op in "+-" and (a == 0 or b == 0) and float not in (ta, tb):
        return a if b == 0 else (b if op == "+" else _pi_multiple(-b.ratio))  # type: ignore[union-attr]
    if op == "*" and {ta, tb} == {PiMultiple, mpq}:
        pi_part, rational = (a, b) if ta is PiMultiple else (b, a)
        return _pi_multiple(pi_part.ratio * rational)  # type: ignore[union-attr]
    if op == "/" and ta is PiMultiple and tb is mpq:
        if b == 0:
            raise LsrlError("division by zero")
        return _pi_multiple(a.ratio / b)  # type: ignore[union-attr]
    if op in "/%" and ta is PiMultiple and tb is PiMultiple:
        return a.ratio / b.ratio if op == "/" else _pi_multiple(a.ratio % b.ratio)  # type: ignore[union-attr]
    return None


def number_compare(op: str, a: object, b: object) -> bool:
    if type(a) is PiMultiple and type(b) is PiMultiple:
        a, b = a.ratio, b.ratio  # type: ignore[union-attr]
    elif type(a) is PiMultiple or type(b) is PiMultiple:
        # pi is irrational, so a non-zero multiple of it never equals a rational: comparing floats
        # decides every case that can occur
        a, b = as_float(a), as_float(b)
    return COMPARISONS[op](a, b)


COMPARISONS: dict[str, Callable[[object, object], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


# --- sqrt, cos, sin --------------------------------------------------------------------------------------
# cos(r*pi) for rational r is rational only at these points of [0, 2) (Niven's theorem), and cos(x)
# for rational x only at x = 0; everywhere else the result is irrational and becomes a float.
_RATIONAL_COS = {
    mpq(0): mpq(1), mpq(1, 3): mpq(1, 2), mpq(1, 2): mpq(0), mpq(2, 3): mpq(-1, 2), mpq(1): mpq(-1),
    mpq(4, 3): mpq(-1, 2), mpq(3, 2): mpq(0), mpq(5, 3): mpq(1, 2),
}


def _cos(x: object) -> object:
    if type(x) is PiMultiple:
        exact = _RATIONAL_COS.get(x.ratio % 2)
        return exact if exact is not None else math.cos(as_float(x))
    if type(x) is mpq and x == 0:
        return mpq(1)
    return math.cos(as_float(x))


def _sin(x: object) -> object:
    if type(x) is PiMultiple:
        return _cos(_pi_multiple(mpq(1, 2) - x.ratio)) if x.ratio != mpq(1, 2) else mpq(1)
    if type(x) is mpq and x == 0:
        return mpq(0)
    return math.sin(as_float(x))


def _sqrt(x: object) -> object:
    if number_compare("<", x, mpq(0)):
        raise LsrlError(f"sqrt of a negative number ({format_number(x)})")
    if type(x) is mpq and gmpy2.is_square(x.numerator) and gmpy2.is_square(x.denominator):
        return mpq(gmpy2.isqrt(x.numerator), gmpy2.isqrt(x.denominator))
    return math.sqrt(as_float(x))


MATH_FUNCTIONS: dict[str, Callable[[object], object]] = {"sqrt": _sqrt, "cos": _cos, "sin": _sin}


def apply_math(name: str, x: object) -> object:
    """sqrt, cos or sin of a number, or elementwise of a vector."""
    if is_vector(x):
        return tuple(apply_math(name, v) for v in x)  # type: ignore[union-attr]
    if not is_number(x):
        raise LsrlError(f"{name} needs a compile-time number or vector, got {describe(x)}")
    try:
        return MATH_FUNCTIONS[name](x)
    except ValueError:  # math's domain error: an infinite or undefined float argument
        raise LsrlError(f"{name} of {format_number(x)} is undefined") from None


def apply_float_function(name: str, x: object) -> object:
    """A float function (exp, log, sigmoid, ...) of a compile-time number or vector: a float (an
    irrational constant, as ``sqrt(2)`` is)."""
    if is_vector(x):
        return tuple(apply_float_function(name, v) for v in x)  # type: ignore[union-attr]
    if not is_number(x):
        raise LsrlError(f"{name} needs a number or vector, got {describe(x)}")
    with np.errstate(all="ignore"):
        value = float(FLOAT_FUNCTION_VALUES[name](np.float64(float(x))))  # type: ignore[arg-type]
    if not math.isfinite(value):
        raise LsrlError(f"{name} of {format_number(x)} is undefined")
    return value


# --- lists, vectors and matrices --------------------------------------------------------------------------
def rows(v: object) -> tuple:
    """A matrix as a tuple of row tuples."""
    if isinstance(v, Matrix):
        return tuple(tuple(r) for r in v.to_rows())
    return v  # type: ignore[return-value]


def as_matrix(v: object) -> Matrix:
    if isinstance(v, Matrix):
        return v
    return Matrix.from_rows([[to_ir_number(x) for x in row] for row in v])  # type: ignore[union-attr]


def check_length(n: int, what: str) -> int:
    if n > MAX_LENGTH:
        raise LsrlError(f"{what} of {n} is too large (at most {MAX_LENGTH})")
    return n


def binary(op: str, a: object, b: object) -> object:
    """``a op b`` for compile-time operands (+ - * / % elementwise with broadcasting; @ products)."""
    if op == "@":
        return _matmul(a, b)
    if is_number(a) and is_number(b):
        return number_binary(op, a, b)
    if isinstance(a, Matrix) or isinstance(b, Matrix):
        return _matrix_binary(op, a, b)
    if type(a) is tuple or type(b) is tuple:
        return _elementwise(op, a, b)
    raise LsrlError(f"cannot apply '{op}' to {describe(a)} and {describe(b)}")


def _elementwise(op: str, a: object, b: object) -> tuple:
    """Lists combine item by item; a number or a list of one item broadcasts."""
    if type(a) is tuple and type(b) is tuple:
        if len(a) != len(b) and 1 not in (len(a), len(b)):
            raise LsrlError(f"length mismatch: {describe(a)} and {describe(b)}")
        n = max(len(a), len(b))
        left = a * n if len(a) == 1 else a
        right = b * n if len(b) == 1 else b
        return tuple(binary(op, x, y) for x, y in zip(left, right))
    if type(a) is tuple and is_number(b):
        return tuple(binary(op, x, b) for x in a)
    if type(b) is tuple and is_number(a):
        return tuple(binary(op, a, y) for y in b)
    raise LsrlError(f"cannot apply '{op}' to {describe(a)} and {describe(b)}")


def _matrix_binary(op: str, a: object, b: object) -> object:
    if op in "+-" and is_matrix(a) and is_matrix(b):
        left, right = as_matrix(a), as_matrix(b)
        if left.shape != right.shape:
            raise LsrlError(f"cannot apply '{op}' to {describe(a)} and {describe(b)}")
        return left + (right if op == "+" else right.scaled(mpq(-1)))
    if op == "*" and is_number(a) and isinstance(b, Matrix):
        return b.scaled(to_ir_number(a))
    if op in "*/" and isinstance(a, Matrix) and is_number(b):
        factor = to_ir_number(b) if op == "*" else number_binary("/", mpq(1), b)
        return a.scaled(to_ir_number(factor))
    # anything else works entry by entry on the rows
    return binary(op, rows(a), rows(b))


def _matmul(a: object, b: object) -> object:
    if is_matrix(a) and is_matrix(b):
        left, right = as_matrix(a), as_matrix(b)
        if left.cols != right.rows:
            raise LsrlError(f"cannot multiply {describe(a)} by {describe(b)}")
        return left @ right
    if is_matrix(a) and is_vector(b):
        m = as_matrix(a)
        if m.cols != len(b):  # type: ignore[arg-type]
            raise LsrlError(f"a {m.rows}x{m.cols} matrix cannot apply to {describe(b)}")
        return tuple(m.apply([to_ir_number(x) for x in b]))  # type: ignore[union-attr]
    if is_vector(a) and is_vector(b):
        if len(a) != len(b):  # type: ignore[arg-type]
            raise LsrlError(f"length mismatch: {describe(a)} and {describe(b)}")
        total: object = mpq(0)
        for x, y in zip(a, b):  # type: ignore[call-overload]
            total = number_binary("+", total, number_binary("*", x, y))
        return total
    raise LsrlError(f"'@' needs a matrix (or vector) on the left and a vector or matrix on the right, got {describe(a)} and {describe(b)}")


def negate(v: object) -> object:
    if is_number(v):
        return number_binary("-", mpq(0), v)
    if isinstance(v, Matrix):
        return v.scaled(mpq(-1))
    if type(v) is tuple:
        return tuple(negate(x) for x in v)
    raise LsrlError(f"cannot negate {describe(v)}")


def compare(op: str, a: object, b: object) -> bool:
    if is_number(a) and is_number(b):
        return number_compare(op, a, b)
    if op in ("==", "!="):
        if type(a) is type(b) and isinstance(a, (str, bool)):
            return (a == b) == (op == "==")
        if type(a) is tuple and type(b) is tuple or isinstance(a, Matrix) or isinstance(b, Matrix):
            same = _structurally_equal(rows(a), rows(b))
            return same == (op == "==")
    raise LsrlError(f"cannot compare {describe(a)} and {describe(b)} with '{op}'")


def _structurally_equal(a: object, b: object) -> bool:
    if type(a) is tuple and type(b) is tuple:
        return len(a) == len(b) and all(_structurally_equal(x, y) for x, y in zip(a, b))
    if is_number(a) and is_number(b):
        return number_compare("==", a, b)
    return type(a) is type(b) and a == b


def relu(v: object) -> object:
    if is_number(v):
        return v if number_compare(">", v, mpq(0)) else mpq(0)
    if is_vector(v):
        return tuple(relu(x) for x in v)  # type: ignore[union-attr]
    raise LsrlError(f"relu needs a number, a vector or a runtime value, got {describe(v)}")


def concat_vectors(parts: Sequence[object]) -> tuple:
    out: list[object] = []
    for part in parts:
        if is_number(part):
            out.append(part)
        elif is_vector(part):
            out.extend(part)  # type: ignore[arg-type]
        else:
            raise LsrlError(f"concat joins vectors and numbers, got {describe(part)}")
    return tuple(out)
