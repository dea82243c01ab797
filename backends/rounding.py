"""The rounding analysis: how far a float computation of the layered model can be from the exact one.

Targets that compute the layered model's own arithmetic (``torch``, ``jax``, and through their
stacked forms ``linear-rnn`` and ``rnn``) state, per output unit and dtype, a bound on
``|computed - exact|`` for every input in the options' range and every sequence of at most
``max_len`` steps. The bound is sound whatever order the float sums are taken in (a matrix
product, a cumulative sum, a sequential loop), since it rests on the order-free bound of a sum of
n terms, ``|fl(sum) - sum| <= gamma_n sum |terms|`` with ``gamma_n = n u / (1 - n u)``, plus an
absolute ``n * TINY`` per sum for results that leave the normal range.

Exactness is what makes integer programs provable: a sum of terms that are all multiples of
``2^k`` and whose magnitudes add up to less than ``2^(p + k)`` (p = 24 significant bits in float32,
53 in float64) is computed exactly in any order, since every partial sum is then a representable
number. The range analysis gives each value's lattice (``passes.lattice``); a layer unit whose
weights the dtype holds exactly, whose inputs are exact, and whose terms lie on dyadic lattices of
bounded size is exact, and so is its ReLU. Otherwise errors propagate:

- a sum: the errors of its inputs times the weights' magnitudes, the weights' own rounding times
  the inputs' magnitudes, and the sum's rounding;
- a ReLU: its argument's error (it is 1-Lipschitz);
- a product ``a b``: ``|a| e_b + |b| e_a + e_a e_b`` and one rounding;
- a state ``h_t = A h_{t-1} + d_t``: the recurrence of the errors over ``max_len`` steps, and for
  running sums also the order-free bound of a cumulative sum of ``max_len`` drives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from gmpy2 import mpq
from lsrl.backends.layer_ranges import LayerBounds, input_bounds, layer_bounds
from lsrl.backends.target import Options, stated_bounds
from lsrl.ir.heads import HEAD_OF_KIND, NO_QUERY, MatrixHead, decode
from lsrl.ir.layered import IDENTITY, LayeredModel
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import ZERO, Number, is_exact
from lsrl.passes.lattice import Lattice, product
from lsrl.passes.ranges import INF, Interval, gated_interval, gated_lattice

SIGNIFICANT_BITS = {"float32": 24, "float64": 53}
TINY = {"float32": 2.0**-126, "float64": 2.0**-1022}  # the smallest normal number: what flushing to zero loses
NUMPY_DTYPE = {"float32": np.float32, "float64": np.float64}
ITERATED_STEPS = 4096  # longer error recurrences are solved by repeated squaring, not step by step
# A float function (exp, sigmoid, ...) is within this many unit roundoffs of its exact value, as
# those of torch and XLA are (4 ulps), and its slope is at most (elsewhere: largest_slope):
FUNCTION_ROUNDING = 8
SLOPES = {"sigmoid": 0.25, "softplus": 1.0, "silu": 1.1, "tanh": 1.0}


@dataclass(frozen=True)
class Values:
    """What the analysis knows of a vector of units: the magnitude bound, the error bound and
    whether each is computed exactly (then also on the lattice, for the next sums)."""

    magnitude: np.ndarray
    error: np.ndarray
    exact: np.ndarray  # bool
    lattices: tuple[Lattice | None, ...]


def rounding_bounds(model: LayeredModel, options: Options, dtype: str, term_factor: int = 1) -> list[float]:
    """Per output unit of ``model``: a bound on the error of computing it in ``dtype`` (inf where
    a value it depends on is unbounded). ``term_factor``: each sum of the target's has up to this
    many times the layered model's terms (the ``rnn`` target reads each state unit as two)."""
    return _Analysis(model, options, dtype, term_factor).run()


