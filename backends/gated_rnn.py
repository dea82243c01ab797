"""The ``lstm`` and ``gru`` targets: one ``torch.nn.LSTM`` / ``torch.nn.GRU`` and an ``nn.Linear`` readout.

Every layer of the layered model becomes one layer of a stacked cell (``num_layers`` = the number
of layers, each padded with unused cells to the widest one); a final affine layer becomes the
readout. Two constructions (``Options.variant``), with their math, error bound and measured errors
in docs/target-lstm-gru.md:

``stock`` (the default): the stock modules with their sigmoid and tanh.

- Small signal. A cell holds ``s v`` for the program value ``v``, with a power of two ``s``
  chosen from the range analysis so that ``|s v| <= 2**-28``. Below ``2**-27``, ``tanh(x)`` rounds
  to ``x`` itself in float64 (below ``2**-12`` in float32), so a value passes through the
  candidate's and the output's tanh unchanged, and the next layer's weights divide the scale out
  again (exactly: powers of two).
- Saturated gates. A gate pre-activation of ``+-1024`` makes ``sigmoid`` exactly 1 or 0 in
  float32 and float64, so a gate that should be open or shut is.
- Affine and state layers are then exact to rounding. An LSTM cell ``c = f c_prev + i g`` has
  ``i = o = 1`` and ``f = 0``, or ``f = 1`` for a state unit whose row of ``A`` has a 1 on the
  diagonal (counters and accumulators live in the cell state); the rest of ``A`` is the recurrent
  weight. A GRU cell has ``z = 0`` and ``r = 1``, so ``h = n``. Cells start from 0, so a state
  with ``init != 0`` is held as ``v - init`` and read as ``h / s + init``.
- A ReLU is a gate, ``relu(p) ~ sigmoid(k p) p``, with the slope ``k`` as large as float32
  allows; the gate is exactly 0 or 1 unless ``|k p| < 745``. In an LSTM the input gate does it.
  A GRU's update gate can only choose between the candidate and the cell's previous value, so a
  second cell subtracts what was kept (the reset gate, with the same pre-activation, times the
  first cell's previous value).
- A product ``a b`` of two runtime values: a 0/1 condition (an integer in [0, 1] by the range
  analysis) opens a saturated gate over ``b``, exactly. Otherwise ``a`` drives a gate in its
  linear region, ``sigmoid(y) - 1/2 = tanh(y / 2) / 2``, at ``y = alpha a`` and ``2 alpha a``
  (``|y| <= 2**-7``), and Richardson extrapolation cancels the cubic term:
  ``8 tanh(y / 2) - tanh(y) = 3 y - y**5 / 10``.

The error is bounded, not assumed: :func:`error_bounds` propagates each unit's own error (the
ReLU gates' ``0.28 / k``, the products' ``y**4 / 30``, the rounding that a gate in its linear
region or a GRU cell keeping its value amplifies) through the layers and over ``max_len`` steps,
using the ranges of every value for inputs in ``--input-range`` (``+-ASSUMED_INPUT_BOUND`` where
none is given), per dtype in ``config["error_bound"]``, where the rounding of the sums the cells
compute (``backends.rounding``, on the layered model they compute) is added to it; the compiler
warns where a bound does not prove the outputs right (``backends.verdict``).

``relu``: the LSRL paper's exact construction: the same cell equations with ReLU in place of
sigmoid and tanh, one cell layer per layer; a value of unknown sign is held as its positive and
negative parts. ``model.py`` (written with the weights, imported by ``run``) defines
``ReluLSTM`` / ``ReluGRU`` with the constructor arguments, parameter names and shapes of
``nn.LSTM`` / ``nn.GRU``.

``model.safetensors`` holds the ``state_dict`` of ``{"lstm": ..., "readout": ...}``
(``lstm.weight_ih_l0``, ..., ``readout.bias``; ``gru.*`` for the GRU) and ``config.json`` the
constructor arguments under ``lstm`` / ``gru`` and ``readout``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np
from lsrl.backends.codegen import import_generated
from lsrl.backends.layer_ranges import LayerBounds, layer_bounds
from lsrl.backends.rounding import stated_rounding
from lsrl.backends.stacking import Decoding
from lsrl.backends.target import (
    UNIT_ROUNDOFF,
    Compiled,
    LayerReading,
    Options,
    Target,
    base_config,
)
from lsrl.ir.errors import LsrlError
from lsrl.ir.layered import Layer, LayeredModel
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import ONE, ZERO, Number, add, exact, inverse, mul
from lsrl.passes.ranges import INF, Interval

STOCK, RELU = "stock", "relu"
UNUSED = "unused"  # the label of a padding cell
GATES = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}  # in the modules' order

# --- the numbers of the stock construction (module docstring) -------------------------------------
SATURATION = exact(1024)  # sigmoid(+-1024) is exactly 1 / 0 in float32 and float64
SIGNAL_EXPONENT = -28  # cells hold |s v| <= 2**-28, where tanh(x) rounds to x in float64
FACTOR_EXPONENT = -7  # a product's linear gate sees |alpha a| <= 2**-7
SLOPE_EXPONENT = 120  # ReLU gate weights stay below 2**120 (float32 overflows at 2**128)
FALLBACK_EXPONENT = 40  # a value the range analysis cannot bound is scaled as if |v| <= 2**40

# --- the error bound (docs/target-lstm-gru.md, "Error bound") -------------------------------------------
GATE_EXACT = 745.0  # sigmoid(x) is exactly 0 for x <= -745 and 1 for x >= 37.4 (float64; 104 and 17 in float32)
RELU_GATE_ERROR = 0.2785  # the largest |p| sigmoid(-k |p|) is 0.2785 / k
RELU_GATE_GAIN = 1.1  # the slope of p sigmoid(k p) lies in [-0.1, 1.1]
CONDITION_MARGIN = 0.125  # a 0/1 condition off by less still saturates its gate sigmoid(1024 (2a - 1))
PRODUCT_ROUNDING = {"lstm": 16.0, "gru": 32.0}  # a linear gate's rounding, in units of roundoff m_a m_b / |y|
KEPT_ROUNDING = 6.0  # a GRU cell keeping its value (n + z (h - n), z = 1), in units of roundoff max |v|


def _power_of_two(exponent: int) -> Number:
    return exact(2) ** exponent if exponent >= 0 else ONE / exact(2) ** -exponent


def _exponent(magnitude: float) -> int:
    """The smallest e with ``magnitude <= 2**e``."""
    mantissa, e = math.frexp(magnitude)
    return e - 1 if mantissa == 0.5 else e


def magnitude(interval: Interval) -> float:
    return interval.magnitude


# --- what a unit reads -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pre:
    """A gate's pre-activation: weights on the previous layer's values (``x``), on this layer's
    values at the previous step (``h``) and on this layer's cells at the previous step
    (``cells``), and a bias."""

    x: Mapping[int, Number] = field(default_factory=dict)
    h: Mapping[int, Number] = field(default_factory=dict)
    cells: Mapping[int, Number] = field(default_factory=dict)
    bias: Number = ZERO

    @classmethod
    def row(cls, weight: Matrix, bias: Sequence[Number], unit: int, transition: Optional[Matrix] = None) -> "Pre":
        """Row ``unit`` of ``weight x + bias`` (plus ``transition h`` for a state layer)."""
        h = dict(transition.row_items()[unit]) if transition is not None else {}
        return cls(dict(weight.row_items()[unit]), h, {}, bias[unit])

    def scaled(self, factor: Number) -> "Pre":
        def times(terms: Mapping[int, Number]) -> dict[int, Number]:
            return {k: mul(v, factor) for k, v in terms.items()}

        return Pre(times(self.x), times(self.h), times(self.cells), mul(self.bias, factor))

    def plus(self, value: Number) -> "Pre":
        return Pre(self.x, self.h, self.cells, add(self.bias, value))

    def without_own(self, unit: int) -> "Pre":
        """This pre-activation less the previous value of this layer's ``unit`` (weight 1)."""
        return Pre(self.x, {k: v for k, v in self.h.items() if k != unit}, self.cells, self.bias)


