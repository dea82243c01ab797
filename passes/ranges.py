"""Range analysis: an interval holding every value each unit of each node takes, at every step.

Linearize uses the bounds to carry a value through a ReLU layer in one unit instead of two when its
sign is known; the architecture targets use them to pick saturation constants and to decide
whether a gate can be rebuilt from ReLUs. Bounds are exact rationals where the weights are exact
(floats where a weight is), ``-inf``/``inf`` where a side is unbounded.

Beside its interval, each unit has a lattice (``Ranges.lattice``, ``passes.lattice``): an
arithmetic progression ``offset + step Z`` holding all its values, or None. The input lies on the
integers when the caller says so (``integer_inputs``); constants on their own point; a linear
combination, a ReLU and a product follow from their operands; a ``step`` whose operand has no
lattice point strictly inside its ramp takes only the values 0 and 1, and a ``select`` whose
condition has no nonzero point where ``big * |c|`` is below the value's magnitude is the value, 0,
or twice the value. A state's lattices are the fixed point of joining each step's lattice into the
last, from ``init``. An integer unit (``Ranges.integer``) whose interval lies in [0, 1] is a 0/1
condition, which is what rebuilding a gate needs.

The input is unbounded unless a range is given, for every unit or unit by unit. Every rule is
sound: each value the program computes on inputs inside the range lies in its interval.

Stateless nodes follow interval arithmetic (weights exact, so a bound is the exact extreme of
each affine row over a box; correlations between units are not tracked). A state
``s_t = A s_{t-1} + d_t`` (``d_t`` the bounded drive ``sum B_i u_i + bias``) is bounded for the
steps t >= 1 (``init`` itself is never an output):

- by iterating the interval recurrence ``S_t = A S_{t-1} + D`` from ``S_0 = init`` until it
  repeats an earlier interval or reaches ``max_len`` steps, taking the hull over the steps; this
  bounds zero and nilpotent transitions (delays, shift registers) after n steps, permutations
  driven by constants (modulo counters) after one period, and anything at all over a given
  ``max_len`` (at most :data:`ITERATION_LIMIT` steps);
- otherwise unit by unit: a unit that only adds its drive to itself (row ``i`` of ``A`` is the
  unit vector ``e_i``: counters, accumulators) is bounded on the side(s) where the increments
  cannot push it, or on both sides over ``max_len`` steps; a unit with a zero row of ``A`` takes
  its drive's bounds; every other unit is unbounded (rotations and contractions whose intervals
  do not settle, growth, and units that read such units).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import numpy as np
from lsrl.ir import pointwise
from lsrl.ir.errors import LsrlError
from lsrl.ir.graph import FLOAT_FUNCTIONS, Graph, Node, input_tokens
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import ONE, ZERO, Number, add, inverse, is_exact, mul, number
from lsrl.passes import lattice as lat
from lsrl.passes.lattice import Lattice
from lsrl.passes.linear_forms import LinearForms, is_linear, weighted_sum

INF = float("inf")

# The most steps of a state's interval recurrence that the analysis iterates.
ITERATION_LIMIT = 512
# The most rounds of joining a state's lattices before the units still changing are given up on.
LATTICE_ROUNDS = 64

Lattices = tuple[Lattice | None, ...]


@dataclass(frozen=True)
class Interval:
    """``[lo, hi]``; ``lo`` may be ``-inf`` and ``hi`` ``inf``."""

    lo: Number
    hi: Number

    @classmethod
    def point(cls, value: Number) -> "Interval":
        return cls(value, value)

    @classmethod
    def unbounded(cls) -> "Interval":
        return cls(-INF, INF)

    @property
    def nonnegative(self) -> bool:
        return self.lo >= 0

    @property
    def nonpositive(self) -> bool:
        return self.hi <= 0

    def __add__(self, other: "Interval") -> "Interval":
        return Interval(add(self.lo, other.lo), add(self.hi, other.hi))

    def scaled(self, factor: Number) -> "Interval":
        if factor == 0:
            return Interval.point(ZERO)
        ends = (_times(factor, self.lo), _times(factor, self.hi))
        return Interval(min(ends), max(ends))

    def __mul__(self, other: "Interval") -> "Interval":
        ends = [_times(a, b) for a in (self.lo, self.hi) for b in (other.lo, other.hi)]
        return Interval(min(ends), max(ends))

    def relu(self) -> "Interval":
        return Interval(max(self.lo, ZERO), max(self.hi, ZERO))

    def hull(self, other: "Interval") -> "Interval":
        return Interval(min(self.lo, other.lo), max(self.hi, other.hi))

    def __str__(self) -> str:
        return f"[{self.lo}, {self.hi}]"


Box = tuple[Interval, ...]


def _times(a: Number, b: Number) -> Number:
    """A product of bounds where 0 * inf = 0 (an interval never attains its infinite end)."""
    if a == 0 or b == 0:
        return ZERO
    return mul(a, b)


def weighted_box(weights: Sequence[Matrix], boxes: Sequence[Box], bias: Sequence[Number]) -> Box:
    """Bounds of ``sum_i W_i x_i + bias`` for x_i in the boxes: the exact extremes of each row."""
    total = [Interval.point(b) for b in bias]
    for weight, box in zip(weights, boxes):
        for i, row in enumerate(weight.row_items()):
            for j, w in row:
                total[i] = total[i] + box[j].scaled(w)
    return tuple(total)


def _input_box(node: Node, input_range: object) -> Box:
    if input_range is None:
        return (Interval.unbounded(),) * node.dim
    pairs = list(input_range)  # type: ignore[call-overload]
    if len(pairs) == 2 and not isinstance(pairs[0], (list, tuple)):
        pairs = [pairs] * node.dim
    if len(pairs) != node.dim:
        raise ValueError(f"the input has {node.dim} units but the range gives {len(pairs)}")
    box = []
    for lo, hi in pairs:
        lo, hi = (-INF if lo is None else number(lo)), (INF if hi is None else number(hi))
        if lo > hi:
            raise ValueError(f"empty input range [{lo}, {hi}]")
        box.append(Interval(lo, hi))
    return tuple(box)


def declared_promises(graph: Graph, input_range: object = None, integer_inputs: bool = False) -> tuple[object, bool]:
    """The input range and integer promise the analysis may assume: the caller's (``input_range``
    as :func:`analyze` takes it), narrowed by the tokens the program's input declares (``in
    LO..HI``: integers in LO..HI-1). Raises ``LsrlError`` at the input where nothing is left."""
    tokens = input_tokens(graph.input)
    if tokens is None:
        return input_range, integer_inputs
    low, high = number(tokens[0]), number(tokens[1] - 1)
    narrowed = [(max(i.lo, low), min(i.hi, high)) for i in _input_box(graph.input, input_range)]
    if any(lo > hi for lo, hi in narrowed):
        raise LsrlError(f"the input range {_shown(input_range)} holds none of the input's tokens {tokens[0]}..{tokens[1]}",
                        graph.input.loc, node=graph.input.id)
    return (narrowed[0] if len(set(narrowed)) == 1 else narrowed), True


def _shown(input_range: object) -> str:
    pairs = list(input_range)  # type: ignore[call-overload]
    return f"[{pairs[0]}, {pairs[1]}]" if len(pairs) == 2 and not isinstance(pairs[0], (list, tuple)) else str(pairs)


def _state_lattices(transition: Matrix, drive: Lattices, init: Sequence[Number]) -> Lattices:
    """Lattices holding every value of ``s_t = A s_{t-1} + d_t`` (d_t on ``drive``) from init:
    the fixed point of joining each step's lattice into the last. Joining only coarsens, and a
    unit still changing after LATTICE_ROUNDS rounds is given up on (None), which settles."""
    current = [Lattice.point(v) for v in init]
    rows = transition.row_items()
    for round_ in range(LATTICE_ROUNDS + len(init) + 1):
        following = [
            lat.join(current[i], lat.combination([(w, current[k]) for k, w in row] + [(ONE, drive[i])], ZERO))
            for i, row in enumerate(rows)
        ]
        if following == current:
            return tuple(current)
        if round_ >= LATTICE_ROUNDS:
            following = [None if f != c else f for f, c in zip(following, current)]
        current = following
    return tuple(None for _ in init)


def _iterate_state(transition: Matrix, drive: Box, init: Sequence[Number], max_len: int | None) -> Box | None:
    """The hull over t >= 1 of S_t = A S_{t-1} + D, if S_t repeats or max_len ends within the limit."""
    complete = max_len is not None and max_len <= ITERATION_LIMIT
    current: Box = tuple(Interval.point(v) for v in init)
    seen: set[Box] = {current}
    hull: Box | None = None
    for _ in range(max_len if complete else ITERATION_LIMIT):
        current = weighted_box([transition], [current], (ZERO,) * len(init))
        current = tuple(a + b for a, b in zip(current, drive))
        hull = current if hull is None else tuple(a.hull(b) for a, b in zip(hull, current))
        if current in seen:
            return hull
        seen.add(current)
    return hull if complete else None


def _accumulator(start: Number, step: Interval, max_len: int | None) -> Interval:
    """Bounds over t >= 1 of start + (sum of t increments, each in ``step``), t <= max_len if given."""
    if max_len is not None:
        lowest, highest = min(step.lo, _times(max_len, step.lo)), max(step.hi, _times(max_len, step.hi))
        return Interval(add(start, lowest), add(start, highest))
    lo = add(start, step.lo) if step.lo >= 0 else -INF
    hi = add(start, step.hi) if step.hi <= 0 else INF
    return Interval(lo, hi)


def _state_box(node: Node, drive: Box, max_len: int | None) -> Box:
    transition, init = node.attrs["A"], node.attrs["init"]
    settled = _iterate_state(transition, drive, init, max_len)
    if settled is not None:
        return settled
    norm = _norm_bound(transition, drive, init, max_len)
    box = []
    for i, row in enumerate(transition.row_items()):
        if not row:
            box.append(drive[i])
        elif row == [(i, 1)]:
            box.append(_accumulator(init[i], drive[i], max_len))
        else:
            box.append(Interval(-norm, norm))
    return tuple(box)


def _norm_bound(transition: Matrix, drive: Box, init: Sequence[Number], max_len: int | None) -> Number:
    """A bound on every unit by the transition's largest absolute row sum rho:
    ``|h_t| <= rho |h_{t-1}| + |d|`` in the largest unit, so ``|h| <= max(|init|, |d| / (1 - rho))``
    where rho < 1 (a contraction, e.g. a moving average), ``|init| + max_len |d|`` where rho = 1
    and max_len is given; inf otherwise."""
    rho = max((sum((abs(w) for _, w in row), ZERO) for row in transition.row_items()), default=ZERO)
    start = max((abs(v) for v in init), default=ZERO)
    size = max((max(abs(i.lo), abs(i.hi)) for i in drive), default=ZERO)
    if rho < 1:
        return max(start, mul(size, inverse(add(ONE, -rho))))
    if rho == 1 and max_len is not None:
        return add(start, _times(max_len, size))
    return INF


def _step_interval(x: Interval, low: Number, high: Number) -> Interval:
    """A step is monotone: its bounds are its values at the operand's bounds."""

    def at(v: Number) -> Number:
        if v <= low:
            return ZERO
        if v >= high:
            return ONE
        return mul(add(v, -low), inverse(add(high, -low)))

    return Interval(at(x.lo), at(x.hi))


