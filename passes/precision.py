"""Float32 warnings: where a compiled program needs more precision than float32 has.

Float32 keeps 24 significant bits. LSRL's constructions are exact in exact arithmetic and in
float64, but they lean on large numbers: ``ifelse`` adds ``big * condition`` (1e10, where
float32's spacing is 1024) to a branch value and relies on a ReLU to cut the sum off, and nested
comparisons have their scales folded into one another (``balance_relus``), so that a ReLU reads
``1e9 * x`` and must still tell ``1e9 * x`` from ``1e9 * x - 1e6``. Float32 then rounds by more
than a comparison can absorb and an output flips. ``float32_warnings`` finds these places from
the program's constants and the range analysis and reports them at their source location.

The analysis reads the canonical graph (the graph ``linearize`` schedules, so its sums are the
model's sums) and follows every value the way the model computes it:

- A value is a few *design points* (exact values, each with an error bound: conditions that are
  0 or 1, one-hot counters, small sums of them) or a *spread*: an interval from the range
  analysis, the lattice its values lie on where that is known, and one error bound. Error bounds
  are kept per *origin*, the node whose rounding causes them, so that a warning points at the
  constant responsible rather than at the output where the damage shows.
- Float32 adds numbers exactly when all of them are multiples of some ``2**k`` and the sum of
  their magnitudes stays below ``2**(24 + k)``: integer counters below 2**24, ``1e9 * x`` for
  integer x while ``|1e9 * x| < 2**33``. Otherwise a sum is off by up to 2**-24 of that sum.
- The ReLUs of one sum that read one scalar z compute a piecewise linear function of it (a step,
  a bump, an equality test). At each design point of z it is evaluated exactly, with the error
  that z's error and the ReLUs' roundings cause there: nothing from a ReLU that is off by more
  than its error; from ReLUs that are on, z's error times their summed slope (0 on a plateau)
  and the rounding of their biases (their dot product is one computation, which cancels); from
  a ReLU the error may switch, its whole error, as at ``step(0)``, where booleans sit.
- A value whose lattice is unknown (an input not declared integer, and what is computed from
  it) is assumed to keep off a comparison's ramps by at least a ramp's width: the analysis checks
  the design the program states, not inputs placed on a threshold.
- An output whose error may exceed OUTPUT_RTOL of its value is reported with the origins that
  make up that error. So is a sum that subtracts two ReLUs of one large term that can be
  positive: ``ifelse`` with a condition outside [0, 1] computes ``relu(big + t) - relu(big - t)``
  and float32 loses t.

Inputs with no stated range are taken to lie in NOMINAL_INPUT. Error that piles up in a state is
followed over NOMINAL_LENGTH steps, and a comparison is examined up to TYPICAL_REACH beyond its
thresholds. Not followed: the rounding of sums of values that stay unbounded (growing or rotating
states, accumulators of unbounded drives) and float32's ordinary relative drift in accumulators of
non-integers. docs/precision.md has the measured errors of the shared table and the limits.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence, Union

import gmpy2
import numpy as np
from gmpy2 import mpq
from lsrl.ir.errors import CompileWarning
from lsrl.ir.graph import Graph, Node
from lsrl.ir.numbers import ONE, ZERO, Number, add, inverse, is_exact, mul
from lsrl.passes.canonicalize import canonicalize
from lsrl.passes.linear_forms import UnitKey, is_linear, weighted_sum
from lsrl.passes.ranges import INF, Interval, analyze

SIGNIFICANT_BITS = 24  # float32 holds every integer below 2**24, and no odd one above
UNIT_ROUNDOFF = 2.0**-SIGNIFICANT_BITS  # the relative error of one float32 rounding
NOMINAL_INPUT = (-1, 1)  # where an input with no stated range is assumed to lie
NOMINAL_LENGTH = 1024  # steps assumed for unbounded sequences (the targets' default --max-len)
# A comparison is examined for inputs up to this far from its thresholds (a counter NOMINAL_LENGTH
# steps on), not over the whole range, which interval analysis over-approximates: a key written
# once into an accumulator is bounded by NOMINAL_LENGTH times the largest key.
TYPICAL_REACH = NOMINAL_LENGTH
OUTPUT_RTOL = 1e-3  # the error an output may show, relative to its value (at least 1)
POINT_LIMIT = 64  # design points a value keeps before it is described by a spread
STATE_ITERATIONS = 64  # steps a state's design points are followed, looking for a cycle
CONDITIONALS = ("ifelse", "ifelse_step", "ifeq")  # the library's functions with a large constant big

Errors = Mapping[int, float]  # origin node id -> bound of the error it causes here


# --- error bounds ----------------------------------------------------------------------------------
def _combined(*terms: tuple[float, Errors]) -> dict[int, float]:
    """``sum factor * errors``, origin by origin."""
    out: dict[int, float] = {}
    for factor, errors in terms:
        if factor:
            for origin, amount in errors.items():
                out[origin] = out.get(origin, 0.0) + factor * amount
    return out


def _worst(*errors: Errors) -> dict[int, float]:
    """A bound that holds wherever any of ``errors`` does."""
    out: dict[int, float] = {}
    for each in errors:
        for origin, amount in each.items():
            out[origin] = max(out.get(origin, 0.0), amount)
    return out


def _total(errors: Errors) -> float:
    return sum(errors.values())


# --- float32 grids ---------------------------------------------------------------------------------
def _gcd(a: Number, b: Number) -> mpq:
    """The largest rational g with a/g and b/g integers (a, b exact; gcd(0, b) = |b|)."""
    a, b = abs(mpq(a)), abs(mpq(b))
    return mpq(gmpy2.gcd(a.numerator * b.denominator, b.numerator * a.denominator), a.denominator * b.denominator)


def _exact_below(grid: Number | None, magnitude: float) -> bool:
    """Whether float32 adds multiples of ``grid`` exactly, in any order, when the sum of their
    magnitudes is below ``magnitude``: so it is for multiples of 2**k below 2**(24 + k)."""
    if grid is None or not is_exact(grid):
        return False
    if grid == 0:
        return True
    denominator = int(grid.denominator)
    if denominator & (denominator - 1):  # not a power of two: 1/3 has no float32 multiple
        return False
    k = int(gmpy2.bit_scan1(grid.numerator)) - (denominator.bit_length() - 1)
    return magnitude < 2.0 ** (SIGNIFICANT_BITS + k)


def _float32_holds(x: Number) -> bool:
    if not is_exact(x):
        return bool(np.float32(x) == x)
    return _exact_below(abs(x), abs(float(x)))


def _magnitude(interval: Interval) -> float:
    return max(abs(float(interval.lo)), abs(float(interval.hi)))


@dataclass(frozen=True)
class Lattice:
    """Values ``offset + n * step`` for integers n (step 0: the one value ``offset``)."""

    step: mpq
    offset: mpq

    @classmethod
    def of(cls, values: Iterable[Number]) -> "Lattice | None":
        values = list(values)
        if not all(is_exact(v) for v in values):
            return None
        step = ZERO
        for v in values[1:]:
            step = _gcd(step, v - values[0])
        return cls(step, values[0])

    @property
    def grid(self) -> mpq:
        """Every value is a multiple of this."""
        return _gcd(self.step, self.offset)

    def scaled(self, factor: Number) -> "Lattice | None":
        return Lattice(abs(factor) * self.step, factor * self.offset) if is_exact(factor) else None

    def __add__(self, other: "Lattice") -> "Lattice":
        return Lattice(_gcd(self.step, other.step), self.offset + other.offset)

    def union(self, other: "Lattice") -> "Lattice":
        return Lattice(_gcd(_gcd(self.step, other.step), other.offset - self.offset), self.offset)

    def times(self, other: "Lattice") -> "Lattice":
        """(n q1 + r1)(m q2 + r2) lies on the lattice of step gcd(q1 q2, q1 r2, q2 r1)."""
        step = _gcd(_gcd(self.step * other.step, self.step * other.offset), other.step * self.offset)
        return Lattice(step, self.offset * other.offset)

    def at_least(self, x: Number) -> mpq:
        """The smallest value >= x (x finite, step > 0)."""
        return self.offset + gmpy2.ceil((mpq(x) - self.offset) / self.step) * self.step

    def at_most(self, x: Number) -> mpq:
        """The largest value <= x (x finite, step > 0)."""
        return self.offset + gmpy2.floor((mpq(x) - self.offset) / self.step) * self.step


# --- abstract values ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Points:
    """The values a unit takes at the program's design points, each with its error bound."""

    errors: Mapping[Number, Errors]