CONSTANT_ON = Pre(bias=SATURATION)
CONSTANT_OFF = Pre(bias=-SATURATION)
CONSTANT_ONE = Pre(bias=ONE)


@dataclass(frozen=True)
class Operand:
    """What a ReLU or one factor of a product reads: its pre-activation and what the range
    analysis knows of it."""

    pre: Pre
    interval: Interval
    integer: bool

    @property
    def magnitude(self) -> float:
        return magnitude(self.interval)

    @property
    def span(self) -> float:
        return float(self.interval.hi) - float(self.interval.lo)

    @property
    def condition(self) -> bool:
        """Takes only the values 0 and 1."""
        return self.integer and self.interval.lo >= 0 and self.interval.hi <= 1


# --- how the error of a unit follows from the errors of what it reads ------------------------------
class Accuracy:
    """The error bound of one unit from the error bounds of what it reads (``first``: its row of
    ``W``, or a product's first factor; ``second``: a product's second factor) and the unit
    roundoff of the number type. A state unit's ``first`` also holds its previous error through
    ``A`` (``error_bounds``)."""

    def error(self, first: float, second: float, roundoff: float) -> float:
        raise NotImplementedError


@dataclass(frozen=True)
class Passes(Accuracy):
    """A value the cells compute exactly to rounding, times ``gain`` (0 for a ReLU that is always
    0, the constant factor of a product made affine); ``unbounded``: its scale was guessed."""

    gain: float = 1.0
    unbounded: bool = False

    def error(self, first, second, roundoff):
        return INF if self.unbounded else self.gain * first


EXACT = Passes()


@dataclass(frozen=True)
class GatedRelu(Accuracy):
    """``sigmoid(k p) p``: within ``0.2785 / k`` of ``relu(p)``, exact where ``|k p| >= 745``, so
    exact for an integer ``p`` off by less than 1/2 when ``k >= 1490``. ``kept``: a GRU cell,
    whose kept value carries rounding of the values' size, unless they are integers the number
    type holds exactly."""

    slope: float
    magnitude: float
    integer: bool
    kept: bool

    def error(self, first, second, roundoff):
        if self.magnitude == INF:
            return INF
        if self.integer and self.slope >= 2 * GATE_EXACT and first < 0.5:
            error = first
        else:
            error = RELU_GATE_GAIN * first + RELU_GATE_ERROR / self.slope
        return error + _kept_rounding(self.kept, self.integer and first == 0, self.magnitude, roundoff)


def _kept_rounding(kept: bool, integers: bool, largest: float, roundoff: float) -> float:
    """The rounding of ``n + z (h - n)`` with ``z = 1`` for values up to ``largest``: none where
    the values are integers (times a power of two) that the number type holds exactly."""
    if not kept or (integers and 2 * largest * roundoff <= 1):
        return 0.0
    return KEPT_ROUNDING * largest * roundoff


@dataclass(frozen=True)
class ConditionProduct(Accuracy):
    """A 0/1 condition (factor ``gated``) saturating a gate over the other factor: exact while the
    condition is off by less than ``CONDITION_MARGIN``."""

    gated: int
    other: float  # the other factor's magnitude
    integer: bool  # the other factor takes integer values
    kept: bool

    def error(self, first, second, roundoff):
        e_a, e_b = (first, second) if self.gated == 0 else (second, first)
        flipped = self.other if e_a >= CONDITION_MARGIN else 0.0
        return e_b + flipped + _kept_rounding(self.kept, self.integer and e_b == 0, self.other, roundoff)