SILU_MINIMUM = (-1.2784645427610738, -0.2784645427610738)  # where x sigmoid(x) is least, and its value
OUTWARD = 1e-12  # float bounds widen by this relative amount, for the rounding of their own computation


def float_function_interval(name: str, x: Interval) -> Interval:
    """Bounds of a float function over ``x`` (each is monotone, but silu, which has one minimum);
    values outside a function's domain (log and sqrt of negatives) give an unbounded side."""
    lo, hi = float(x.lo), float(x.hi)
    if name in ("log", "sqrt", "rsqrt") and lo < 0:  # outside the domain: the program's values are nan
        lo = 0.0
    value = pointwise.FLOAT_FUNCTION_VALUES[name]
    with np.errstate(all="ignore"):
        ends = sorted(float(value(np.float64(v))) for v in (lo, hi))
    low, high = ends
    if name == "silu" and lo <= SILU_MINIMUM[0] <= hi:
        low = SILU_MINIMUM[1]
    if math.isnan(low) or math.isnan(high):
        return Interval.unbounded()
    return Interval(low - abs(low) * OUTWARD, high + abs(high) * OUTWARD)


def _select_interval(condition: Interval, value: Interval) -> Interval:
    """relu(v - big c) - relu(-v - big c) lies between 0 and v where c >= 0, and between 0 and
    2 v otherwise (it is ``v - clamp(big c, -|v|, |v|) sign(v)``)."""
    reach = value if condition.lo >= 0 else value.scaled(2).hull(value)
    return reach.hull(Interval.point(ZERO))