class _Analysis:
    def __init__(self, model: LayeredModel, options: Options, dtype: str, term_factor: int):
        self.model, self.options, self.dtype, self.term_factor = model, options, dtype, term_factor
        self.p = SIGNIFICANT_BITS[dtype]
        self.u = 2.0 ** -self.p
        self.tiny = TINY[dtype]
        self.steps = options.max_len

    @np.errstate(over="ignore", invalid="ignore")  # unbounded values give inf and nan: no bound
    def run(self) -> list[float]:
        start = input_bounds(self.model, self.options)
        magnitude = _magnitudes(start.values)
        representable = np.array([
            lattice is not None and lattice.is_integer and m < 2.0**self.p for lattice, m in zip(start.lattices, magnitude)
        ], dtype=bool)
        # an input is read exactly, then converted to float64 and to the dtype: two roundings at most
        error = np.where(representable, 0.0, 2 * self.u * magnitude)
        x = Values(magnitude, error, representable, start.lattices)
        for layer, bounds in zip(self.model.layers, layer_bounds(self.model, self.options)):
            if layer.kind in HEAD_OF_KIND:
                x = self._heads(layer.kind, layer.attrs, bounds, x)
            else:
                x = getattr(self, f"_{layer.kind}")(layer.attrs, bounds, x)
        return [float(e) if np.isfinite(e) else INF for e in x.error]  # nan: from an unbounded value

    # --- layers ---------------------------------------------------------------------------
    def _affine(self, attrs: dict, bounds: LayerBounds, x: Values) -> Values:
        return self._sum(attrs["W"], attrs["b"], x, bounds.values, bounds.lattices)

    def _relu(self, attrs: dict, bounds: LayerBounds, x: Values) -> Values:
        pre = self._sum(attrs["W"], attrs["b"], x, bounds.operands[0], bounds.operand_lattices[0])
        return Values(_magnitudes(bounds.values), pre.error, pre.exact, bounds.lattices)

    def _map(self, attrs: dict, bounds: LayerBounds, x: Values) -> Values:
        """A float function passes its argument's error times its largest slope around the
        argument's range, and adds its own rounding (FUNCTION_ROUNDING); the identity passes the
        error unchanged."""
        pre = self._sum(attrs["W"], attrs["b"], x, bounds.operands[0], bounds.operand_lattices[0])
        magnitude = _magnitudes(bounds.values)
        error = pre.error.copy()
        for u, function in enumerate(attrs["functions"]):
            if function != IDENTITY:
                reach = bounds.operands[0][u]
                slope = largest_slope(function, float(reach.lo) - pre.error[u], float(reach.hi) + pre.error[u])
                error[u] = slope * pre.error[u] + FUNCTION_ROUNDING * self.u * magnitude[u] + self.tiny
        exact = pre.exact & np.array([f == IDENTITY for f in attrs["functions"]], dtype=bool)
        return Values(magnitude, np.where(exact, 0.0, error), exact, bounds.lattices)

    def _gated(self, attrs: dict, bounds: LayerBounds, x: Values) -> Values:
        """``h_t = a_t h_{t-1} + b_t``: exact where its terms are (as a state's), else the error
        ``e_t = |a| e_{t-1} + |h| e_a + e_b + rounding`` over ``max_len`` steps."""
        gate = self._sum(attrs["W2"], attrs["b2"], x, bounds.operands[0], bounds.operand_lattices[0])
        drive = self._sum(attrs["W"], attrs["b"], x, bounds.operands[1], bounds.operand_lattices[1])
        magnitude = _magnitudes(bounds.values)
        init_error = np.array([self._representation_error(v) for v in attrs["init"]])
        exact = gate.exact & drive.exact & (init_error == 0) & np.array([
            self._exact_terms([bounds.lattices[u], product(bounds.lattices[u], gate.lattices[u]), drive.lattices[u]],
                              gate.magnitude[u] * magnitude[u] + drive.magnitude[u])
            for u in range(len(magnitude))
        ], dtype=bool)
        # e_t = g e_{t-1} + c, g = |a| (1 + gamma_3) (gamma_3: a product and a sum, three terms)
        gamma = _gamma(3, self.u)
        growth = gate.magnitude * (1 + gamma) + gate.error
        constant = magnitude * gate.error + drive.error + gamma * (gate.magnitude * magnitude + drive.magnitude) + 3 * self.tiny
        error = _affine_recurrence(growth, constant, init_error, self.steps)
        return Values(magnitude, np.where(exact, 0.0, error), exact, bounds.lattices)

    def _heads(self, kind: str, attrs: dict, bounds: LayerBounds, x: Values) -> Values:
        """A matrix, delta or solve layer: its units that pass ``W x + b`` through are sums; the
        units its heads fill are exact where ``_matrix_head_exact`` proves it, and have no bound
        otherwise (products summed over time, a runtime transition, an inverse)."""
        pre = self._sum(attrs["W"], attrs["b"], x, bounds.operands[0], bounds.operand_lattices[0])
        error, exact = pre.error.copy(), pre.exact.copy()
        for head in decode(kind, attrs["heads"]):
            proven = isinstance(head, MatrixHead) and self._matrix_head_exact(head, pre, bounds.operands[0])
            error[list(head.outputs)], exact[list(head.outputs)] = (0.0, True) if proven else (INF, False)
        return Values(_magnitudes(bounds.values), error, exact, bounds.lattices)

    def _matrix_head_exact(self, head: MatrixHead, pre: Values, intervals: Sequence[Interval]) -> bool:
        """Whether the dtype computes a matrix head exactly: its operands exact, and every step's
        ``d_i S_ij + k_i v_j`` and every read ``sum_i q_i S_ij`` a sum of numbers on lattices
        that it adds exactly (``_exact_terms``), with the entries' bounds and lattices those of
        the range analysis's rule for a matrix state."""
        decays = [head.decay + (0 if head.decays == 1 else i) for i in range(head.keys)]
        keys = [head.key + i for i in range(head.keys)]
        values = [head.value + j for j in range(head.values)]
        queries = [head.query + i for i in range(head.keys)] if head.query != NO_QUERY else []
        if not all(pre.exact[u] for u in decays + keys + values + queries):
            return False
        lattices, magnitude = pre.lattices, _magnitudes(intervals)
        reads = [[] for _ in values]  # per column j: (lattice, magnitude) of each q_i S_ij
        for d, k in zip(decays, keys):
            for j, v in enumerate(values):
                written = product(lattices[k], lattices[v])
                entry = gated_lattice(lattices[d], written, ZERO)
                bound = _magnitudes([gated_interval(intervals[d], intervals[k] * intervals[v], ZERO, self.steps)])[0]
                if not self._exact_terms([product(lattices[d], entry), written],
                                         magnitude[d] * bound + magnitude[k] * magnitude[v]):
                    return False
                if queries:
                    q = queries[keys.index(k)]
                    reads[j].append((product(lattices[q], entry), magnitude[q] * bound))
        return all(self._exact_terms([l for l, _ in terms], sum(m for _, m in terms)) for terms in reads if terms)

    def _gate(self, attrs: dict, bounds: LayerBounds, x: Values) -> Values:
        a = self._sum(attrs["W"], attrs["b"], x, bounds.operands[0], bounds.operand_lattices[0])
        b = self._sum(attrs["W2"], attrs["b2"], x, bounds.operands[1], bounds.operand_lattices[1])
        magnitude = _magnitudes(bounds.values)
        exact = a.exact & b.exact & np.array([self._exact_terms([lattice], m) for lattice, m in zip(bounds.lattices, magnitude)])
        error = a.magnitude * b.error + b.magnitude * a.error + a.error * b.error
        rounding = self.u * (a.magnitude + a.error) * (b.magnitude + b.error) + self.tiny
        return Values(magnitude, np.where(exact, 0.0, error + rounding), exact, bounds.lattices)

    def _state(self, attrs: dict, bounds: LayerBounds, x: Values) -> Values:
        drive = self._sum(attrs["W"], attrs["b"], x, bounds.drive, bounds.drive_lattices)
        transition, init = attrs["A"], attrs["init"]
        magnitude = _magnitudes(bounds.values)
        init_error = np.array([self._representation_error(v) for v in init])
        rows = transition.row_items()
        exact = np.array([
            drive.exact[i] and init_error[i] == 0 and all(self._weight_error(w) == 0 for _, w in row)
            and self._exact_terms(
                [bounds.lattices[i], *(_scaled(bounds.lattices[k], w) for k, w in row), bounds.drive_lattices[i]],
                self._state_magnitude(row, i, magnitude, drive, init),
            )
            for i, row in enumerate(rows)
        ], dtype=bool)
        if exact.all():
            return Values(magnitude, np.zeros(len(init)), exact, bounds.lattices)
        error = np.maximum(self._recurrence(transition, drive, magnitude, init_error),
                           self._running_sums(rows, drive, init, init_error))
        return Values(magnitude, np.where(exact, 0.0, error), exact, bounds.lattices)

    # --- sums ---------------------------------------------------------------------------------
    def _sum(self, weight: Matrix, bias: Sequence[Number], x: Values, values: Sequence[Interval],
             lattices: Sequence[Lattice | None]) -> Values:
        """``W x + b`` computed in the dtype: its magnitude, error and exactness per row."""
        rows = weight.row_items()
        magnitude = np.zeros(len(rows))
        error = np.zeros(len(rows))
        exact = np.zeros(len(rows), dtype=bool)
        for i, row in enumerate(rows):
            terms = [abs(float(w)) * (x.magnitude[j] + x.error[j]) for j, w in row] + [abs(float(bias[i]))]
            total = sum(terms)
            magnitude[i] = sum(abs(float(w)) * x.magnitude[j] for j, w in row) + abs(float(bias[i]))
            carried = sum(abs(float(w)) * x.error[j] + self._weight_error(w) * x.magnitude[j] for j, w in row)
            own = self._representation_error(bias[i])
            exact[i] = (
                carried == 0 and own == 0 and all(x.exact[j] for j, _ in row)
                and self._exact_terms([lattices[i], *(_scaled(x.lattices[j], w) for j, w in row), Lattice.point(bias[i])], total)
            )
            if not exact[i]:
                n = self.term_factor * len(row) + 1
                error[i] = carried + own + _gamma(n, self.u) * total + n * self.tiny
        if values:
            magnitude = np.minimum(magnitude, _magnitudes(values))
        return Values(magnitude, error, exact, tuple(lattices))

    def _exact_terms(self, lattices: Sequence[Lattice | None], total: float) -> bool:
        """Whether numbers on these lattices, whose magnitudes add up to ``total``, are added
        exactly in any order: all multiples of some 2^k, and ``total < 2^(p + k)``."""
        k = INF
        for lattice in lattices:
            if lattice is None:
                return False
            for number in (lattice.offset, lattice.step):
                valuation = _dyadic_valuation(number)
                if valuation is None:
                    return False
                k = min(k, valuation)
        return total < 2.0 ** (self.p + min(k, 1023 - self.p))

    def _state_magnitude(self, row: list, i: int, magnitude: np.ndarray, drive: Values, init: Sequence[Number]) -> float:
        """What the sums of a state unit's update add up to: ``sum |A_ik| |h_k| + |d_i|``; for a
        running sum (its row of A is the unit vector), whose every sum is a value of the unit, its
        bound, or the ``max_len`` drives and the start that a cumulative sum in any order adds."""
        if row == [(i, 1)]:
            return max(magnitude[i], self.steps * drive.magnitude[i] + abs(float(init[i])))
        return sum(abs(float(w)) * magnitude[k] for k, w in row) + drive.magnitude[i]

    def _recurrence(self, transition: Matrix, drive: Values, magnitude: np.ndarray, init_error: np.ndarray) -> np.ndarray:
        """The largest error over ``max_len`` steps of ``e_t = |A| e_{t-1} + e_A H + e_d + rounding``."""
        rows, cols, weights, weight_errors = [], [], [], []
        for i, row in enumerate(transition.row_items()):
            for k, w in row:
                rows.append(i)
                cols.append(k)
                weights.append(abs(float(w)))
                weight_errors.append(self._weight_error(w))
        rows_a, cols_a = np.array(rows, dtype=int), np.array(cols, dtype=int)
        weights_a, errors_a = np.array(weights), np.array(weight_errors)
        n = len(magnitude)
        terms = self.term_factor * np.bincount(rows_a, minlength=n) + 1

        def apply(values: np.ndarray, vector: np.ndarray) -> np.ndarray:
            return np.bincount(rows_a, weights=values * vector[cols_a], minlength=n) if len(rows_a) else np.zeros(n)

        gamma = np.array([_gamma(int(t), self.u) for t in terms])
        # e_t = |A| e_{t-1} + gamma (|A| (H + e_{t-1}) + D + e_d) + fixed: linear in e_{t-1}, with
        # nonnegative coefficients, so e_t grows with t and the largest is e_T
        growth = weights_a * (1 + gamma[rows_a]) if len(rows_a) else weights_a
        constant = apply(errors_a, magnitude) + drive.error + terms * self.tiny
        constant += gamma * (apply(weights_a, magnitude) + drive.magnitude + drive.error)
        if self.steps <= ITERATED_STEPS:
            error = init_error.copy()
            for _ in range(self.steps):
                error = apply(growth, error) + constant
        else:  # (e, 1) -> (M e + c, 1), raised to the power max_len by squaring
            step = np.zeros((n, n))
            np.add.at(step, (rows_a, cols_a), growth)
            affine = np.block([[step, constant[:, None]], [np.zeros((1, n)), np.ones((1, 1))]])
            power = np.linalg.matrix_power(affine, self.steps)
            error = power[:n, :n] @ init_error + power[:n, n]
        return np.nan_to_num(np.maximum(error, init_error), nan=INF)

    def _running_sums(self, rows: list, drive: Values, init: Sequence[Number], init_error: np.ndarray) -> np.ndarray:
        """A running sum computed as a cumulative sum in any order: ``max_len`` drives and the start."""
        n = self.steps + 1
        out = np.zeros(len(rows))
        for i, row in enumerate(rows):
            if row == [(i, 1)]:
                total = abs(float(init[i])) + self.steps * (drive.magnitude[i] + drive.error[i])
                out[i] = init_error[i] + self.steps * drive.error[i] + _gamma(n, self.u) * total + n * self.tiny
        return out

    # --- numbers ------------------------------------------------------------------------------
    def _representation_error(self, value: Number) -> float:
        """|value - value as the dtype holds it| (through float64, as the weights are written)."""
        as_float = float(value)
        held = float(NUMPY_DTYPE[self.dtype](as_float))
        if is_exact(value):
            return float(abs(mpq(value) - mpq(held)))
        return abs(as_float - held)

    _weight_error = _representation_error


