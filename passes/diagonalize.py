"""diagonalize: state layers in the form that diagonal recurrent architectures (Mamba, Hawk) hold.

A Mamba or Hawk channel keeps one number and multiplies it by its own factor each step: its
transition is diagonal, and to be exact in floating point the factor must be exactly 1 (hold) or
exactly 0 (forget). Rotations (complex eigenvalues, e.g. LSRL's modulo counter) and nilpotent
shifts (delays, shift registers) do not fit. Both architectures also have a causal convolution of
width 4 in front of the recurrence, which computes any finite filter of the last 4 inputs exactly.

A state layer ``h_t = A h_{t-1} + W x_t + b`` from ``h_0 = init`` (steps counted from 1) is the sum
of its response to the inputs and a compile-time sequence:

    h_t = sum_{k=0}^{t-1} A^k W x_{t-k}  +  c_t,      c_t = A^t init + sum_{k<t} A^k b.

:func:`decompose_state` rewrites it as what those architectures compute (:class:`DiagonalState`):

- the input response, when ``M_k = A^k W`` stops changing after ``m`` steps (``M_{m+1} = M_m``:
  the transition restricted to what the inputs reach has eigenvalues 0 and 1 only, and 1 without a
  Jordan block), is the finite filter ``sum_{k<m} (M_k - M_m) x_{t-k}`` (a convolution over lags
  0..m-1) plus ``M_m`` times the running sum of the inputs (an accumulator: a channel that holds);
- the compile-time sequence, when it is affine from step 4 on, is ``offset + slope * t`` (an
  accumulator of a constant) plus corrections of the first three steps, which a width-4
  convolution of a constant channel produces (``warmup``: its taps).

Everything is computed in exact arithmetic, so the decomposition is exact for every length.

:func:`diagonalize` makes a whole layered model decomposable, for sequences of at most
``max_len`` steps. A state layer whose compile-time sequence is not eventually affine (a modulo
counter's cycle, a thermometer code of the step) keeps its input response (same transition, no
bias, init 0) and gains a counter ``t``; ReLU layers inserted after it look each unit's sequence
up. The sequence is computed per group of coupled units until its differences repeat
(:func:`constant_sequence`), which makes each unit a trend in ``t``, a periodic part read through
``(t - 1) mod p`` (binary long division, about ``log2(max_len / p)`` layers) where ``p <= max_len
/ 2``, and corrections of its first steps, each the piecewise linear function through its values
with one ReLU per step where the slope changes (see :class:`_Lookup`). So the work and the widths
grow with the sequence's periods, not with ``max_len``; a sequence that does not repeat within
``LOOKUP_LIMIT`` steps (a decay, say) needs a lookup of all ``max_len`` values, which is refused
above that limit. The rest of the model is unchanged. A state layer whose input response does not
settle (rotations or growth driven by the inputs) cannot be held by a diagonal architecture with
exact holds; :class:`NotDiagonal` says which units and why.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from lsrl.ir.errors import LsrlError
from lsrl.ir.graph import Label
from lsrl.ir.layered import CARRY, PART, Layer, LayeredModel, UnitLabel
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import ONE, ZERO, Number, add, mul

CONV_WIDTH = 4  # the causal convolution of Mamba and Hawk: the current input and three earlier ones
LOOKUP_LIMIT = 4096  # the most steps of a state's values without input that diagonalize() computes

Vector = tuple[Number, ...]


class NotDiagonal(ValueError):
    """A state layer that no diagonal architecture with exact holds computes; ``units`` are the
    labels of the units concerned, ``reason`` says why."""

    def __init__(self, layer: int, units: Sequence[object], reason: str):
        self.layer, self.units, self.reason = layer, tuple(units), reason
        super().__init__(f"state layer {layer} ({', '.join(str(u) for u in self.units)}): {reason}")


@dataclass(frozen=True)
class DiagonalState:
    """``h_t = sum_k taps[k] x_{t-k} + hold @ S_t + offset + slope * t + sum_k warmup[k] [t - k >= 1]``
    for steps ``t >= 1``, where ``S_t = x_1 + ... + x_t`` and ``x_s = 0`` for ``s < 1``.

    ``taps[k]`` and ``hold`` are ``width x inputs`` matrices; ``warmup`` has ``CONV_WIDTH`` vectors
    (convolution taps of a constant channel that is 1 from the first step on).
    """

    taps: tuple[Matrix, ...]
    hold: Matrix
    offset: Vector
    slope: Vector
    warmup: tuple[Vector, ...]

    @property
    def lags(self) -> int:
        """How many input steps the filter reaches back (0: only the current input)."""
        return len(self.taps) - 1

    def hold_units(self) -> list[int]:
        """The units that accumulate (their input or a constant)."""
        rows = {i for (i, _) in self.hold.entries}
        return sorted(rows | {i for i, s in enumerate(self.slope) if s != 0})


def _sub(a: Sequence[Number], b: Sequence[Number]) -> list[Number]:
    return [add(x, mul(-ONE, y)) for x, y in zip(a, b)]


def _settled_response(transition: Matrix, drive: Matrix, limit: int) -> tuple[list[Matrix], int] | None:
    """``[A^k W for k <= m]`` and the smallest ``m`` with ``A^{m+1} W = A^m W``, if ``m <= limit``."""
    powers = [drive]
    for m in range(limit + 1):
        following = transition @ powers[-1]
        if following == powers[-1]:
            return powers, m
        powers.append(following)
    return None


@dataclass(frozen=True)
class GroupSequence:
    """The values without input (``init`` and ``b`` only) of a group of units that no entry of ``A``
    couples to the others: ``values`` are ``c_1 .. c_n`` of ``units``. Where ``period`` is set, the
    differences repeat: ``c_{s + period} = c_s + drift`` for every ``s >= start``, so the stored
    values give every step; otherwise only the stored steps are known."""

    units: tuple[int, ...]
    values: tuple[Vector, ...]
    start: int = 1
    period: int = 0
    drift: Vector = ()

    def at(self, s: int) -> Vector:
        """``c_s`` (steps from 1)."""
        if s <= len(self.values):
            return self.values[s - 1]
        turns, offset = divmod(s - self.start, self.period)
        return tuple(add(v, mul(turns, d)) for v, d in zip(self.values[self.start + offset - 1], self.drift))


def constant_sequence(layer: Layer, steps: int) -> list[GroupSequence]:
    """The layer's values without input, per group of coupled units, each computed until its
    differences repeat and for at most ``steps`` steps: the work depends on the period, not on a
    long ``steps``.

    The differences ``d_s = c_s - c_{s-1}`` obey ``d_{s+1} = A d_s``, so once ``d_s`` equals an
    earlier ``d_j`` they repeat with period ``s - j`` from step ``j`` on: a modulo counter repeats
    its values (drift 0), a counter its increments (drift 1 per step), a shift register filling up
    settles (period 1, drift 0).
    """
    transition, bias, init = layer.attrs["A"], layer.attrs["b"], layer.attrs["init"]
    groups = []
    for units in transition.coupled_groups():
        position = {u: k for k, u in enumerate(units)}
        rows = [[(position[j], w) for j, w in transition.row_items()[u]] for u in units]
        previous: Vector = tuple(init[u] for u in units)
        values: list[Vector] = []
        seen: dict[Vector, int] = {}  # d_s -> s
        group = None
        for s in range(1, steps + 1):
            current = tuple(add(bias[u], _dot(row, previous)) for u, row in zip(units, rows))
            values.append(current)
            difference = tuple(_sub(current, previous))
            if difference in seen:
                period = s - seen[difference]
                start = max(seen[difference] - 1, 1)  # c_{k + period} - c_k is one whole period for k >= j - 1
                group = GroupSequence(tuple(units), tuple(values), start, period,
                                      tuple(_sub(values[start + period - 1], values[start - 1])))
                break
            seen[difference] = s
            previous = current
        groups.append(group or GroupSequence(tuple(units), tuple(values)))
    return groups


def _dot(row: list[tuple[int, Number]], vector: Vector) -> Number:
    total = ZERO
    for j, w in row:
        total = add(total, mul(w, vector[j]))
    return total


def _vector(groups: list[GroupSequence], width: int, s: int) -> list[Number]:
    """Every unit's ``c_s``."""
    out = [ZERO] * width
    for group in groups:
        for u, v in zip(group.units, group.at(s)):
            out[u] = v
    return out