def step_lattice(operand: Lattice | None, x: Interval, low: Number, high: Number) -> Lattice | None:
    """{0, 1} where no point of the operand's lattice inside its interval lies on the ramp."""
    if operand is None:
        return None
    if operand.step == 0:
        return Lattice.point(_step_interval(Interval.point(operand.offset), low, high).lo)
    if lat.first_on_ramp(operand, x.lo, x.hi, low, high) is not None:
        return None
    return Lattice.of(0, 1)


def select_needs(condition: Lattice | None, c: Interval, value: Interval) -> tuple[Number, bool] | None:
    """``(m, negative)``: the smallest magnitude m of the condition's nonzero points and whether a
    negative one is reachable, where the value is bounded (``big * m >= |v|`` then makes the select
    exactly v or 0 or 2v); ``(inf, False)`` where the condition is always 0; None where unknown."""
    if condition is None or value.lo == -INF or value.hi == INF:
        return None
    positive, negative = lat.nearest_nonzero(condition, c.lo, c.hi)
    magnitudes = [abs(p) for p in (positive, negative) if p is not None]
    return (min(magnitudes) if magnitudes else INF), negative is not None


def select_lattice(
    condition: Lattice | None, c: Interval, value_lattice: Lattice | None, value: Interval, big: Number
) -> Lattice | None:
    needs = select_needs(condition, c, value)
    if needs is None:
        return None
    smallest, negative = needs
    if smallest == INF:
        return value_lattice
    if mul(big, smallest) < max(abs(value.lo), abs(value.hi)):
        return None
    doubled = value_lattice.scaled(2) if negative and value_lattice is not None else value_lattice
    return lat.join(value_lattice, doubled, Lattice.point(ZERO))