def _affine_recurrence(growth: np.ndarray, constant: np.ndarray, start: np.ndarray, steps: int) -> np.ndarray:
    """The largest ``e_t`` over ``t <= steps`` of ``e_t = growth e_{t-1} + constant`` (elementwise,
    nonnegative, so the largest is the last), in closed form."""
    with np.errstate(all="ignore"):
        power = growth ** steps
        geometric = np.where(growth == 1, float(steps), (power - 1) / np.where(growth == 1, 1.0, growth - 1))
        return np.maximum(start, power * start + constant * geometric)


def largest_slope(function: str, lo: float, hi: float) -> float:
    """The largest |f'| of a float function over [lo, hi] (inf where it is unbounded there)."""
    with np.errstate(all="ignore"):
        if function == "exp":
            return math.exp(hi) if hi < 709 else INF
        if function in ("log", "sqrt", "rsqrt"):
            if lo <= 0:
                return INF
            return {"log": 1 / lo, "sqrt": 0.5 / math.sqrt(lo), "rsqrt": 0.5 * lo ** -1.5}[function]
    return SLOPES[function]


def _gamma(n: int, u: float) -> float:
    return n * u / (1 - n * u) if n * u < 1 else INF


def _magnitudes(values: Sequence[Interval]) -> np.ndarray:
    return np.array([max(abs(float(v.lo)), abs(float(v.hi))) for v in values], dtype=np.float64)