def _affine_tail(sequence: list[list[Number]]) -> tuple[Vector, Vector, tuple[Vector, ...]] | None:
    """``(offset, slope, warmup)`` when ``c_t`` (from ``c_1``) is affine in ``t`` from step CONV_WIDTH on.

    The differences ``d_t = c_{t+1} - c_t`` obey ``d_{t+1} = A d_t``, so two equal differences at
    steps CONV_WIDTH and CONV_WIDTH + 1 mean equal differences for ever.
    """
    c = {t + 1: v for t, v in enumerate(sequence)}
    n = CONV_WIDTH
    slope = _sub(c[n + 1], c[n])
    if slope != _sub(c[n + 2], c[n + 1]):
        return None
    offset = _sub(c[n], [mul(n, s) for s in slope])
    # corrections of steps 1..n-1, made by conv taps of a constant: tap k counts from step k + 1 on
    correction = {t: _sub(c[t], [add(o, mul(t, s)) for o, s in zip(offset, slope)]) for t in range(1, n)}
    correction[n] = [ZERO] * len(slope)
    warmup = tuple(tuple(_sub(correction[k + 1], correction[k])) if k else tuple(correction[1]) for k in range(n))
    return tuple(offset), tuple(slope), warmup


def decompose_state(layer: Layer, index: int = 0) -> DiagonalState:
    """The layer as filter taps, accumulators and a constant part; raises :class:`NotDiagonal`."""
    transition, drive = layer.attrs["A"], layer.attrs["W"]
    settled = _settled_response(transition, drive, layer.width)
    if settled is None:
        raise NotDiagonal(
            index, _driven_units(drive, layer), "its transition has an eigenvalue other than 0 and 1 (a rotation, "
            "a decay or growth) or a Jordan block of 1 (a counter of a counter) on values its inputs reach, "
            "which channels that only hold or forget cannot compute",
        )
    powers, m = settled
    groups = constant_sequence(layer, CONV_WIDTH + 2)
    tail = _affine_tail([_vector(groups, layer.width, s) for s in range(1, CONV_WIDTH + 3)])
    if tail is None:
        raise NotDiagonal(
            index, layer.units, "its values without input (from init and bias) are not affine in the step "
            "from step 4 on; diagonalize() replaces them by a lookup over a bounded length",
        )
    hold = powers[m]
    taps = tuple(powers[k] + hold.scaled(-ONE) for k in range(m)) or (Matrix.zeros(layer.width, drive.cols),)
    return DiagonalState(taps, hold, *tail)