def gated_interval(a: Interval, b: Interval, init: Number, max_len: int | None) -> Interval:
    """Bounds over t >= 1 of h_t = a_t h_{t-1} + b_t from init: the interval recurrence until it
    repeats or ends at max_len; otherwise, where |a| <= 1, ``|h_t| <= |init| + t max|b|`` over
    max_len steps, or ``max|b| / (1 - max|a|)`` where |a| stays below 1."""
    current, hull = Interval.point(init), None
    steps = max_len if max_len is not None and max_len <= ITERATION_LIMIT else ITERATION_LIMIT
    for _ in range(steps):
        following = current * a + b
        hull = following if hull is None else hull.hull(following)
        if following == current:
            return hull
        current = following
    if max_len is not None and max_len <= ITERATION_LIMIT:
        return hull
    gain = max(abs(a.lo), abs(a.hi))
    size = max(abs(b.lo), abs(b.hi))
    if gain < 1:
        reach = add(max(abs(init), mul(size, inverse(add(ONE, -gain)))), ZERO)
    elif gain == 1 and max_len is not None:
        reach = add(abs(init), _times(max_len, size))
    else:
        return Interval.unbounded()
    return hull.hull(Interval(-reach, reach))


def _matrix_entries(decay: Sequence, key: Sequence, value: Sequence) -> list[tuple]:
    """Per entry (i, j) of a matrix state, row by row: (what of d_i, of k_i, of v_j)."""
    return [(decay[0] if len(decay) == 1 else decay[i], key[i], value[j]) for i in range(len(key)) for j in range(len(value))]


def _read_terms(state: Sequence, query: Sequence) -> list[list[tuple]]:
    """Per unit j of a read ``sum_i q_i S[i, j]``: the pairs (what of q_i, of S[i, j])."""
    width = len(state) // len(query)
    return [[(query[i], state[i * width + j]) for i in range(len(query))] for j in range(width)]


def _sum_intervals(intervals) -> Interval:
    total = Interval.point(ZERO)
    for interval in intervals:
        total = total + interval
    return total


def gated_lattice(a: Lattice | None, b: Lattice | None, init: Number) -> Lattice | None:
    """The fixed point of joining a_t h + b_t into h's lattice, from init (None if it does not settle)."""
    current = Lattice.point(init)
    for _ in range(LATTICE_ROUNDS):
        following = lat.join(current, lat.combination([(ONE, lat.product(a, current)), (ONE, b)], ZERO))
        if following == current:
            return current
        current = following
    return None