@dataclass(frozen=True)
class Spread:
    """Values in ``interval`` (on ``lattice`` where known), with one error bound for all."""

    interval: Interval
    lattice: Lattice | None
    errors: Errors


Value = Union[Points, Spread]


def _interval(value: Value) -> Interval:
    return value.interval if isinstance(value, Spread) else Interval(min(value.errors), max(value.errors))


def _lattice(value: Value) -> Lattice | None:
    return value.lattice if isinstance(value, Spread) else Lattice.of(value.errors)


def _errors(value: Value) -> dict[int, float]:
    return dict(value.errors) if isinstance(value, Spread) else _worst(*value.errors.values())


def _spread(value: Value) -> Spread:
    return value if isinstance(value, Spread) else Spread(_interval(value), _lattice(value), _errors(value))


def _with_errors(value: Value, extra: Errors) -> Value:
    if not extra:
        return value
    if isinstance(value, Spread):
        return Spread(value.interval, value.lattice, _combined((1, value.errors), (1, extra)))
    return Points({v: _combined((1, e), (1, extra)) for v, e in value.errors.items()})


def _union(values: Sequence[Value]) -> Value:
    if all(isinstance(v, Points) for v in values):
        merged: dict[Number, dict[int, float]] = {}
        for value in values:
            for v, e in value.errors.items():
                merged[v] = _worst(merged.get(v, {}), e)
        if len(merged) <= POINT_LIMIT:
            return Points(merged)
    spreads = [_spread(v) for v in values]
    interval, lattice = spreads[0].interval, spreads[0].lattice
    for s in spreads[1:]:
        interval = interval.hull(s.interval)
        lattice = lattice.union(s.lattice) if lattice is not None and s.lattice is not None else None
    return Spread(interval, lattice, _worst(*(s.errors for s in spreads)))