@dataclass(frozen=True)
class LinearProduct(Accuracy):
    """``a b`` from a gate in its linear region at amplitude ``|alpha a| <= y``: the factors'
    errors, the extrapolation's ``y**4 / 30`` and the rounding of a gate near 1/2, relative to
    ``m_a m_b``."""

    gated: int
    magnitudes: tuple[float, float]  # (gated factor, other factor)
    amplitude: float
    rounding: float

    def error(self, first, second, roundoff):
        e_a, e_b = (first, second) if self.gated == 0 else (second, first)
        m_a, m_b = self.magnitudes
        own = m_a * m_b * (self.amplitude**4 / 30 + self.rounding * roundoff / self.amplitude)
        return e_a * m_b + e_b * m_a + e_a * e_b + own


@dataclass(frozen=True)
class ConstantFactor(Accuracy):
    """A product with a constant factor ``c``: the affine value ``c b``, ``b`` being factor
    ``other`` (0: first, 1: second), held in cells with accuracy ``held``."""

    other: int
    factor: float
    held: Accuracy

    def error(self, first, second, roundoff):
        return self.held.error(self.factor * (first, second)[self.other], 0.0, roundoff)


# --- cells ---------------------------------------------------------------------------------------------
class Cells:
    """The cells of one target layer, and how the layered model's values are read from them."""

    def __init__(self, gates: Sequence[str], previous: Decoding):
        self.gates = tuple(gates)
        self.previous = previous  # how the previous layer's values are read from its cells
        self.pres: list[dict[str, Pre]] = []
        self.labels: list[str] = []
        self.reads: list[tuple[dict[int, Number], Number]] = []  # per value: cell weights, offset

    def cell(self, label: str, **gates: Pre) -> int:
        """A new cell with these gate pre-activations (others 0); returns its index."""
        self.pres.append(gates)
        self.labels.append(label)
        return len(self.pres) - 1

    def value(self, weights: Mapping[int, Number], offset: Number = ZERO) -> None:
        """The layer's next value is ``sum weights[c] * (cell c) + offset``."""
        self.reads.append(({c: w for c, w in weights.items() if w != 0}, offset))

    def decoding(self) -> Decoding:
        entries = {(j, c): w for j, (weights, _) in enumerate(self.reads) for c, w in weights.items()}
        return Decoding(Matrix(len(self.reads), len(self.pres), entries), tuple(o for _, o in self.reads))

    def largest_weight(self, pre: Pre) -> float:
        """The largest weight or bias of ``pre`` as read from the previous layer's cells."""
        row = Matrix(1, self.previous.matrix.rows, {(0, j): w for j, w in pre.x.items()})
        weight, bias = self.previous.read(row, (pre.bias,))
        try:
            return max([abs(float(w)) for w in weight.entries.values()] + [abs(float(bias[0]))])
        except OverflowError:
            raise LsrlError("the LSTM or GRU cells that read a value would need a weight beyond float64's range") from None


def _signs(interval: Interval) -> tuple[int, ...]:
    """The parts (``relu(v)``: 1, ``relu(-v)``: -1) that hold a value in ``interval``."""
    if interval.lo >= 0:
        return (1,)
    if interval.hi <= 0:
        return (-1,)
    return (1, -1)


def _part(sign: int, name: str) -> str:
    return f"relu({name})" if sign > 0 else f"relu(-{name})"


def _held(interval: Interval, shift: Number) -> Interval:
    """The values ``v - shift`` a cell holds for v in ``interval``, and its initial 0."""
    return Interval(min(add(interval.lo, -shift), ZERO), max(add(interval.hi, -shift), ZERO))


class Construction:
    """How one cell type computes each kind of unit in one variant.

    ``hold`` puts an affine value, or a state's new value (whose pre-activation reads the layer's
    previous values), into cells; ``relu`` a ReLU and ``product`` a product. Each adds the cells
    and how the value is read from them to ``cells``, and returns the unit's :class:`Accuracy`.
    """

    cell: str

    def hold(self, cells: Cells, label: str, v: Pre, interval: Interval, shift: Number = ZERO,
             increment: Optional[Pre] = None) -> Accuracy:
        """``shift``: what the cell leaves out of the value (a state's ``init``: cells start at 0);
        ``increment``: for a state unit whose row of ``A`` has a 1 on the diagonal, ``v`` less the
        unit's previous value (what an accumulating cell adds each step)."""
        raise NotImplementedError

    def relu(self, cells: Cells, label: str, p: Operand) -> Accuracy:
        raise NotImplementedError

    def product(self, cells: Cells, label: str, a: Operand, b: Operand) -> Accuracy:
        raise NotImplementedError


# --- stock: sigmoid and tanh ------------------------------------------------------------------------------
def _scale(m: float, limit: int = SIGNAL_EXPONENT) -> Number:
    """The power of two ``s`` with ``s m <= 2**limit`` (an unbounded ``m`` as ``2**FALLBACK_EXPONENT``)."""
    exponent = FALLBACK_EXPONENT if m == INF else _exponent(m) if m > 0 else 0
    return _power_of_two(limit - exponent)