def _scaled(lattice: Lattice | None, weight: Number) -> Lattice | None:
    return None if lattice is None else lattice.scaled(weight)


def _dyadic_valuation(number: mpq) -> float | None:
    """The k with number = odd * 2^k (inf for 0), or None where the denominator is not a power of 2."""
    if number == 0:
        return INF
    numerator, denominator = int(number.numerator), int(number.denominator)
    if denominator & (denominator - 1):
        return None
    return (abs(numerator) & -abs(numerator)).bit_length() - 1 - (denominator.bit_length() - 1)


def stated_rounding(model: LayeredModel, options: Options, term_factor: int = 1,
                    construction: dict[str, float] | None = None) -> dict:
    """``config["error_bound"]`` of a target that computes ``model``'s arithmetic: the largest
    bound per dtype, what it assumes, and the bound of every output unit (None: unbounded).
    ``construction``: a bound per dtype that the target's own construction adds to every output."""
    per_output = {
        dtype: [b + (construction or {}).get(dtype, 0.0) for b in rounding_bounds(model, options, dtype, term_factor)]
        for dtype in SIGNIFICANT_BITS
    }
    stated = stated_bounds({dtype: max(bounds, default=0.0) for dtype, bounds in per_output.items()}, options)
    stated["outputs"] = {dtype: [None if b == INF else b for b in bounds] for dtype, bounds in per_output.items()}
    return stated