def _ramp_extremes(const: Number, ramps: list[tuple[Number, Number, Number]], z: Interval) -> Interval:
    """Bounds of ``const + sum c * relu(a * z + b)`` over ``z``, for (c, a, b) in ``ramps``.

    The function is piecewise linear in z: its extremes lie at the breakpoints -b/a inside the
    interval or at the interval's ends; beyond the breakpoints the slope decides whether an
    infinite end is approached.
    """

    def value(at: Number) -> Number:
        total = const
        for c, a, b in ramps:
            total = add(total, mul(c, max(add(mul(a, at), b), ZERO)))
        return total

    breakpoints = [mul(-b, inverse(a)) for _, a, b in ramps]
    points = [p for p in breakpoints if z.lo <= p <= z.hi] + [e for e in (z.lo, z.hi) if e not in (-INF, INF)]
    values = [value(p) for p in points]
    lo, hi = min(values), max(values)
    for end, active in ((z.hi, lambda a: a > 0), (z.lo, lambda a: a < 0)):
        if end not in (-INF, INF):
            continue
        slope = ZERO
        for c, a, _ in ramps:
            if active(a):
                slope = add(slope, mul(c, a))
        if slope != 0:
            towards_inf = slope > 0 if end == INF else slope < 0
            lo, hi = (lo, INF) if towards_inf else (-INF, hi)
    return Interval(lo, hi)


def _ramps_lattice(ramps: list[tuple[Number, Number, Number]], z: Interval, z_lattice: Lattice | None) -> Lattice | None:
    """The lattice of ``sum c * relu(a z + b)`` over the points of ``z_lattice`` within ``z``.

    The sum is affine between consecutive breakpoints ``-b/a``: on a piece holding one point its
    values are that point's value, on a piece holding more they lie on the image of the lattice
    (an affine map of it, fixed by two neighbouring points).
    """
    if z_lattice is None or not all(is_exact(v) for ramp in ramps for v in ramp):
        return None
    if z_lattice.step == 0:
        return Lattice.point(_ramps_value(ramps, z_lattice.offset))
    step = z_lattice.step
    breakpoints = sorted({mul(-b, inverse(a)) for _, a, b in ramps})
    edges = [z.lo, *(p for p in breakpoints if z.lo < p < z.hi), z.hi]
    parts: list[Lattice | None] = []
    for lo, hi in zip(edges, edges[1:]):
        if lo != -INF:
            first = z_lattice.ceil(lo)
        elif hi != INF:
            first = z_lattice.floor(hi) - step  # a piece unbounded below holds a point and the next
        else:
            first = z_lattice.offset
        if first > hi:
            continue
        value = _ramps_value(ramps, first)
        if first + step <= hi:
            parts.append(Lattice.of(value, add(_ramps_value(ramps, first + step), -value)))
        else:
            parts.append(Lattice.point(value))
    return lat.join(*parts) if parts else None


def _ramps_value(ramps: list[tuple[Number, Number, Number]], z: Number) -> Number:
    total = ZERO
    for c, a, b in ramps:
        total = add(total, mul(c, max(add(mul(a, z), b), ZERO)))
    return total