class StockConstruction(Construction):
    """Sigmoid and tanh: small signal, saturated gates (module docstring)."""

    kept = False  # whether ReLUs and products keep a cell's previous value (the GRU's)

    def relu(self, cells, label, p):
        s = _scale(p.magnitude)
        # the largest slope whose weights stay below 2**SLOPE_EXPONENT
        largest = max(cells.largest_weight(p.pre), p.magnitude if p.magnitude != INF else 2.0**FALLBACK_EXPONENT)
        k = _power_of_two(SLOPE_EXPONENT - _exponent(largest))
        self.gated_relu(cells, label, p.pre.scaled(k), p.pre.scaled(s), s)
        return GatedRelu(float(k), p.magnitude, p.integer, self.kept)

    def product(self, cells, label, a, b):
        # the gate takes a condition, else the smaller factor (its size scales the rounding)
        gated = 1 if b.condition and not a.condition or a.condition == b.condition and b.magnitude < a.magnitude else 0
        a, b = (a, b) if gated == 0 else (b, a)
        s_b = _scale(b.magnitude)
        if a.condition:  # SATURATION (2 a - 1): the gate is exactly 0 for a = 0 and 1 for a = 1
            self.condition_product(cells, label, a.pre.scaled(2 * SATURATION).plus(-SATURATION), b.pre.scaled(s_b), s_b)
            return ConditionProduct(gated, b.magnitude, b.integer, self.kept)
        alpha = _scale(a.magnitude, FACTOR_EXPONENT)
        self.linear_product(cells, label, a.pre.scaled(alpha), b.pre.scaled(s_b), alpha, s_b)
        amplitude = min(float(alpha) * a.magnitude, 2.0**FACTOR_EXPONENT)
        return LinearProduct(gated, (a.magnitude, b.magnitude), amplitude, PRODUCT_ROUNDING[self.cell])

    @staticmethod
    def extrapolation(alpha: Number, s_b: Number) -> tuple[Number, Number, Number]:
        """The weights that read ``a b`` from the cells ``sigmoid(y) s_b b``, ``sigmoid(2 y) s_b b``
        and ``s_b b`` (``y = alpha a``): ``(16 G1 - 2 G2) / (3 alpha s_b)`` with
        ``G = cell - (s_b b) / 2``, since ``sigmoid(y) - 1/2 = tanh(y / 2) / 2``."""
        unit = inverse(mul(3 * alpha, s_b))
        return 16 * unit, -2 * unit, -7 * unit

    def gated_relu(self, cells: Cells, label: str, gate: Pre, g: Pre, s: Number) -> None:
        raise NotImplementedError

    def condition_product(self, cells: Cells, label: str, gate: Pre, g: Pre, s_b: Number) -> None:
        raise NotImplementedError

    def linear_product(self, cells: Cells, label: str, y: Pre, g: Pre, alpha: Number, s_b: Number) -> None:
        raise NotImplementedError


class StockLSTM(StockConstruction):
    cell = "lstm"

    def hold(self, cells, label, v, interval, shift=ZERO, increment=None):
        held = magnitude(_held(interval, shift))
        s = _scale(held)
        if increment is not None:  # c = c_prev + g: counters and accumulators live in the cell state
            g, forget = increment.scaled(s), CONSTANT_ON
        else:
            g, forget = v.plus(-shift).scaled(s), CONSTANT_OFF
        c = cells.cell(label, i=CONSTANT_ON, f=forget, g=g, o=CONSTANT_ON)
        cells.value({c: inverse(s)}, shift)
        return Passes(unbounded=held == INF)

    def gated_relu(self, cells, label, gate, g, s):
        c = cells.cell(f"{label}: relu gate", i=gate, f=CONSTANT_OFF, g=g, o=CONSTANT_ON)
        cells.value({c: inverse(s)})

    def condition_product(self, cells, label, gate, g, s_b):
        c = cells.cell(f"{label}: condition gate", i=gate, f=CONSTANT_OFF, g=g, o=CONSTANT_ON)
        cells.value({c: inverse(s_b)})

    def linear_product(self, cells, label, y, g, alpha, s_b):
        once = cells.cell(f"{label}: linear gate", i=y, f=CONSTANT_OFF, g=g, o=CONSTANT_ON)
        twice = cells.cell(f"{label}: linear gate x2", i=y.scaled(2), f=CONSTANT_OFF, g=g, o=CONSTANT_ON)
        carrier = cells.cell(f"{label}: carrier", i=CONSTANT_ON, f=CONSTANT_OFF, g=g, o=CONSTANT_ON)
        w_once, w_twice, w_carrier = self.extrapolation(alpha, s_b)
        cells.value({once: w_once, twice: w_twice, carrier: w_carrier})


class StockGRU(StockConstruction):
    """Every cell whose candidate has a bias holds its reset gate open: torch multiplies ``b_hn``,
    where the biases sit (``GatedRNNTarget._tensors``), by it."""

    cell = "gru"
    kept = True

    def hold(self, cells, label, v, interval, shift=ZERO, increment=None):
        held = magnitude(_held(interval, shift))
        s = _scale(held)
        c = cells.cell(label, r=CONSTANT_ON, z=CONSTANT_OFF, n=v.plus(-shift).scaled(s))
        cells.value({c: inverse(s)}, shift)
        return Passes(unbounded=held == INF)

    def gated(self, cells: Cells, label: str, keep: Pre, n: Pre) -> dict[int, Number]:
        """``h = (1 - z) n + z h_prev`` with ``z = sigmoid(keep)``, and a second cell holding
        ``z h_prev`` (the reset gate, with the same pre-activation, times ``h_prev``): the first
        minus the second is ``sigmoid(-keep) n``."""
        kept = cells.cell(f"{label}: update gate", r=CONSTANT_ON, z=keep, n=n)
        what_was_kept = cells.cell(
            f"{label}: what the update gate kept", r=keep, z=CONSTANT_OFF, n=Pre(cells={kept: ONE})
        )
        return {kept: ONE, what_was_kept: -ONE}

    def gated_relu(self, cells, label, gate, g, s):
        cells.value({c: w * inverse(s) for c, w in self.gated(cells, label, gate.scaled(-1), g).items()})

    def condition_product(self, cells, label, gate, g, s_b):
        cells.value({c: w * inverse(s_b) for c, w in self.gated(cells, label, gate.scaled(-1), g).items()})

    def linear_product(self, cells, label, y, g, alpha, s_b):
        once = self.gated(cells, f"{label}: linear", y.scaled(-1), g)
        twice = self.gated(cells, f"{label}: linear x2", y.scaled(-2), g)
        carrier = cells.cell(f"{label}: carrier", r=CONSTANT_ON, z=CONSTANT_OFF, n=g)
        w_once, w_twice, w_carrier = self.extrapolation(alpha, s_b)
        weights = {c: w * w_once for c, w in once.items()}
        weights.update({c: w * w_twice for c, w in twice.items()})
        cells.value({**weights, carrier: w_carrier})