def _driven_units(drive: Matrix, layer: Layer) -> list[object]:
    rows = sorted({i for (i, _) in drive.entries})
    return [layer.units[i] for i in rows] or list(layer.units)


def decompose_all(model: LayeredModel) -> dict[int, DiagonalState]:
    """Every state layer's decomposition, by layer index; raises :class:`NotDiagonal`."""
    return {i: decompose_state(layer, i) for i, layer in enumerate(model.layers) if layer.kind == "state"}


# --- the lookup rewrite ---------------------------------------------------------------------------------------
Form = tuple[dict[int, Number], Number]  # sum of coefficient * unit of a layer's output, plus a constant


def diagonalize(model: LayeredModel, max_len: int) -> LayeredModel:
    """An equivalent model (for sequences of at most ``max_len`` steps) whose every state layer
    :func:`decompose_state` accepts; ``model`` itself when it already is one.

    A state layer whose constant part is not affine from step 4 on keeps its input response
    (same transition, no bias, init 0) and gains a counter ``t``; ReLU layers inserted after it
    compute the lookups and carry the input response (a pair ``relu(v), relu(-v)`` per unit), and
    the next layer reads the sum. Every other layer is unchanged, so the model's arithmetic (and its
    rounding in float32) is the original's apart from the rewritten states.

    Raises :class:`NotDiagonal` for a state layer whose input response does not settle.
    """
    layers: list[Layer] = []
    reads: list[Form] | None = None  # how the next layer reads the value units of the previous one
    for i, layer in enumerate(model.layers):
        if reads is not None:
            layer = _reading(layer, reads, layers[-1].width)
            reads = None
        if layer.kind == "state":
            try:
                decompose_state(layer, i)
            except NotDiagonal as refusal:
                if _settled_response(layer.attrs["A"], layer.attrs["W"], layer.width) is None:
                    raise refusal from None
                inserted, reads = _Lookup(layer, max_len).build()
                layers.extend(inserted)
                continue
        layers.append(layer)
    if reads is not None:  # the rewritten state was the last layer: read the outputs out
        weights = Matrix(len(reads), layers[-1].width, {(i, j): w for i, (f, _) in enumerate(reads) for j, w in f.items()})
        bias = tuple(c for _, c in reads)
        layers.append(Layer("affine", {"W": weights, "b": bias}, model.layers[-1].units))
    if len(layers) == len(model.layers):
        return model
    return LayeredModel(model.d_in, layers, model.input_labels, model.output_labels)


