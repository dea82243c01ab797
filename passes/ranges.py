"""Range analysis: an interval holding every value each unit of each node takes, at every step.

Linearize uses the bounds to carry a value through a ReLU layer in one unit instead of two when its
sign is known; the architecture targets use them to pick saturation constants and to decide
whether a gate can be rebuilt from ReLUs. Bounds are exact rationals where the weights are exact
(floats where a weight is), ``-inf``/``inf`` where a side is unbounded.

Beside its interval, each unit is known to be integer-valued or not (``Ranges.integer``): an integer
unit whose interval lies in [0, 1] is a 0/1 condition, which is what rebuilding a gate needs. The
input is integer when the caller says so (``integer_inputs``); constants when they are; a linear
combination when its weights and constant are integers and it combines integer units; a ReLU or a
product of integer units; a state unit when its initial value, bias and input weights are
integers, it is driven by integer units, and its transition row has integer weights on integer
units of the same state (the largest such set of units: by induction over the steps, each keeps
integer values). So ``step(x) = relu(s x) - relu(s x - 1)`` is a 0/1 condition wherever ``s x`` is
an integer.

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

from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

from lsrl.ir.graph import Graph, Node
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import ZERO, Number, add, inverse, is_exact, mul, number
from lsrl.passes.linear_forms import LinearForms, is_linear, weighted_sum

INF = float("inf")

# The most steps of a state's interval recurrence that the analysis iterates.
ITERATION_LIMIT = 512


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


def is_integer_number(value: Number) -> bool:
    return is_exact(value) and value.denominator == 1


def _integer_state_units(transition: Matrix, driven_integer: Sequence[bool]) -> tuple[bool, ...]:
    """The largest set of state units that are integers at every step: each starts from an integer
    drive (``driven_integer``: init, bias, input weights and inputs) and its transition row has
    integer weights on units of the set."""
    integer = list(driven_integer)
    rows = transition.row_items()
    changed = True
    while changed:
        changed = False
        for i, row in enumerate(rows):
            if integer[i] and not all(integer[k] and is_integer_number(w) for k, w in row):
                integer[i] = False
                changed = True
    return tuple(integer)


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
    box = []
    for i, row in enumerate(transition.row_items()):
        if not row:
            box.append(drive[i])
        elif row == [(i, 1)]:
            box.append(_accumulator(init[i], drive[i], max_len))
        else:
            box.append(Interval.unbounded())
    return tuple(box)


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
        self._integer: dict[int, tuple[bool, ...]] = {}
        for node in graph.topological_order():
            self._boxes[node.id] = self._node_box(node, input_range, max_len)
            self._integer[node.id] = self._node_integer(node, integer_inputs)

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
        if kind == "state":
            drive = weighted_sum(node.attrs["B"], [self.forms[o] for o in node.operands], node.attrs["bias"])
            return _state_box(node, tuple(self.combination(t, c) for t, c in drive.rows()), max_len)
        raise ValueError(f"range analysis has no rule for node kind {kind!r}")

    def integer(self, node_id: int) -> tuple[bool, ...]:
        """Per unit of the node: whether it takes only integer values."""
        return self._integer[node_id]

    def is_condition(self, node_id: int, unit: int) -> bool:
        """Whether the unit takes only the values 0 and 1."""
        interval = self._boxes[node_id][unit]
        return self._integer[node_id][unit] and interval.lo >= 0 and interval.hi <= 1

    def combination_is_integer(self, terms: Mapping[tuple[int, int], Number], const: Number = ZERO) -> bool:
        """Whether ``sum terms[(atom, j)] * atom[j] + const`` takes only integer values."""
        return is_integer_number(const) and all(
            is_integer_number(w) and self._integer[atom][j] for (atom, j), w in terms.items()
        )

    def _node_integer(self, node: Node, integer_inputs: bool) -> tuple[bool, ...]:
        kind = node.kind
        if kind == "input":
            return (integer_inputs,) * node.dim
        if is_linear(node):
            return tuple(self.combination_is_integer(t, c) for t, c in self.forms.definition(node.id).rows())
        if kind == "relu":
            return self._integer[node.operands[0]]
        if kind == "mul":
            return tuple(a and b for a, b in zip(*(self._integer[o] for o in node.operands)))
        if kind == "state":
            drive = weighted_sum(node.attrs["B"], [self.forms[o] for o in node.operands], node.attrs["bias"])
            driven = [
                is_integer_number(init) and self.combination_is_integer(terms, const)
                for init, (terms, const) in zip(node.attrs["init"], drive.rows())
            ]
            return _integer_state_units(node.attrs["A"], driven)
        raise ValueError(f"range analysis has no rule for node kind {kind!r}")

    def combination(self, terms: Mapping[tuple[int, int], Number], const: Number = ZERO) -> Interval:
        """Bounds of ``sum terms[(atom, j)] * atom[j] + const``.

        Interval arithmetic, except that the ReLU terms are grouped by the scalar they are ReLUs
        of (up to scale and offset): each group, as in ``step``, ``bump`` and the comparisons
        built from them, is a piecewise linear function of one variable, bounded exactly.
        """
        key = frozenset(terms.items()) | {("const", const)}
        if key not in self._combinations:
            box = Interval.point(const)
            groups: dict[frozenset, tuple[Interval, list]] = {}
            for (atom, j), c in terms.items():
                ramp = self._ramp(atom, j)
                if ramp is None:
                    box = box + self._boxes[atom][j].scaled(c)
                else:
                    scalar, z, a, b = ramp
                    groups.setdefault(scalar, (z, []))[1].append((c, a, b))
            for z, ramps in groups.values():
                box = box + _ramp_extremes(ZERO, ramps, z)
            self._combinations[key] = box
        return self._combinations[key]

    def _ramp(self, atom: int, j: int) -> tuple[frozenset, Interval, Number, Number] | None:
        """``(scalar, bounds of z, a, b)`` where unit j of ``atom`` is relu(a z + b), z the
        scalar's combination scaled to weigh its first atom unit by 1."""
        node = self.graph[atom]
        if node.kind != "relu":
            return None
        operand = node.operands[0]
        inner, b = self.forms[operand].rows()[j]
        if not inner:
            return None
        a = inner[min(inner)]
        scalar = frozenset((k, mul(v, inverse(a))) for k, v in inner.items())
        z = (self._boxes[operand][j] + Interval.point(-b)).scaled(inverse(a))
        return scalar, z, a, b


def analyze(
    graph: Graph, input_range: object = None, max_len: int | None = None, integer_inputs: bool = False
) -> Ranges:
    """Bounds of every node's units: ``ranges[node id]`` is a tuple of intervals.

    ``input_range``: None (unbounded), one ``(lo, hi)`` pair for every input unit, or a pair per
    unit; an end may be None (unbounded). ``max_len``: the longest sequence the bounds must hold
    for (None: any length). ``integer_inputs``: every input value is an integer.
    """
    return Ranges(graph, input_range, max_len, integer_inputs)