# --- relu: the LSRL paper's exact construction ------------------------------------------------------------
class ReluConstruction(Construction):
    """ReLU in place of sigmoid and tanh: exact; a value of unknown sign is held as its positive
    and negative parts."""

    def passing(self, pre: Pre) -> dict[str, Pre]:
        """The gates of a cell whose output is ``relu(pre)``."""
        raise NotImplementedError

    def relu(self, cells, label, p):
        cells.value({cells.cell(label, **self.passing(p.pre)): ONE})
        return EXACT

    def hold(self, cells, label, v, interval, shift=ZERO, increment=None):
        parts = {
            cells.cell(_part(sign, label), **self.passing(v.plus(-shift).scaled(sign))): exact(sign)
            for sign in _signs(_held(interval, shift))
        }
        cells.value(parts, shift)
        return EXACT


class ReluLSTM(ReluConstruction):
    cell = "lstm"

    def passing(self, pre):
        return {"i": CONSTANT_ONE, "g": pre, "o": CONSTANT_ONE}  # f = relu(0) = 0

    def product(self, cells, label, a, b):
        """``relu(+-a) relu(+-b)`` by the input gate and the candidate, one cell per sign pair."""
        weights = {}
        for sign_a in _signs(a.interval):
            for sign_b in _signs(b.interval):
                part = f"{label}: {_part(sign_a, 'a')} {_part(sign_b, 'b')}"
                c = cells.cell(part, i=a.pre.scaled(sign_a), g=b.pre.scaled(sign_b), o=CONSTANT_ONE)
                weights[c] = exact(sign_a * sign_b)
        cells.value(weights)
        return EXACT


class ReluGRU(ReluConstruction):
    """Every cell whose candidate has a bias holds its reset gate at 1 (``b_hn`` is multiplied by it)."""

    cell = "gru"

    def passing(self, pre):
        return {"r": CONSTANT_ONE, "n": pre}  # z = relu(0) = 0: h = n

    def product(self, cells, label, a, b):
        """Over the factor ``a`` with the smaller range ``[lo, hi]``, the update gate
        ``z = (hi - a) / (hi - lo)`` lies in [0, 1] and makes ``h = (1 - z) relu(b) + z h_prev``;
        a second cell holds ``z h_prev`` (the reset gate times ``h_prev``), so that
        ``a relu(b) = lo relu(b) + (hi - lo) (h - z h_prev)``; likewise for ``relu(-b)``."""
        if b.span < a.span:
            a, b = b, a
        lo, hi = a.interval.lo, a.interval.hi
        if a.span == INF:
            raise LsrlError(
                f"the relu GRU computes {label} with a gate over one factor's range, and the range "
                "analysis bounds neither factor: give --input-range (and --max-len)"
            )
        keep = a.pre.scaled(-inverse(hi - lo)).plus(mul(hi, inverse(hi - lo)))
        weights: dict[int, Number] = {}
        for sign in _signs(b.interval):
            part = f"{label}: a {_part(sign, 'b')}"
            kept = cells.cell(part, r=CONSTANT_ONE, z=keep, n=b.pre.scaled(sign))
            what_was_kept = cells.cell(f"{part}: what the update gate kept", r=keep, n=Pre(cells={kept: ONE}))
            weights.update({kept: sign * (hi - lo), what_was_kept: -sign * (hi - lo)})
            if lo != 0:
                weights[cells.cell(_part(sign, "b"), **self.passing(b.pre.scaled(sign)))] = sign * lo
        cells.value(weights)
        return EXACT


CONSTRUCTIONS = {
    ("lstm", STOCK): StockLSTM(), ("gru", STOCK): StockGRU(),
    ("lstm", RELU): ReluLSTM(), ("gru", RELU): ReluGRU(),
}


# --- the whole model --------------------------------------------------------------------------------------
@dataclass
class CellLayer:
    """One layer of the stacked cell before padding: per gate, the input weights, recurrent
    weights and bias of each cell."""

    weight_ih: dict[str, Matrix]
    weight_hh: dict[str, Matrix]
    bias: dict[str, tuple[Number, ...]]
    labels: tuple[str, ...]
    values: Decoding  # how the layered model's values are read from the cells' outputs h


@dataclass
class CellModel:
    layers: list[CellLayer]
    readout_weight: Matrix
    readout_bias: tuple[Number, ...]
    accuracy: list[list[Accuracy]]  # per layer of the layered model, per unit