def _reading(layer: Layer, reads: list[Form], width: int) -> Layer:
    """``layer`` reading ``reads[j]`` (of an input ``width`` units wide) wherever it read unit j."""
    attrs = dict(layer.attrs)
    for matrix, bias in (("W", "b"), ("W2", "b2")):
        if matrix not in attrs:
            continue
        entries: dict[tuple[int, int], Number] = {}
        shift = list(attrs[bias])
        for (i, j), w in attrs[matrix].entries.items():
            form, const = reads[j]
            for k, c in form.items():
                entries[(i, k)] = add(entries.get((i, k), ZERO), mul(w, c))
            shift[i] = add(shift[i], mul(w, const))
        attrs[matrix], attrs[bias] = Matrix(layer.width, width, entries), tuple(shift)
    return Layer(layer.kind, attrs, layer.units)


def _smallest_period(table: list[Number]) -> int:
    """The smallest q dividing ``len(table)`` with ``table[k] == table[k % q]`` for every k: the
    period of the infinite sequence that repeats ``table``."""
    n = len(table)
    return next(q for q in range(1, n + 1) if n % q == 0 and all(table[k] == table[k % q] for k in range(n)))


def _kinks(values: list[Number]) -> list[tuple[int, Number]]:
    """``(k, g_k)`` with ``values[r] = values[0] + (values[1] - values[0]) r + sum_k g_k relu(r - k)``
    for r = 0 .. len - 1: the steps where the slope of the interpolation changes, and by how much."""
    slopes = [add(values[r + 1], -values[r]) for r in range(len(values) - 1)]
    changes = [(k, add(slopes[k], -slopes[k - 1])) for k in range(1, len(slopes))]
    return [(k, g) for k, g in changes if g != 0]