def _enumerated(value: Spread) -> Value:
    """A spread on a lattice with few points in its interval, as those points."""
    lattice, interval = value.lattice, value.interval
    if lattice is None or interval.lo == -INF or interval.hi == INF:
        return value
    if lattice.step == 0:
        return Points({lattice.offset: value.errors})
    first, last = lattice.at_least(interval.lo), lattice.at_most(interval.hi)
    if (last - first) / lattice.step >= POINT_LIMIT:
        return value
    count = int((last - first) / lattice.step) + 1
    return Points({first + k * lattice.step: value.errors for k in range(count)})


def _linear(parts: Sequence[tuple[Number, Value]], const: Number) -> Value:
    """``sum w * value + const`` of independent values, without the sum's own rounding."""
    points: dict[Number, dict[int, float]] = {const: {}}
    for w, value in parts:
        if not isinstance(value, Points) or len(points) * len(value.errors) > POINT_LIMIT:
            return _linear_spread(parts, const)
        sums: dict[Number, dict[int, float]] = {}
        for s, es in points.items():
            for v, ev in value.errors.items():
                key = add(s, mul(w, v))
                sums[key] = _worst(sums.get(key, {}), _combined((1, es), (abs(float(w)), ev)))
        points = sums
    return Points(points)


def _linear_spread(parts: Sequence[tuple[Number, Value]], const: Number) -> Spread:
    interval, lattice, errors = Interval.point(const), Lattice.of([const]), {}
    for w, value in parts:
        s = _spread(value)
        interval = interval + s.interval.scaled(w)
        scaled = s.lattice.scaled(w) if s.lattice is not None else None
        lattice = lattice + scaled if lattice is not None and scaled is not None else None
        errors = _combined((1, errors), (abs(float(w)), s.errors))
    return Spread(interval, lattice, errors)


def _grid(parts: Sequence[tuple[Number, Value]], const: Number) -> Number | None:
    """A grid every term of ``sum w * value + const`` lies on, None if there is none."""
    if not is_exact(const):
        return None
    grid: Number = abs(const)
    for w, value in parts:
        lattice = _lattice(value)
        scaled = lattice.scaled(w) if lattice is not None else None
        if scaled is None:
            return None
        grid = _gcd(grid, scaled.grid)
    return grid


def _sum_magnitude(parts: Sequence[tuple[Number, Value]], const: Number) -> float:
    return abs(float(const)) + sum(abs(float(w)) * _magnitude(_interval(v)) for w, v in parts)


# --- comparisons: the ReLUs of one sum that read one scalar --------------------------------------------
@dataclass(frozen=True)
class _Dot:
    """One case of a scalar z, as the ReLUs that read it compute ``a * z``: its values, and for
    a = 1 the sum of the dot product's term magnitudes and a grid all terms lie on. A scalar
    splits into cases by the design points of its terms: at ``c = 0``, ``-big * c + t`` is t."""

    z: Value
    magnitude: float
    grid: Number | None
    single: bool  # one term, so at an exact point z0 the dot product is the one product a * z0
    difference: bool  # w * x - w * y, which float32 computes exactly (as 0) where x = y


@dataclass(frozen=True)
class _Ramp:
    """The term ``c * relu(a * z + b)`` of a sum, from the ReLU unit ``key``; ``weights_hold``
    says float32 holds the weights of its dot product."""

    key: UnitKey
    c: Number
    a: Number
    b: Number
    weights_hold: bool

    def read_by(self, c: Number) -> "_Ramp":
        """The same ReLU, read with the weight c."""
        return _Ramp(self.key, c, self.a, self.b, self.weights_hold)

    def dot_rounding(self, dot: _Dot, z: Number | None) -> float:
        """The rounding of ``a * z`` at the exact design point z (None: anywhere in the case)."""
        if self.weights_hold and dot.single and z is not None:
            product = mul(self.a, z)
            return 0.0 if _float32_holds(product) else UNIT_ROUNDOFF * abs(float(product))
        if dot.difference and z == 0:  # the two products are rounded alike and cancel
            return 0.0
        magnitude = abs(float(self.a)) * dot.magnitude
        if self.weights_hold and dot.grid is not None and _exact_below(abs(self.a) * dot.grid, magnitude):
            return 0.0
        return UNIT_ROUNDOFF * magnitude if magnitude < INF else 0.0

    def bias_rounding(self, dot: _Dot, z: Number | None) -> float:
        """The rounding of adding b to the dot product: none while both stay below 2**24 times
        b's grid, so that a step's two ReLUs differ by exactly their biases' difference."""
        if self.b == 0:
            return 0.0
        if z is None:
            largest = abs(float(self.a)) * dot.magnitude + abs(float(self.b))
        else:
            largest = max(abs(float(mul(self.a, z))), abs(float(add(mul(self.a, z), self.b))))
        if largest == INF or _exact_below(abs(self.b) if is_exact(self.b) else None, largest):
            return 0.0
        return UNIT_ROUNDOFF * largest


def _relu_sum(ramps: Sequence[_Ramp], z: Number) -> Number:
    total: Number = ZERO
    for r in ramps:
        p = add(mul(r.a, z), r.b)
        if p > 0:
            total = add(total, mul(r.c, p))
    return total


@dataclass(frozen=True)
class _Segment:
    """Where none of a group's ReLUs switches: between two breakpoints, at one slope."""

    lo: Number
    hi: Number
    slope: Number

    @property
    def bounded(self) -> bool:
        return self.lo != -INF and self.hi != INF

    def inside(self) -> Number:
        if self.bounded:
            return (self.lo + self.hi) / 2
        if self.lo == -INF:
            return self.hi - 1 if self.hi != INF else ZERO
        return self.lo + 1