def cell_model(model: LayeredModel, construction: Construction, bounds: Sequence[LayerBounds]) -> CellModel:
    """The cell layers computing ``model``: one per layer, except that a final affine layer (after
    at least one other) is the readout."""
    decoding = Decoding.identity(model.d_in)
    layers, accuracy = [], []
    readout = model.layers[-1] if model.layers[-1].kind == "affine" and len(model.layers) > 1 else None
    for layer, bound in zip(model.layers, bounds):
        if layer is readout:
            break
        cells = Cells(GATES[construction.cell], decoding)
        accuracy.append([_unit(construction, cells, layer, bound, j) for j in range(layer.width)])
        own = cells.decoding()
        layers.append(_cell_layer(cells, decoding, own))
        decoding = own
    if readout is None:
        weight, bias = decoding.matrix, decoding.offset
    else:
        weight, bias = decoding.read(readout.attrs["W"], readout.attrs["b"])
        accuracy.append([EXACT] * readout.width)
    return CellModel(layers, weight, tuple(bias), accuracy)


def _unit(construction: Construction, cells: Cells, layer: Layer, bound: LayerBounds, j: int) -> Accuracy:
    """Adds the cells of unit ``j`` of ``layer``; returns its accuracy."""
    a, label = layer.attrs, str(layer.units[j])
    if layer.kind == "affine":
        return construction.hold(cells, label, Pre.row(a["W"], a["b"], j), bound.values[j])
    if layer.kind == "state":
        v = Pre.row(a["W"], a["b"], j, a["A"])
        increment = v.without_own(j) if v.h.get(j) == 1 else None
        return construction.hold(cells, label, v, bound.values[j], a["init"][j], increment)
    operands = [
        Operand(Pre.row(a[w], a[b], j), bound.operands[k][j], bound.integer[k][j])
        for k, (w, b) in enumerate([("W", "b"), ("W2", "b2")][: len(bound.operands)])
    ]
    if layer.kind == "relu":
        p = operands[0]
        if p.interval.lo > 0:  # the ReLU passes p (where p may be 0, the gate still clamps rounding below 0)
            return construction.hold(cells, label, p.pre, p.interval)
        if p.interval.hi <= 0:
            cells.value({})
            return Passes(gain=0.0)
        return construction.relu(cells, label, p)
    for k in (0, 1):  # a constant factor c makes the product the affine value c b
        c = operands[k].interval.lo
        if c == operands[k].interval.hi:
            other = operands[1 - k]
            held = construction.hold(cells, label, other.pre.scaled(c), other.interval.scaled(c))
            return ConstantFactor(1 - k, abs(float(c)), held)
    return construction.product(cells, label, *operands)


def _cell_layer(cells: Cells, previous: Decoding, own: Decoding) -> CellLayer:
    """The weights of ``cells``: each gate's pre-activation read from the previous layer's cells
    (its ``x`` terms) and from this layer's cells at the previous step (``h`` through ``own``, and
    ``cells``)."""
    n = len(cells.pres)
    weight_ih, weight_hh, bias = {}, {}, {}
    for gate in cells.gates:
        pres = [gates.get(gate, Pre()) for gates in cells.pres]
        x = Matrix(n, previous.matrix.rows, {(c, j): w for c, pre in enumerate(pres) for j, w in pre.x.items()})
        h = Matrix(n, own.matrix.rows, {(c, j): w for c, pre in enumerate(pres) for j, w in pre.h.items()})
        direct = Matrix(n, n, {(c, j): w for c, pre in enumerate(pres) for j, w in pre.cells.items()})
        weight_ih[gate], input_bias = previous.read(x, tuple(pre.bias for pre in pres))
        recurrent, recurrent_bias = own.read(h, (ZERO,) * n)
        weight_hh[gate] = recurrent + direct
        bias[gate] = tuple(add(u, v) for u, v in zip(input_bias, recurrent_bias))
    return CellLayer(weight_ih, weight_hh, bias, tuple(cells.labels), own)


# --- the error bound of the stock construction ---------------------------------------------------------------
# A state layer's errors are followed step by step up to here; one still growing beyond it, with
# more steps to come, has no bound (so lstm and gru compile in bounded time at any --max-len).
ITERATED_STEPS = 2**16


def error_bounds(model: LayeredModel, accuracy: Sequence[Sequence[Accuracy]], roundoff: float,
                 max_len: int) -> list[np.ndarray]:
    """Bounds on the error of every unit of every layer (the last layer's are the outputs'): each
    layer's errors from the errors of what it reads (``Accuracy``); a state layer's
    ``e_t = |A| e_{t-1} + (its units' errors)`` over ``max_len`` steps (docs/target-lstm-gru.md,
    "Error bound")."""
    error, errors = np.zeros(model.d_in), []
    with np.errstate(over="ignore", invalid="ignore"):
        for layer, units in zip(model.layers, accuracy):
            first = np.abs(layer.attrs["W"].dense()) @ error
            second = np.abs(layer.attrs["W2"].dense()) @ error if layer.kind == "gate" else np.zeros(layer.width)
            if layer.kind == "state":
                transition, error = np.abs(layer.attrs["A"].dense()), np.zeros(layer.width)
                for _ in range(min(max_len, ITERATED_STEPS)):
                    reads = transition @ error + first
                    following = np.array([u.error(r, 0.0, roundoff) for u, r in zip(units, reads)])
                    if np.array_equal(following, error):
                        break
                    error = following
                else:
                    if max_len > ITERATED_STEPS:  # still growing, and more steps to come: no bound
                        reads = transition @ error + first
                        following = np.array([u.error(r, 0.0, roundoff) for u, r in zip(units, reads)])
                        error = np.where(following == error, error, INF)
            else:
                error = np.array([u.error(f, s, roundoff) for u, f, s in zip(units, first, second)])
            error = np.nan_to_num(error, nan=INF, posinf=INF)
            errors.append(error)
    return errors