def _unit_parts(group: GroupSequence, k: int, max_len: int) -> dict[int, list[Number]]:
    """Unit ``k`` of the group at position ``r = t - 1`` as a sum of lookups: period -> the values
    the lookup interpolates, over ``r mod period`` (period 1: over ``r`` itself, extended beyond
    its last value with its last slope).

    With differences that repeat with period p from step ``start`` on, the unit is a trend
    ``slope * r`` (slope: its drift per period / p), a p-periodic residual from ``start`` on (a
    lookup over ``r mod q``, q the residual's own period), and corrections before ``start``
    (interpolated over r with the trend, so they end where the periodic part takes over).
    """
    column = [v[k] for v in group.values]
    if not group.period:  # every step up to max_len is stored: interpolate them all
        return {1: column[:max_len]}
    p, start = group.period, group.start
    slope = mul(group.drift[k], ONE / p)

    def residual(s: int) -> Number:
        return add(group.at(s)[k], mul(-slope, s - 1))

    periodic = [ZERO] * p
    for s in range(start, start + p):
        periodic[(s - 1) % p] = residual(s)
    q = _smallest_period(periodic)
    if q == 1 or q > max_len // 2:  # no periodic lookup: interpolate the values up to where they are affine (or all)
        length = start + 1 if q == 1 else max_len
        return {1: [group.at(r + 1)[k] for r in range(min(length, max_len))]}
    parts = {q: periodic[:q]}
    trend = [add(mul(slope, r), add(residual(r + 1), -periodic[r % q])) for r in range(min(start + 1, max_len))]
    if any(v != 0 for v in trend):
        parts[1] = trend
    return parts


class _Lookup:
    """The layers that replace a state layer whose constant part needs a lookup.

    Each unit's constant part is a sum of lookups (:func:`_unit_parts`) over positions ``t - 1``
    and ``(t - 1) mod q`` for each period ``q <= max_len / 2`` some unit needs, computed by binary
    long division: for j from high to low, subtract ``q 2^j`` where ``r >= q 2^j``, which on
    integers is ``relu(2 (r - q 2^j) + 1) - relu(2 (r - q 2^j))``. A lookup is the piecewise linear
    function of its position through its values, ``v_0 + (v_1 - v_0) r + sum_k g_k relu(r - k)``.
    The constant part is computed until it repeats (:func:`constant_sequence`), so the work and the
    lookups' widths grow with its periods, and only the number of division layers with
    ``log2(max_len)``; a part that does not repeat within ``LOOKUP_LIMIT`` steps needs all
    ``max_len`` of them, which is refused above that limit.
    """

    def __init__(self, layer: Layer, max_len: int):
        self.layer, self.max_len = layer, max(max_len, 2)
        self.parts: list[dict[int, list[Number]]] = [{} for _ in range(layer.width)]  # unit -> period -> values
        for group in constant_sequence(layer, min(self.max_len, LOOKUP_LIMIT)):
            if not group.period and len(group.values) < self.max_len:
                label = layer.units[group.units[0]]
                raise LsrlError(
                    f"--max-len {max_len} needs a lookup over all {max_len} steps of state {label.source.name!r}: "
                    f"its values without input neither repeat nor repeat their increments within {LOOKUP_LIMIT} "
                    f"steps; give --max-len {LOOKUP_LIMIT} or less (limit {LOOKUP_LIMIT})", node=label.node)
            for k, unit in enumerate(group.units):
                self.parts[unit] = _unit_parts(group, k, self.max_len)
        self.groups: dict[int, list[int]] = {}  # period (1: the position is t - 1) -> units
        for unit, parts in enumerate(self.parts):
            for period in parts:
                self.groups.setdefault(period, []).append(unit)
        self.name = next((str(u.source) for u in layer.units), "state")

    def _state(self) -> Layer:
        """The input response of every unit, and the counter t (its last unit)."""
        a, n = self.layer.attrs, self.layer.width
        transition = Matrix(n + 1, n + 1, {**a["A"].entries, (n, n): ONE})
        drive = Matrix(n + 1, a["W"].cols, a["W"].entries)
        units = tuple(replace(u, role=PART) for u in self.layer.units) + (UnitLabel(Label(f"{self.name}/step", 0)),)
        zeros = (ZERO,) * n
        return Layer("state", {"A": transition, "W": drive, "b": zeros + (ONE,), "init": zeros + (ZERO,)}, units)

    def build(self) -> tuple[list[Layer], list[Form]]:
        """The inserted layers, and how the next layer reads the state's values from the last one."""
        n = self.layer.width
        layers = [self._state()]
        driven: list[Form] = [({i: ONE}, ZERO) for i in range(n)]
        positions: dict[int, Form] = {p: ({n: ONE}, -ONE) for p in self.groups}  # all start at t - 1
        bits = {p: self._bits(p) if p > 1 else [] for p in self.groups}
        while True:
            rows = _Rows()
            driven = [rows.carry_signed(f, u) for f, u in zip(driven, self.layer.units)]
            lookups: dict[int, list[tuple[int, int]]] = {}  # period -> (kink, unit)
            dividing = any(bits.values())
            for p, form in positions.items():
                label = UnitLabel(Label(f"{self.name}/mod{p}" if p > 1 else f"{self.name}/step-1", 0))
                if bits[p]:
                    size = bits[p].pop(0)
                    over = rows.relu(_scaled(form, 2, 1 - 2 * size), label)
                    at = rows.relu(_scaled(form, 2, -2 * size), label)
                    kept = rows.carry_positive(form, replace(label, role=CARRY))
                    positions[p] = ({**kept[0], over: -size, at: size}, ZERO)
                    continue
                if not dividing:
                    lookups[p] = [(k, rows.relu((form[0], add(form[1], -k)), label)) for k in self._kinks_of(p)]
                positions[p] = rows.carry_positive(form, replace(label, role=CARRY))
            layers.append(rows.layer())
            if lookups:
                break
        return layers, [self._value(i, driven[i], positions, lookups) for i in range(n)]

    def _bits(self, period: int) -> list[int]:
        """``period * 2^j`` for j from the highest that (t - 1) <= max_len - 1 can reach down to 0."""
        sizes = [period]
        while sizes[-1] * 2 <= self.max_len - 1:
            sizes.append(sizes[-1] * 2)
        return sizes[::-1]

    def _kinks_of(self, period: int) -> list[int]:
        return sorted({k for i in self.groups[period] for k, _ in _kinks(self.parts[i][period])})

    def _value(self, i: int, driven: Form, positions: dict[int, Form], lookups: dict) -> Form:
        """Unit i of the state: its input response plus the lookups of its constant part."""
        form, const = dict(driven[0]), driven[1]
        for period, table in self.parts[i].items():
            const = add(const, table[0])
            slope = add(table[1], -table[0]) if len(table) > 1 else ZERO
            for j, c in positions[period][0].items():
                form[j] = add(form.get(j, ZERO), mul(slope, c))
            const = add(const, mul(slope, positions[period][1]))
            changes = dict(_kinks(table))
            for k, unit in lookups[period]:
                if k in changes:
                    form[unit] = add(form.get(unit, ZERO), changes[k])
        return form, const