class _Group:
    """``sum c_k relu(a_k z + b_k)``: the comparison the ReLUs of one sum that read one scalar z
    form, evaluated case by case of z (``_Dot``)."""

    def __init__(self, ramps: Sequence[_Ramp], notes: dict[int, float]):
        self.ramps, self.notes = list(ramps), notes  # notes: origin -> the largest rounding it makes
        bounds = [-INF, *sorted({mul(-r.b, inverse(r.a)) for r in self.ramps}), INF]
        self.segments = []
        for lo, hi in zip(bounds, bounds[1:]):
            probe = _Segment(lo, hi, ZERO).inside()
            slope = sum((mul(r.c, r.a) for r in self.ramps if add(mul(r.a, probe), r.b) > 0), ZERO)
            self.segments.append(_Segment(lo, hi, slope))
        # how far a design keeps a value of unknown lattice from the comparison's ramps
        self.design_margin = min((s.hi - s.lo for s in self.segments if s.bounded and s.slope != 0), default=ZERO)

    @property
    def unbounded(self) -> bool:
        """The function grows without bound (a lone ReLU), rather than saturating (a step)."""
        return self.segments[0].slope != 0 or self.segments[-1].slope != 0

    def values(self, dot: _Dot) -> list[Value]:
        z = dot.z
        if isinstance(z, Points):
            return [self.at(dot, v, e) for v, e in z.errors.items()]
        if self.unbounded:
            typical = z
        else:
            breaks = [s.hi for s in self.segments[:-1]]
            lo = max(z.interval.lo, min(z.interval.hi, breaks[0]) - TYPICAL_REACH)
            hi = min(z.interval.hi, max(z.interval.lo, breaks[-1]) + TYPICAL_REACH)
            typical = Spread(Interval(lo, hi), z.lattice, z.errors)
        return self._on_lattice(dot, typical) if z.lattice is not None else self._by_design(dot, typical)

    def at(self, dot: _Dot, z: Number, z_errors: Errors, exact_point: bool = True) -> Points:
        """The value at the design point z and its error. A ReLU clearly off adds nothing; the
        ReLUs clearly on pass z's error at their summed slope and cancel the rounding of their
        shared dot product; a ReLU the error may switch adds its whole error. ``exact_point``:
        z is a value the program takes, not a stand-in for the values near it."""
        z_error = _total(z_errors)
        where = z if exact_point else None
        slope: Number = ZERO
        switching = 0.0
        # ReLUs with the same |a| share one dot product (up to sign): |a| -> [a ramp, the net
        # coefficient of its rounding among those on, the coefficients of those switching]
        shared: dict[Number, list] = {}
        rounding: dict[int, float] = {}
        for r in self.ramps:
            p = add(mul(r.a, z), r.b)
            dot_error, bias_error = r.dot_rounding(dot, where), r.bias_rounding(dot, where)
            window = abs(float(r.a)) * z_error + dot_error + bias_error
            if p <= -window:
                continue
            share = shared.setdefault(abs(r.a), [r, 0.0, 0.0])
            if p >= window:
                slope = add(slope, mul(r.c, r.a))
                share[1] += float(r.c) * (1 if r.a > 0 else -1)
            else:
                switching += abs(float(mul(r.c, r.a)))
                share[2] += abs(float(r.c))
            if bias_error:
                self._note(r.key[0], bias_error)
                rounding[r.key[0]] = rounding.get(r.key[0], 0.0) + abs(float(r.c)) * bias_error
        for first, on, switched in shared.values():
            dot_error = first.dot_rounding(dot, where)
            if dot_error and abs(on) + switched:
                self._note(first.key[0], dot_error)
                rounding[first.key[0]] = rounding.get(first.key[0], 0.0) + (abs(on) + switched) * dot_error
        errors = _combined((abs(float(slope)) + switching, z_errors), (1, rounding))
        return Points({_relu_sum(self.ramps, z): errors})

    def on_segment(self, dot: _Dot, segment: _Segment, z: Interval) -> Spread:
        """Everywhere on the part of a segment inside z's interval: the slope carries z's error,
        every ReLU that is on adds its rounding at the largest magnitude there."""
        lo, hi = max(segment.lo, z.lo), min(segment.hi, z.hi)
        probe = _Segment(lo, hi, ZERO).inside()
        if segment.slope == 0:
            ends = [_relu_sum(self.ramps, probe)] * 2
        else:  # an infinite end of a ramp: the function goes to the infinity its slope points at
            ends = [
                _relu_sum(self.ramps, e) if e not in (-INF, INF) else (INF if (e > 0) == (segment.slope > 0) else -INF)
                for e in (lo, hi)
            ]
        rounding: list[tuple[float, Errors]] = [(abs(float(segment.slope)), _errors(dot.z))]
        for r in self.ramps:
            if add(mul(r.a, probe), r.b) > 0:
                amount = r.dot_rounding(dot, None) + r.bias_rounding(dot, None)
                if amount:
                    self._note(r.key[0], amount)
                    rounding.append((abs(float(r.c)), {r.key[0]: amount}))
        return Spread(Interval(min(ends), max(ends)), None, _combined(*rounding))

    def _note(self, origin: int, rounding: float) -> None:
        self.notes[origin] = max(self.notes.get(origin, 0.0), rounding)

    def _on_lattice(self, dot: _Dot, z: Spread) -> list[Value]:
        """Every lattice point at a breakpoint and, per segment, the ones nearest its ends (all
        of them on a short ramp): the errors are largest there."""
        lattice = z.lattice
        assert lattice is not None
        if lattice.step == 0:
            return [self.at(dot, lattice.offset, z.errors)]
        out: list[Value] = []
        for segment in self.segments:
            start, stop = max(segment.lo, z.interval.lo), min(segment.hi, z.interval.hi)
            first = lattice.at_least(start) if start != -INF else None
            last = lattice.at_most(stop) if stop != INF else None
            if first is not None and last is not None:
                if first > last:
                    continue
                if segment.slope != 0 and (last - first) / lattice.step < POINT_LIMIT:
                    count = int((last - first) / lattice.step) + 1
                    out.extend(self.at(dot, first + k * lattice.step, z.errors) for k in range(count))
                    continue
            out.extend(self.at(dot, end, z.errors) for end in (first, last) if end is not None)
            if segment.slope != 0 or first is None or last is None:
                inner = self.on_segment(dot, segment, z.interval)
                values = None
                if is_exact(segment.slope):
                    anchor = first if first is not None else last
                    values = Lattice(abs(segment.slope) * lattice.step, _relu_sum(self.ramps, anchor))
                out.append(Spread(inner.interval, values, inner.errors))
        return out

    def _by_design(self, dot: _Dot, z: Spread) -> list[Value]:
        """With no lattice: the points a design margin off each ramp, the kinks between two
        ramps (eq's "equal"), and the unbounded ramps of lone ReLUs; short ramps are not visited."""
        out: list[Value] = []
        for i, segment in enumerate(self.segments):
            start, stop = max(segment.lo, z.interval.lo), min(segment.hi, z.interval.hi)
            if start > stop:
                continue
            if segment.slope == 0:
                for end, step_in, neighbour in ((segment.lo, 1, i - 1), (segment.hi, -1, i + 1)):
                    if end not in (-INF, INF) and self.segments[neighbour].slope != 0:
                        point = min(max(end + step_in * self.design_margin, start), stop)
                        out.append(self.at(dot, point, z.errors, exact_point=False))
            elif not segment.bounded:
                out.append(self.on_segment(dot, segment, z.interval))
            elif i + 1 < len(self.segments) and self.segments[i + 1].slope != 0 and start <= segment.hi <= stop:
                out.append(self.at(dot, segment.hi, z.errors))  # a value the program takes: x = y
        if not out:  # z stays on short ramps: its error passes at their slope
            out = [
                self.on_segment(dot, s, z.interval)
                for s in self.segments
                if max(s.lo, z.interval.lo) <= min(s.hi, z.interval.hi)
            ]
        return out


