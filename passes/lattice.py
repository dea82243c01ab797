"""Lattices: the arithmetic progressions ``offset + step * Z`` that a value's every value lies on.

The range analysis (``passes.ranges``) keeps one lattice per unit beside its interval: integer
tokens lie on ``0 + 1 Z``, a count of 0/1 conditions too, ``x / 2`` of an integer on ``0 + 1/2 Z``,
``2 x + 1`` on ``1 + 2 Z``, a constant on its own point (step 0). ``None`` stands for no known
lattice (values from irrational weights, states whose lattice does not settle). Every rule is
sound: if the operands' values lie on their lattices, so does the result.

A comparison whose operand lives on a lattice only ever sees the lattice's points; where none of
them falls inside its ramp, the comparison can be rebuilt with other constants that agree at every
point (``passes.constants``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

import gmpy2
from gmpy2 import mpq
from lsrl.ir.numbers import Number, is_exact


def rational_gcd(a: mpq, b: mpq) -> mpq:
    """The largest g >= 0 with a/g and b/g integers (gcd(0, b) = |b|)."""
    a, b = abs(mpq(a)), abs(mpq(b))
    return mpq(gmpy2.gcd(a.numerator * b.denominator, b.numerator * a.denominator), a.denominator * b.denominator)


@dataclass(frozen=True)
class Lattice:
    """``{offset + k * step : k integer}``; step 0 is the single point ``offset``. The offset is
    kept in ``[0, step)`` so that equal lattices compare equal."""

    offset: mpq
    step: mpq

    @classmethod
    def of(cls, offset: Number, step: Number) -> "Lattice":
        offset, step = mpq(offset), abs(mpq(step))
        return cls(offset - step * gmpy2.floor(offset / step) if step else offset, step)

    @classmethod
    def point(cls, value: Number | int) -> Optional["Lattice"]:
        """The single value (None for a float: it stands for an irrational number)."""
        return cls.of(value, 0) if is_exact(value) or type(value) is int else None

    @property
    def is_integer(self) -> bool:
        """Whether every point is an integer."""
        return self.offset.denominator == 1 and self.step.denominator == 1

    def contains(self, value: Number) -> bool:
        if not is_exact(value):
            return False
        if self.step == 0:
            return value == self.offset
        return ((mpq(value) - self.offset) / self.step).denominator == 1

    def floor(self, value: Number) -> Optional[mpq]:
        """The largest point <= value (None where there is none: a single point above it)."""
        if self.step == 0:
            return self.offset if self.offset <= value else None
        return self.offset + self.step * gmpy2.floor((mpq(value) - self.offset) / self.step)

    def ceil(self, value: Number) -> Optional[mpq]:
        """The smallest point >= value (None where there is none)."""
        if self.step == 0:
            return self.offset if self.offset >= value else None
        return self.offset + self.step * gmpy2.ceil((mpq(value) - self.offset) / self.step)

    def scaled(self, factor: Number | int) -> Optional["Lattice"]:
        if not (is_exact(factor) or type(factor) is int):
            return None
        return Lattice.of(self.offset * factor, self.step * factor)


def join(*lattices: Optional[Lattice]) -> Optional[Lattice]:
    """The finest lattice holding every point of each (None if any is unknown)."""
    first = lattices[0]
    if first is None:
        return None
    step = first.step
    for other in lattices[1:]:
        if other is None:
            return None
        step = rational_gcd(rational_gcd(step, other.step), other.offset - first.offset)
    return Lattice.of(first.offset, step)


def combination(terms: Iterable[tuple[Number, Optional[Lattice]]], const: Number) -> Optional[Lattice]:
    """The lattice of ``sum w * x + const`` for (w, lattice of x) in terms."""
    if not is_exact(const):
        return None
    offset, step = mpq(const), mpq(0)
    for weight, lattice in terms:
        if weight == 0:
            continue
        if lattice is None or not is_exact(weight):
            return None
        offset += weight * lattice.offset
        step = rational_gcd(step, weight * lattice.step)
    return Lattice.of(offset, step)


def product(a: Optional[Lattice], b: Optional[Lattice]) -> Optional[Lattice]:
    """The lattice of ``x * y``: (o1 + s1 i)(o2 + s2 j) = o1 o2 + o1 s2 j + o2 s1 i + s1 s2 i j."""
    if a is None or b is None:
        return None
    step = rational_gcd(rational_gcd(a.offset * b.step, b.offset * a.step), a.step * b.step)
    return Lattice.of(a.offset * b.offset, step)


def relu(a: Optional[Lattice]) -> Optional[Lattice]:
    """relu(x) is x or 0."""
    return join(a, Lattice.point(0))


def next_above(lattice: Lattice, value: Number) -> Optional[mpq]:
    """The smallest point strictly above value (None where there is none)."""
    if lattice.step == 0:
        return lattice.offset if lattice.offset > value else None
    point = lattice.ceil(value)
    return point + lattice.step if point == value else point


def next_below(lattice: Lattice, value: Number) -> Optional[mpq]:
    """The largest point strictly below value (None where there is none)."""
    if lattice.step == 0:
        return lattice.offset if lattice.offset < value else None
    point = lattice.floor(value)
    return point - lattice.step if point == value else point


def nearest_nonzero(lattice: Lattice, lo: Number, hi: Number) -> tuple[Optional[mpq], Optional[mpq]]:
    """The smallest positive and the largest negative point in ``[lo, hi]`` (None where none)."""
    positive = next_above(lattice, 0) if lo <= 0 else lattice.ceil(lo)
    negative = next_below(lattice, 0) if hi >= 0 else lattice.floor(hi)
    return (
        positive if positive is not None and positive <= hi else None,
        negative if negative is not None and negative >= lo else None,
    )


def first_on_ramp(lattice: Lattice, lo: Number, hi: Number, low: Number, high: Number) -> Optional[mpq]:
    """The smallest point in ``[lo, hi]`` strictly between low and high, if any."""
    point = next_above(lattice, low) if low >= lo else lattice.ceil(lo)
    return point if point is not None and point < high and point <= hi else None