def _scaled(form: Form, factor: int, shift: int) -> Form:
    return {j: mul(c, factor) for j, c in form[0].items()}, add(mul(form[1], factor), shift)


class _Rows:
    """The units of one inserted ReLU layer, each ``relu(form)`` of the previous layer's units."""

    def __init__(self) -> None:
        self.forms: list[Form] = []
        self.units: list[UnitLabel] = []

    def relu(self, form: Form, label: UnitLabel) -> int:
        self.forms.append(form)
        self.units.append(label)
        return len(self.forms) - 1

    def carry_positive(self, form: Form, label: UnitLabel) -> Form:
        """A value that is never negative, through one unit."""
        return {self.relu(form, label): ONE}, ZERO

    def carry_signed(self, form: Form, label: UnitLabel) -> Form:
        """A value of either sign, through the pair relu(v), relu(-v)."""
        plus = self.relu(form, replace(label, role=PART, rectified=True))
        minus = self.relu(_scaled(form, -1, 0), replace(label, role=PART, sign=-label.sign, rectified=True))
        return {plus: ONE, minus: -ONE}, ZERO

    def layer(self) -> Layer:
        cols = 1 + max(j for f, _ in self.forms for j in f)
        weights = Matrix(len(self.forms), cols, {(i, j): c for i, (f, _) in enumerate(self.forms) for j, c in f.items()})
        return Layer("relu", {"W": weights, "b": tuple(c for _, c in self.forms)}, tuple(self.units))