# --- the analysis ---------------------------------------------------------------------------------------
@dataclass
class _Finding:
    """The worst error one origin causes, and where it shows."""

    amount: float
    consequence: str


@dataclass(frozen=True)
class _Scalar:
    """What the ReLUs that read one scalar share: its identity, its cases and a ReLU's ramp."""

    key: frozenset
    dots: list[_Dot]
    ramp: _Ramp


class _Analysis:
    def __init__(self, graph: Graph, input_range: object, integer_inputs: bool):
        self.graph = canonicalize(graph)
        self.ranges = analyze(self.graph, _nominal(self.graph, input_range))
        self.forms = self.ranges.forms
        self.integer_inputs = integer_inputs
        self.units: dict[int, list[Value]] = {}
        self.scalars: dict[UnitKey, _Scalar | None] = {}
        self.cases: dict[frozenset, list[_Dot]] = {}  # a scalar's identity -> its cases
        self.findings: dict[int, _Finding] = {}
        self.notes: dict[int, float] = {}  # origin -> the largest rounding it makes, for the warning's text
        for node in self.graph.topological_order():
            if node.kind != "relu" and (not is_linear(node) or node.id in self.forms.definitions):
                self.units[node.id] = self._atom(node)

    # --- atoms ------------------------------------------------------------------------------------
    def _atom(self, node: Node) -> list[Value]:
        if node.kind == "input":
            lattice = Lattice(mpq(1), ZERO) if self.integer_inputs else None
            return [_enumerated(Spread(interval, lattice, {})) for interval in self.ranges[node.id]]
        if node.kind == "mul":
            return self._products(node)
        if node.kind == "state":
            return self._state(node)
        return [self._computed(terms, const, node.id) for terms, const in self.forms.definitions[node.id].rows()]

    def _unit(self, key: UnitKey) -> Value:
        atom, j = key
        if self.graph[atom].kind == "relu":  # read alone: a ReLU of a constant, or a group of one
            scalar = self._scalar(key)
            if scalar is None:
                return Points({max(self.forms[self.graph[atom].operands[0]].rows()[j][1], ZERO): {}})
            return self._group([scalar.ramp], scalar.dots)[0]
        return self.units[atom][j]

    def _scalar(self, key: UnitKey) -> _Scalar | None:
        """For a ReLU unit relu(a z + b), z weighing its first atom unit by 1: z's identity, its
        cases and the ramp (c = 1); None for the ReLU of a constant."""
        if key not in self.scalars:
            atom, j = key
            inner, b = self.forms[self.graph[atom].operands[0]].rows()[j]
            self.scalars[key] = None
            if inner:
                a = inner[min(inner)]
                identity = frozenset((k, mul(v, inverse(a))) for k, v in inner.items())
                holds = all(_float32_holds(w) for w in inner.values())
                if identity not in self.cases:  # the ReLUs of a step share their scalar's cases
                    weights = list(inner.values())
                    difference = len(weights) == 2 and weights[0] == -weights[1]
                    self.cases[identity] = self._dots(self._parts(inner), inverse(a), len(inner) == 1, difference)
                self.scalars[key] = _Scalar(identity, self.cases[identity], _Ramp(key, ONE, a, b, holds))
        return self.scalars[key]

    def _dots(self, parts: list[tuple[Number, Value]], scale: Number, single: bool, difference: bool) -> list[_Dot]:
        """The cases of ``scale * sum parts``: one per combination of its terms' design points."""
        fixed = [(w, v) for w, v in parts if isinstance(v, Points)]
        spread = [(w, v) for w, v in parts if not isinstance(v, Points)]
        if math.prod(len(v.errors) for _, v in fixed) > POINT_LIMIT:
            fixed, spread = [], parts
        out = []
        for choice in itertools.product(*(list(v.errors.items()) for _, v in fixed)):
            pinned = [(w, Points({x: e})) for (w, _), (x, e) in zip(fixed, choice)]
            terms = pinned + spread
            grid = _grid(terms, ZERO)
            out.append(_Dot(
                _linear([(scale, _linear(terms, ZERO))], ZERO),
                abs(float(scale)) * _sum_magnitude(terms, ZERO),
                abs(scale) * grid if grid is not None and is_exact(scale) else None,
                single,
                difference,
            ))
        return out

    def _group(self, ramps: Sequence[_Ramp], dots: Sequence[_Dot]) -> tuple[Value, bool]:
        """The value of a comparison's ReLUs, and whether they grow without bound (lone ReLUs)."""
        group = _Group(ramps, self.notes)
        return _union([value for dot in dots for value in group.values(dot)]), group.unbounded

    # --- sums ----------------------------------------------------------------------------------------
    def _parts(self, terms: Mapping[UnitKey, Number]) -> list[tuple[Number, Value]]:
        """The independent parts of a sum: its atom terms, and its ReLU terms of one scalar
        together, as the comparison they form."""
        groups: dict[frozenset, tuple[_Scalar, list[_Ramp]]] = {}
        parts: list[tuple[Number, Value]] = []
        for key, w in terms.items():
            scalar = self._scalar(key) if self.graph[key[0]].kind == "relu" else None
            if scalar is None:
                parts.append((w, self._unit(key)))
            else:
                groups.setdefault(scalar.key, (scalar, []))[1].append(scalar.ramp.read_by(w))
        lone = []
        for scalar, ramps in groups.values():
            value, grows = self._group(ramps, scalar.dots)
            parts.append((ONE, value))
            if grows:
                lone.append(ramps)
        self._check_cancellation(lone)
        return parts

    def _computed(self, terms: Mapping[UnitKey, Number], const: Number, origin: int) -> Value:
        """``sum terms + const`` as float32 computes it: its value, with its own rounding."""
        return self._rounded(self._parts(terms), const, origin)

    def _rounded(self, parts: list[tuple[Number, Value]], const: Number, origin: int) -> Value:
        """The sum of ``parts`` and its rounding, measured at the magnitude of what it adds: a
        comparison's ReLUs are added as the comparison's value (a step pair's difference is
        exact, the two numbers being within a factor of two of each other)."""
        value = _linear(parts, const)
        magnitude = _sum_magnitude(parts, const)
        if all(_float32_holds(w) for w, _ in parts) and _exact_below(_grid(parts, const), magnitude):
            return value
        return _with_errors(value, self._rounding(origin, magnitude))

    def _rounding(self, origin: int, magnitude: float) -> dict[int, float]:
        """One rounding of a result of at most ``magnitude``, noted for the warning's text; an
        unbounded magnitude is not checked (module docstring)."""
        if magnitude == 0 or magnitude == INF:
            return {}
        amount = UNIT_ROUNDOFF * magnitude
        self.notes[origin] = max(self.notes.get(origin, 0.0), amount)
        return {origin: amount}

    def _check_cancellation(self, groups: Sequence[list[_Ramp]]) -> None:
        """Lone ReLUs of different scalars that share a large term which can be positive, added
        with opposite signs, subtract two large numbers: ``relu(big + t) - relu(big - t)`` loses
        t. (A step's ReLUs share their scalar; their difference is followed by ``_Group``.)"""
        sharing: dict[tuple[UnitKey, Number], list[tuple[int, _Ramp]]] = {}
        for g, ramps in enumerate(groups):
            for r in ramps:
                inner = self.forms[self.graph[r.key[0]].operands[0]].rows()[r.key[1]][0]
                for k, w in inner.items():
                    if float(self.ranges[k[0]][k[1]].scaled(w).hi) * UNIT_ROUNDOFF > OUTPUT_RTOL:
                        sharing.setdefault((k, w), []).append((g, r))
        for (k, w), readers in sharing.items():
            if len({g for g, _ in readers}) < 2 or len({r.c > 0 for _, r in readers}) < 2:
                continue
            operand = self.ranges[k[0]][k[1]]
            largest = float(operand.scaled(w).hi)
            for _, r in readers:
                amount = UNIT_ROUNDOFF * largest * abs(float(r.c))
                self._rounding(r.key[0], largest)
                self._record(r.key[0], amount, _cancellation_text(w, operand, amount))

    # --- gates and states ------------------------------------------------------------------------------
    def _products(self, node: Node) -> list[Value]:
        rows = [self.forms[o].rows() for o in node.operands]
        out = []
        for i, box in enumerate(self.ranges[node.id]):
            x, y = (self._computed(terms, const, node.id) for terms, const in (rows[0][i], rows[1][i]))
            if isinstance(x, Points) and isinstance(y, Points) and len(x.errors) * len(y.errors) <= POINT_LIMIT:
                products = [self._product(a, ea, b, eb, node.id) for a, ea in x.errors.items() for b, eb in y.errors.items()]
                out.append(_union(products))
                continue
            sx, sy = _spread(x), _spread(y)
            lattice = sx.lattice.times(sy.lattice) if sx.lattice is not None and sy.lattice is not None else None
            errors = _combined((_magnitude(sx.interval), sy.errors), (_magnitude(sy.interval), sx.errors))
            if lattice is None or not _exact_below(lattice.grid, _magnitude(box)):
                errors = _combined((1, errors), (1, self._rounding(node.id, _magnitude(box))))
            out.append(Spread(box, lattice, errors))
        return out

    def _product(self, a: Number, ea: Errors, b: Number, eb: Errors, origin: int) -> Points:
        product = mul(a, b)
        rounding = {} if _float32_holds(product) else self._rounding(origin, abs(float(product)))
        return Points({product: _combined((abs(float(a)), eb), (abs(float(b)), ea), (1, rounding))})

    def _state(self, node: Node) -> list[Value]:
        drive = weighted_sum(node.attrs["B"], [self.forms[o] for o in node.operands], node.attrs["bias"])
        drives = [self._computed(terms, const, node.id) for terms, const in drive.rows()]
        transition = node.attrs["A"].row_items()
        if all(isinstance(d, Points) for d in drives):
            cycle = self._state_cycle(node, transition, drives)
            if cycle is not None:
                return cycle
        return self._state_spread(node, transition, drives)

    def _state_cycle(self, node: Node, transition: list, drives: list[Value]) -> list[Value] | None:
        """The states' design points over all steps, if following them from ``init`` reaches a
        state seen before (one-hot counters, shift registers of conditions)."""
        current: list[Value] = [Points({v: {}}) for v in node.attrs["init"]]
        seen = {_frozen(current)}
        hull: list[Value] | None = None
        for _ in range(STATE_ITERATIONS):
            current = [
                self._rounded([(w, current[j]) for j, w in transition[i]] + [(ONE, drives[i])], ZERO, node.id)
                for i in range(node.dim)
            ]
            if not all(isinstance(v, Points) for v in current):
                return None
            hull = current if hull is None else [_union([a, b]) for a, b in zip(hull, current)]
            frozen = _frozen(current)  # type: ignore[arg-type]  # all design points here
            if frozen in seen:
                return hull
            seen.add(frozen)
        return None

    def _state_spread(self, node: Node, transition: list, drives: list[Value]) -> list[Value]:
        """Per unit: the range analysis' interval, the lattice an integer transition keeps, and
        the error that the drives and (on a lattice) the additions pile up over NOMINAL_LENGTH
        steps. Off a lattice an addition's rounding is float32's ordinary relative drift, which
        the analysis does not follow."""
        box = self.ranges[node.id]
        grid: Number | None = None  # with an integer transition, every unit is an integer
        # combination of the initial values and the drives: a multiple of their common grid
        if all(is_exact(w) and w.denominator == 1 for row in transition for _, w in row):
            grid = ZERO
            for value in [*node.attrs["init"], *(_grid([(ONE, d)], ZERO) for d in drives)]:
                grid = _gcd(grid, value) if grid is not None and value is not None and is_exact(value) else None
        lattice = Lattice(grid, ZERO) if grid is not None else None
        origins = sorted({o for d in drives for o in _errors(d)} | {node.id})
        added = np.zeros((len(origins), node.dim))  # the error each step adds, per origin
        for i, d in enumerate(drives):
            for o, amount in _errors(d).items():
                added[origins.index(o), i] = amount
            if lattice is not None:
                magnitude = sum(abs(float(w)) * _magnitude(box[j]) for j, w in transition[i]) + _magnitude(_interval(d))
                if not _exact_below(grid, magnitude):
                    added[origins.index(node.id), i] += _total(self._rounding(node.id, magnitude))
        errors = added @ _geometric_sum(np.abs(node.attrs["A"].dense()), NOMINAL_LENGTH).T
        return [
            _enumerated(Spread(box[i], lattice, {o: float(errors[k, i]) for k, o in enumerate(origins) if errors[k, i]}))
            for i in range(node.dim)
        ]

    # --- outputs and findings ------------------------------------------------------------------------
    def check_outputs(self) -> None:
        for output in self.graph.outputs:
            name = output.name or "out"
            rows = self.forms[output.node].rows()
            for i, (terms, const) in enumerate(rows):
                value = self._computed(terms, const, output.node)
                where = f"output '{name}[{i}]'" if len(rows) > 1 else f"output '{name}'"
                pieces = value.errors.items() if isinstance(value, Points) else [(_magnitude(value.interval), value.errors)]
                for v, errors in pieces:
                    allowed = OUTPUT_RTOL * max(1.0, abs(float(v)))
                    if _total(errors) > allowed:
                        self._blame(errors, allowed, where)

    def _blame(self, errors: Errors, allowed: float, where: str) -> None:
        """Record the origins that make up an error beyond ``allowed``, largest first."""
        remaining = _total(errors)
        for origin, amount in sorted(errors.items(), key=lambda item: -item[1]):
            if remaining <= allowed:
                break
            self._record(origin, amount, f"that rounding grows into an error of up to {amount:.3g} at {where}")
            remaining -= amount

    def _record(self, origin: int, amount: float, consequence: str) -> None:
        known = self.findings.get(origin)
        if known is None or amount > known.amount:
            self.findings[origin] = _Finding(amount, consequence)

    def warnings(self) -> list[CompileWarning]:
        out: list[CompileWarning] = []
        places: set[object] = set()
        for origin, finding in sorted(self.findings.items(), key=lambda item: -item[1].amount):
            node = self.graph[origin]
            place = node.loc if node.loc is not None else node.name
            if place not in places:
                places.add(place)
                out.append(CompileWarning(self._message(node, finding), node.loc, dtype="float32"))
        return out

    def _message(self, node: Node, finding: _Finding) -> str:
        magnitude = self.notes.get(node.id, 0.0) / UNIT_ROUNDOFF
        weight = self._largest_weight(node)
        what = {"relu": "the ReLU input", "state": "the state", "mul": "the product"}.get(node.kind, "the sum")
        large = f" (it holds the weight {weight:.3g})" if weight >= 2**SIGNIFICANT_BITS else ""
        advice = "use --dtype float64"
        if node.name.split("/")[0] in CONDITIONALS:
            advice += ", or a smaller big"
        elif large:
            advice += ", or smaller scales for the nested comparisons, whose scales multiply into this weight"
        return (
            f"float32 is not precise enough for {what} '{node.name or f'%{node.id}'}': it reaches {magnitude:.3g}{large}, "
            f"where float32's numbers are {_spacing(magnitude):.3g} apart, and {finding.consequence}; {advice}"
        )

    def _largest_weight(self, node: Node) -> float:
        """The largest weight of what ``node`` computes, in the canonical graph."""
        operands = [self.forms[o] for o in node.operands]
        if node.kind == "state":
            operands = [weighted_sum(node.attrs["B"], operands, node.attrs["bias"])]
        elif node.id in self.forms.definitions:
            operands = [self.forms.definitions[node.id]]
        elif node.kind not in ("relu", "mul"):
            operands = [self.forms[node.id]]
        return max((abs(float(w)) for form in operands for terms, _ in form.rows() for w in terms.values()), default=0.0)