class Ranges(Mapping[int, Box]):
    """The bounds of every node's units (``ranges[node_id]``) and of any affine combination of
    atom units (``ranges.combination``), and which units are integers (``ranges.integer``)."""

    def __init__(
        self, graph: Graph, input_range: object = None, max_len: int | None = None, integer_inputs: bool = False
    ):
        self.graph = graph
        self.forms = LinearForms(graph)
        self._boxes: dict[int, Box] = {}
        self._combinations: dict[frozenset, Interval] = {}
        self._lattices: dict[int, Lattices] = {}
        for node in graph.topological_order():
            self._boxes[node.id] = self._node_box(node, input_range, max_len)
            self._lattices[node.id] = self._node_lattices(node, integer_inputs)

    def __getitem__(self, node_id: int) -> Box:
        return self._boxes[node_id]

    def __iter__(self) -> Iterator[int]:
        return iter(self._boxes)

    def __len__(self) -> int:
        return len(self._boxes)

    def _node_box(self, node: Node, input_range: object, max_len: int | None) -> Box:
        operands = [self._boxes[o] for o in node.operands]
        kind = node.kind
        if kind == "input":
            return _input_box(node, input_range)
        if is_linear(node):
            return tuple(self.combination(terms, const) for terms, const in self.forms.definition(node.id).rows())
        if kind == "relu":
            return tuple(i.relu() for i in operands[0])
        if kind == "mul":
            return tuple(a * b for a, b in zip(*operands))
        if kind == "step":
            return tuple(_step_interval(x, lo, hi) for x, lo, hi in zip(operands[0], node.attrs["low"], node.attrs["high"]))
        if kind in FLOAT_FUNCTIONS:
            return tuple(float_function_interval(kind, x) for x in operands[0])
        if kind == "select":
            return tuple(_select_interval(c, v) for c, v in zip(*operands))
        if kind == "state":
            drive = weighted_sum(node.attrs["B"], [self.forms[o] for o in node.operands], node.attrs["bias"])
            return _state_box(node, tuple(self.combination(t, c) for t, c in drive.rows()), max_len)
        if kind == "gated_state":
            return tuple(gated_interval(a, b, h0, max_len) for a, b, h0 in zip(*operands, node.attrs["init"]))
        if kind == "matrix_state":  # entry (i, j): gated by d_i, driven by k_i v_j
            return tuple(gated_interval(d, k * v, ZERO, max_len) for d, k, v in _matrix_entries(*operands))
        if kind == "read":  # sum_i q_i S[i, j]
            return tuple(_sum_intervals(q * e for q, e in row) for row in _read_terms(*operands))
        if kind in ("delta_state", "solve"):  # (not bounded: a transition or inverse of runtime values)
            return (Interval.unbounded(),) * node.dim
        raise ValueError(f"range analysis has no rule for node kind {kind!r}")

    def lattice(self, node_id: int) -> Lattices:
        """Per unit of the node: a lattice holding all its values, or None."""
        return self._lattices[node_id]

    def integer(self, node_id: int) -> tuple[bool, ...]:
        """Per unit of the node: whether it takes only integer values."""
        return tuple(lattice is not None and lattice.is_integer for lattice in self._lattices[node_id])

    def is_condition(self, node_id: int, unit: int) -> bool:
        """Whether the unit takes only the values 0 and 1."""
        interval = self._boxes[node_id][unit]
        return self.integer(node_id)[unit] and interval.lo >= 0 and interval.hi <= 1

    def combination_lattice(self, terms: Mapping[tuple[int, int], Number], const: Number = ZERO) -> Lattice | None:
        """The lattice of ``sum terms[(atom, j)] * atom[j] + const``, with the ReLU terms grouped
        as in :meth:`combination`: a group is evaluated at the points of its scalar's lattice, so
        that ``relu(2z - 1/2) - relu(2z - 3/2)`` of an integer z is known to be an integer."""
        plain, groups = self._grouped(terms)
        parts = [lat.combination(((c, self._lattices[atom][j]) for c, (atom, j) in plain), const)]
        for scalar, (z, ramps) in groups.items():
            z_lattice = lat.combination(((w, self._lattices[atom][j]) for (atom, j), w in scalar), ZERO)
            parts.append(_ramps_lattice(ramps, z, z_lattice))
        return lat.combination(((ONE, part) for part in parts), ZERO)

    def _node_lattices(self, node: Node, integer_inputs: bool) -> Lattices:
        kind, attrs = node.kind, node.attrs
        operands = [self._lattices[o] for o in node.operands]
        if kind == "input":
            return (Lattice.of(0, 1) if integer_inputs else None,) * node.dim
        if is_linear(node):
            return tuple(self.combination_lattice(t, c) for t, c in self.forms.definition(node.id).rows())
        if kind == "relu":
            return tuple(lat.relu(a) for a in operands[0])
        if kind == "mul":
            return tuple(lat.product(a, b) for a, b in zip(*operands))
        if kind in FLOAT_FUNCTIONS:
            return (None,) * node.dim
        if kind == "step":
            box = self._boxes[node.operands[0]]
            return tuple(
                step_lattice(a, x, lo, hi) for a, x, lo, hi in zip(operands[0], box, attrs["low"], attrs["high"])
            )
        if kind == "select":
            conditions, values = (self._boxes[o] for o in node.operands)
            return tuple(
                select_lattice(*args) for args in zip(operands[0], conditions, operands[1], values, attrs["big"])
            )
        if kind == "state":
            drive = weighted_sum(attrs["B"], [self.forms[o] for o in node.operands], attrs["bias"])
            return _state_lattices(attrs["A"], tuple(self.combination_lattice(t, c) for t, c in drive.rows()), attrs["init"])
        if kind == "gated_state":
            return tuple(gated_lattice(a, b, h0) for a, b, h0 in zip(*operands, attrs["init"]))
        if kind == "matrix_state":
            return tuple(gated_lattice(d, lat.product(k, v), ZERO) for d, k, v in _matrix_entries(*operands))
        if kind == "read":
            return tuple(lat.combination(((ONE, lat.product(q, e)) for q, e in row), ZERO) for row in _read_terms(*operands))
        if kind in ("delta_state", "solve"):
            return (None,) * node.dim
        raise ValueError(f"range analysis has no rule for node kind {kind!r}")

    def combination(self, terms: Mapping[tuple[int, int], Number], const: Number = ZERO) -> Interval:
        """Bounds of ``sum terms[(atom, j)] * atom[j] + const``.

        Interval arithmetic, except that the ReLU terms are grouped by the scalar they are ReLUs
        of (up to scale and offset): each group, as in ``step``, ``bump`` and the comparisons
        built from them, is a piecewise linear function of one variable, bounded exactly.
        """
        key = frozenset(terms.items()) | {("const", const)}
        if key not in self._combinations:
            plain, groups = self._grouped(terms)
            box = Interval.point(const)
            for c, (atom, j) in plain:
                box = box + self._boxes[atom][j].scaled(c)
            for z, ramps in groups.values():
                box = box + _ramp_extremes(ZERO, ramps, z)
            self._combinations[key] = box
        return self._combinations[key]

    def _grouped(self, terms: Mapping[tuple[int, int], Number]) -> tuple[list, dict[frozenset, tuple[Interval, list]]]:
        """``terms`` split into plain ``(weight, unit)`` terms and the ReLU terms grouped by the
        scalar z they are ReLUs of: ``{scalar: (bounds of z, [(weight, a, b) of relu(a z + b)])}``."""
        plain: list[tuple[Number, tuple[int, int]]] = []
        groups: dict[frozenset, tuple[Interval, list]] = {}
        for (atom, j), c in terms.items():
            ramps = self._ramps(atom, j)
            if ramps is None:
                plain.append((c, (atom, j)))
            else:
                scalar, z, parts = ramps
                groups.setdefault(scalar, (z, []))[1].extend((mul(c, k), a, b) for k, a, b in parts)
        return plain, groups

    def _ramps(self, atom: int, j: int) -> tuple[frozenset, Interval, list[tuple[Number, Number, Number]]] | None:
        """``(scalar, bounds of z, [(c, a, b), ...])`` where unit j of ``atom`` is
        ``sum c relu(a z + b)``, z the scalar's combination scaled to weigh its first atom unit by
        1: a ReLU is one ramp, a step ``relu((x - low)/w) - relu((x - high)/w)`` two."""
        node = self.graph[atom]
        if node.kind not in ("relu", "step"):
            return None
        operand = node.operands[0]
        inner, b = self.forms[operand].rows()[j]
        if not inner:
            return None
        a = inner[min(inner)]
        scalar = frozenset((k, mul(v, inverse(a))) for k, v in inner.items())
        z = (self._boxes[operand][j] + Interval.point(-b)).scaled(inverse(a))
        if node.kind == "relu":
            return scalar, z, [(ONE, a, b)]
        low, high = node.attrs["low"][j], node.attrs["high"][j]
        slope = inverse(add(high, -low))
        scaled = mul(a, slope)
        return scalar, z, [(ONE, scaled, mul(add(b, -low), slope)), (-ONE, scaled, mul(add(b, -high), slope))]


def analyze(
    graph: Graph, input_range: object = None, max_len: int | None = None, integer_inputs: bool = False
) -> Ranges:
    """Bounds of every node's units: ``ranges[node id]`` is a tuple of intervals.

    ``input_range``: None (unbounded), one ``(lo, hi)`` pair for every input unit, or a pair per
    unit; an end may be None (unbounded). ``max_len``: the longest sequence the bounds must hold
    for (None: any length). ``integer_inputs``: every input value is an integer.
    """
    return Ranges(graph, input_range, max_len, integer_inputs)