# --- the target ---------------------------------------------------------------------------------------------
class GatedRNNTarget(Target):
    bounded_length = True  # the stock construction's scales come from ranges over max_len steps
    variants = (STOCK, RELU)
    exact_alternatives = ("--variant relu (ReLU cells, exact)",)

    def __init__(self, cell: str):
        self.name = cell
        self.cell_class = {"lstm": "LSTM", "gru": "GRU"}[cell]
        self.description = (
            f"a stock torch.nn.{self.cell_class} with an nn.Linear readout (approximate, error bounded), "
            f"or --variant relu: the same cell with ReLU activations (exact)"
        )

    def build(self, model: LayeredModel, options: Options) -> Compiled:
        variant = options.variant or STOCK
        cells = cell_model(model, CONSTRUCTIONS[(self.name, variant)], layer_bounds(model, options))
        hidden = max(len(layer.labels) for layer in cells.layers)
        try:
            tensors = self._tensors(model, cells, hidden)
        except OverflowError:  # (a readout that divides out cell scales beyond what float64 holds)
            raise LsrlError(f"the {self.name} target's weights would need a number beyond float64's range") from None
        config = base_config(self, model, options)
        config[self.name] = {
            "input_size": model.d_in, "hidden_size": hidden, "num_layers": len(cells.layers), "batch_first": True,
        }
        config["readout"] = {"in_features": hidden, "out_features": model.d_out}
        config[f"{self.name}_units"] = [
            list(layer.labels) + [UNUSED] * (hidden - len(layer.labels)) for layer in cells.layers
        ]
        figures: dict[str, Any] = {
            "layers": len(cells.layers),
            "hidden_size": hidden,
            "max_width": hidden,
            "parameters": sum(t.size for t in tensors.values()),
            "used_units": sum(len(layer.labels) for layer in cells.layers),
            "variant": variant,
        }
        if variant == RELU:  # exact cells: what remains is the rounding of their sums, two per unit
            config["error_bound"] = stated_rounding(model, options, term_factor=2)
            return Compiled(self.name, config, tensors, {"model.py": relu_source(self.name)}, figures=figures)
        stated = {
            dtype: float(error_bounds(model, cells.accuracy, roundoff, options.max_len)[-1].max())
            for dtype, roundoff in UNIT_ROUNDOFF.items()
        }
        # the cells' construction error, plus the rounding of the sums they compute, which are the
        # layered model's (the construction's own analysis follows only the saturated gates)
        config["error_bound"] = stated_rounding(model, options, construction=stated)
        figures.update({f"error_bound_{dtype}": config["error_bound"][dtype] for dtype in stated})
        # cell layer k holds layer k (cell_model): for lsrl bench's interventions inside the module
        readings = [LayerReading(k, layer.values.matrix, layer.values.offset)
                    for k, layer in enumerate(cells.layers[: len(model.layers) - 1])]
        return Compiled(self.name, config, tensors, {}, figures=figures, readings=readings)

    def _tensors(self, model: LayeredModel, cells: CellModel, hidden: int) -> dict[str, np.ndarray]:
        gates = GATES[self.name]
        tensors = {}
        for k, layer in enumerate(cells.layers):
            width = model.d_in if k == 0 else hidden
            tensors[f"{self.name}.weight_ih_l{k}"] = _stacked_gates(layer.weight_ih, gates, hidden, width)
            tensors[f"{self.name}.weight_hh_l{k}"] = _stacked_gates(layer.weight_hh, gates, hidden, hidden)
            # The biases sit in bias_hh: torch adds bias_ih inside the input product (a fused
            # multiply-add), bias_hh after that product is rounded, as the program adds its
            # constants. The GRU multiplies b_hn by the reset gate: its cells with a candidate
            # bias hold that gate open.
            bias = {g: Matrix(len(v), 1, {(i, 0): x for i, x in enumerate(v)}) for g, v in layer.bias.items()}
            tensors[f"{self.name}.bias_ih_l{k}"] = np.zeros(len(gates) * hidden)
            tensors[f"{self.name}.bias_hh_l{k}"] = _stacked_gates(bias, gates, hidden, 1)[:, 0]
        readout = np.zeros((model.d_out, hidden))
        readout[:, : cells.readout_weight.cols] = cells.readout_weight.dense()
        tensors["readout.weight"] = readout
        tensors["readout.bias"] = np.array([float(b) for b in cells.readout_bias])
        return tensors

    def run(self, compiled: Compiled, inputs: np.ndarray, dtype: str) -> np.ndarray:
        import torch

        torch_dtype = getattr(torch, dtype)
        if compiled.config["variant"] == RELU:
            model = import_generated(compiled.files["model.py"]).Model(compiled.config).to(torch_dtype)
            forward = model
        else:
            model = stock_modules(compiled.config, torch_dtype)
            forward = lambda x: model["readout"](model[self.name](x)[0])  # noqa: E731
        model.load_state_dict({name: torch.as_tensor(value) for name, value in compiled.tensors.items()})
        with torch.no_grad():
            return forward(torch.from_numpy(inputs).to(torch_dtype)).double().numpy()


def _stacked_gates(per_gate: Mapping[str, Matrix], gates: Sequence[str], hidden: int, width: int) -> np.ndarray:
    """The gates' matrices one above the other, each padded to ``hidden`` rows and ``width`` columns."""
    out = np.zeros((len(gates) * hidden, width))
    for k, gate in enumerate(gates):
        block = per_gate[gate].dense()
        out[k * hidden : k * hidden + block.shape[0], : block.shape[1]] = block
    return out