def _geometric_sum(matrix: np.ndarray, steps: int) -> np.ndarray:
    """``sum_{t < steps} matrix**t``, by doubling: how errors added at every step pile up through
    a transition (|A|) over ``steps`` steps. Entries that overflow (growing states) are inf."""
    total, power = np.zeros_like(matrix), np.eye(len(matrix))
    with np.errstate(over="ignore", invalid="ignore"):
        for bit in bin(steps)[2:]:
            total, power = total + power @ total, power @ power
            if bit == "1":
                total, power = np.eye(len(matrix)) + matrix @ total, matrix @ power
    return np.nan_to_num(total, nan=np.inf)


def _frozen(values: Sequence[Points]) -> tuple:
    """Design points as a hashable key, to recognize a state seen before."""
    return tuple(tuple(sorted((v, tuple(sorted(e.items()))) for v, e in value.errors.items())) for value in values)


def _spacing(magnitude: float) -> float:
    return float(np.spacing(np.float32(min(magnitude, 3e38))))


def _cancellation_text(weight: Number, operand: Interval, amount: float) -> str:
    return (
        f"{float(weight):.3g} times a value in [{float(operand.lo):.3g}, {float(operand.hi):.3g}] can be positive, so "
        f"this ReLU passes numbers that large and another one's are subtracted from them (ifelse's "
        f"t + big - big), which loses up to {amount:.3g} of t: a condition must stay in [0, 1]"
    )


def _nominal(graph: Graph, input_range: object) -> list[tuple[object, object]]:
    """The input range for the analysis: the given one, unbounded sides replaced by NOMINAL_INPUT."""
    if input_range is None:
        pairs: list = [(None, None)] * graph.input.dim
    else:
        pairs = list(input_range)  # type: ignore[call-overload]
        if len(pairs) == 2 and not isinstance(pairs[0], (list, tuple)):
            pairs = [tuple(pairs)] * graph.input.dim
    low, high = NOMINAL_INPUT
    return [(low if lo is None else lo, high if hi is None else hi) for lo, hi in pairs]


def float32_warnings(graph: Graph, input_range: object = None, integer_inputs: bool = False) -> list[CompileWarning]:
    """Where float32 cannot compute ``graph`` to OUTPUT_RTOL: one warning per source location,
    worst first, each saying what is too large, why float32 fails there and what to do.

    ``input_range`` and ``integer_inputs`` are what the user stated about the inputs (as in
    ``backends.Options``); an input without a range is assumed to lie in NOMINAL_INPUT.
    """
    analysis = _Analysis(graph, input_range, integer_inputs)
    analysis.check_outputs()
    return analysis.warnings()