def stock_modules(config: Mapping[str, Any], dtype: Any = None):
    """``nn.ModuleDict({"lstm": nn.LSTM(...), "readout": nn.Linear(...)})`` (``"gru"`` for the GRU)
    from a compiled stock model's config: its ``state_dict`` names are those of model.safetensors."""
    import torch

    cell = config["target"]
    cell_class = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
    modules = torch.nn.ModuleDict({cell: cell_class(**config[cell]), "readout": torch.nn.Linear(**config["readout"])})
    return modules.to(dtype) if dtype is not None else modules


# --- the relu variant's module source --------------------------------------------------------------------
RELU_SOURCE = '''\
"""A ReLU {cell_class}, compiled by lsrl: torch.nn.{cell_class}'s equations with ReLU in place of
sigmoid and tanh (the LSRL paper's construction), and a Linear readout. Needs torch (and
safetensors for load).

    model = load("DIR")        # DIR holds config.json and model.safetensors
    outputs = model(inputs)    # [batch, time, input_size] -> [batch, time, output_size]

{equations}
Relu{cell_class} has the constructor arguments, parameter names and shapes of
torch.nn.{cell_class} (batch_first=True only); it starts from zero states.
"""

import json
from pathlib import Path

import torch
from torch import nn


class Relu{cell_class}(nn.Module):
    gates = {gate_count}

    def __init__(self, input_size, hidden_size, num_layers=1, batch_first=True):
        super().__init__()
        if not batch_first:
            raise ValueError("Relu{cell_class} takes batch_first=True inputs only")
        self.hidden_size, self.num_layers = hidden_size, num_layers
        for layer in range(num_layers):
            width = input_size if layer == 0 else hidden_size
            rows = self.gates * hidden_size
            self.register_parameter(f"weight_ih_l{{layer}}", nn.Parameter(torch.zeros(rows, width)))
            self.register_parameter(f"weight_hh_l{{layer}}", nn.Parameter(torch.zeros(rows, hidden_size)))
            self.register_parameter(f"bias_ih_l{{layer}}", nn.Parameter(torch.zeros(rows)))
            self.register_parameter(f"bias_hh_l{{layer}}", nn.Parameter(torch.zeros(rows)))

    def forward(self, x):
        """x: [batch, time, input_size] -> (outputs [batch, time, hidden_size], final states)."""
        finals = []
        for layer in range(self.num_layers):
            weight_hh = getattr(self, f"weight_hh_l{{layer}}")
            bias_hh = getattr(self, f"bias_hh_l{{layer}}")
            # the input terms of every step at once; only the recurrent terms need the loop
            driven = x @ getattr(self, f"weight_ih_l{{layer}}").T + getattr(self, f"bias_ih_l{{layer}}")
            {init}
            outputs = []
            for t in range(x.shape[1]):
                recurrent = state @ weight_hh.T + bias_hh
{step}
                outputs.append(state)
            x = torch.stack(outputs, dim=1)
            finals.append({final})
        return x, {finals}


class Model(nn.Module):
    """Relu{cell_class} then the Linear readout; state_dict names {cell}.* and readout.*."""

    def __init__(self, config):
        super().__init__()
        self.{cell} = Relu{cell_class}(**config["{cell}"])
        self.readout = nn.Linear(**config["readout"])

    def forward(self, inputs):
        return self.readout(self.{cell}(inputs)[0])


def load(directory):
    """The model in ``directory`` (config.json and model.safetensors), in float64."""
    from safetensors.torch import load_file

    directory = Path(directory)
    model = Model(json.loads((directory / "config.json").read_text())).double()
    model.load_state_dict(load_file(str(directory / "model.safetensors")))
    return model
'''

RELU_CELLS = {
    "lstm": {
        "equations": (
            "Each layer, from h = c = 0, per step (x_t the previous layer's output):\n\n"
            "    i, f, g, o = relu(W_ih x_t + b_ih + W_hh h + b_hh), split in four\n"
            "    c = f * c + i * g\n"
            "    h = o * relu(c)\n"
        ),
        "init": "state = cell = x.new_zeros(x.shape[0], self.hidden_size)",
        "step": (
            "                i, f, g, o = torch.relu(driven[:, t] + recurrent).chunk(4, dim=1)\n"
            "                cell = f * cell + i * g\n"
            "                state = o * torch.relu(cell)"
        ),
        "final": "(state, cell)",
        "finals": "(torch.stack([h for h, _ in finals]), torch.stack([c for _, c in finals]))",
    },
    "gru": {
        "equations": (
            "Each layer, from h = 0, per step (x_t the previous layer's output):\n\n"
            "    r_x, z_x, n_x = W_ih x_t + b_ih, split in three;  r_h, z_h, n_h = W_hh h + b_hh\n"
            "    r = relu(r_x + r_h);  z = relu(z_x + z_h);  n = relu(n_x + r * n_h)\n"
            "    h = (1 - z) * n + z * h\n"
        ),
        "init": "state = x.new_zeros(x.shape[0], self.hidden_size)",
        "step": (
            "                r_x, z_x, n_x = driven[:, t].chunk(3, dim=1)\n"
            "                r_h, z_h, n_h = recurrent.chunk(3, dim=1)\n"
            "                r, z = torch.relu(r_x + r_h), torch.relu(z_x + z_h)\n"
            "                n = torch.relu(n_x + r * n_h)\n"
            "                state = (1 - z) * n + z * state"
        ),
        "final": "state",
        "finals": "torch.stack(finals)",
    },
}


def relu_source(cell: str) -> str:
    """The ``model.py`` of the relu variant of ``cell``."""
    return RELU_SOURCE.format(cell=cell, cell_class=cell.upper(), gate_count=len(GATES[cell]), **RELU_CELLS[cell])


TARGETS = {"lstm": GatedRNNTarget("lstm"), "gru": GatedRNNTarget("gru")}
