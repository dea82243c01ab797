"""The standard library, written once for both front ends, with LSRL's semantics and defaults.

Each function takes runtime values (:class:`~lsrl.builder.Value`) and compile-time numbers, and
builds its nodes inside a scope named after itself, so that every unit of a compiled model can be
traced back to the library function that made it. The ``.lsrl`` language exposes these functions
under the same names (``not``, ``and``, ``or`` without the trailing underscore).
"""

from __future__ import annotations

from fractions import Fraction

from lsrl.builder import Program, Value, is_number, ramp, relu, select
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import ZERO, inverse, number

SCALE = 1000
BIG = 10**10


def step(x: Value, scale: object = SCALE) -> Value:
    """0 for x <= 0, 1 for x >= 1/scale, linear in between: LSRL's
    ``relu(scale*x) - scale*relu(x - 1/scale)``, built as one ``step`` node.

    The node keeps the comparison visible to the passes: where the range analysis proves that x
    takes values on a lattice none of which lies strictly inside the ramp, ``passes.constants``
    moves the ramp to the middle of the gap between lattice points (the same value at every
    lattice point, small weights, and a margin against rounding) before the node becomes two ReLUs.
    """
    _positive(x, scale, "step")
    return ramp(x, ZERO, inverse(number(scale)))  # the node is named "step" after its kind


def bump(x: Value, low: object, high: object, scale: object = SCALE) -> Value:
    """1 on (low, high], 0 outside (up to 1/scale): step(x - low) - step(x - high)."""
    with x.program.scope("bump"):
        return step(x - low, scale) - step(x - high, scale)


def larger(x: Value | object, y: Value | object, scale: object = SCALE) -> Value:
    with _program(x, y).scope("larger"):
        return step(_difference(x, y), scale)


def smaller(x: Value | object, y: Value | object, scale: object = SCALE) -> Value:
    with _program(x, y).scope("smaller"):
        return step(_difference(y, x), scale)


def eq(x: Value | object, y: Value | object, scale: object = SCALE) -> Value:
    """1 where x == y (up to 1/scale), else 0: LSRL's f_eq."""
    with _program(x, y).scope("eq"):
        return step(-(step(_difference(x, y), scale) + step(_difference(y, x), scale) - 1), scale)


def neq(x: Value | object, y: Value | object, scale: object = SCALE) -> Value:
    """1 where x != y (up to 1/scale), else 0: LSRL's f_neq."""
    with _program(x, y).scope("neq"):
        return step(step(_difference(x, y), scale) + step(_difference(y, x), scale), scale)


def not_(x: Value) -> Value:
    with x.program.scope("not"):
        return 1 - x


def and_(x: Value, y: Value, scale: object = SCALE) -> Value:
    with _program(x, y).scope("and"):
        return relu(step(x, scale) + step(y, scale) - 1)


def or_(x: Value, y: Value, scale: object = SCALE) -> Value:
    with _program(x, y).scope("or"):
        return step(x + y, scale)


def _is_zero(v: object) -> bool:
    return is_number(v) and number(v) == 0


def _select(gate_off: Value, value: object, big: object) -> Value | None:
    """``relu(-big*gate_off + v) - relu(-big*gate_off - v)``: v where gate_off is 0, else 0
    (|v| < big), as one ``select`` node. A number 0 gives None: LSRL leaves such a branch out."""
    if _is_zero(value):
        return None
    return select(gate_off, value, number(big))


def _sum(terms: list[Value | None], like: Value) -> Value:
    present = [t for t in terms if t is not None]
    if not present:
        return like * 0
    total = present[0]
    for t in present[1:]:
        total = total + t
    return total


def ifelse(c: Value, t: object, f: object, big: object = BIG) -> Value:
    """t where c is 1, f where c is 0: LSRL's four-ReLU conditional (needs |t|, |f| < big)."""
    with c.program.scope("ifelse"):
        dim = _branch_dim(c, t, f)
        return _sum([_select(c, f, big), None if _is_zero(t) else _select(not_(c), t, big)], c._broadcast(dim))


def ifelse_step(c: Value, t: object, f: object, big: object = BIG, scale: object = SCALE) -> Value:
    """LSRL's step-based conditional: the branch is chosen by step(c - 1/2)."""
    with c.program.scope("ifelse_step"):
        dim = _branch_dim(c, t, f)
        b = number(big)
        f_off = 1 - step(Fraction(1, 2) - c, scale) if not _is_zero(f) else None
        t_off = 1 - step(c - Fraction(1, 2), scale) if not _is_zero(t) else None
        terms = [
            _select(f_off, f, b) if f_off is not None else None,
            _select(t_off, t, b) if t_off is not None else None,
        ]
        return _sum(terms, c._broadcast(dim))


def ifelse_mul(c: Value, t: object, f: object) -> Value:
    """c*t + (1-c)*f with multiplicative gates."""
    with c.program.scope("ifelse_mul"):
        dim = _branch_dim(c, t, f)
        terms = [None if _is_zero(t) else c * t, None if _is_zero(f) else not_(c) * f]
        return _sum(terms, c._broadcast(dim))


def ifeq(x: Value | object, y: Value | object, t: object, f: object, scale: object = SCALE, big: object = BIG) -> Value:
    with _program(x, y).scope("ifeq"):
        return ifelse(eq(x, y, scale), t, f, big)


def counter(program: Program) -> Value:
    """0, 1, 2, ...: a state that starts at -1 and adds 1 each step."""
    with program.scope("counter"):
        return program.state(-1, lambda prev: prev + 1, dim=1)


def mod_counter(program: Program, n: object) -> Value:
    """0, 1, ..., n-1, 0, ...

    LSRL rotates a 2-d unit vector by 2*pi/n and reads the position with n thresholds; its weights
    are irrational for most n, so it cannot run exactly, and its threshold gap shrinks like 1/n^2.
    Here a one-hot vector of n units is cycled by a permutation (the rational canonical form of the
    same rotation group) and read with one linear map: exact, with no non-linearity at all.
    """
    if not (is_number(n) and number(n) == int(number(n)) and int(number(n)) >= 1):
        raise program.error(f"mod_counter needs a positive integer, got {n}")
    size = int(number(n))
    with program.scope("mod_counter"):
        cycle = Matrix.selection(size, size, (((k + 1) % size, k) for k in range(size)))
        init = [0] * size
        init[size - 1] = 1  # one step before position 0: the first step rotates it to 0
        one_hot = program.linear_state([], cycle, [], init)
        return program.affine([(Matrix.from_rows([list(range(size))]), one_hot)], (0,))


def accumulate(x: Value) -> Value:
    """The running sum of x."""
    with x.program.scope("accumulate"):
        return x.program.state(0, lambda prev: prev + x, dim=x.dim)


def delay(x: Value, k: object) -> Value:
    """x from k steps ago, 0 before the start: a shift register of k+1 slots."""
    p = x.program
    if not (is_number(k) and number(k) == int(number(k)) and int(number(k)) >= 0):
        raise p.error(f"delay needs a non-negative integer, got {k}")
    steps = int(number(k))
    if steps == 0:
        return x
    d = x.dim
    with p.scope("delay"):
        slots = (steps + 1) * d
        shift = Matrix.selection(slots, slots, ((i + d, i) for i in range(slots - d)))
        write = Matrix.selection(slots, d, ((i, i) for i in range(d)))
        register = p.linear_state(x, shift, write, [0] * slots)
        return register[steps * d :]


# --- helpers ----------------------------------------------------------------------------------------
def _program(*xs: object) -> Program:
    for x in xs:
        if isinstance(x, Value):
            return x.program
    raise TypeError("this function needs at least one runtime value")


def _difference(x: object, y: object) -> Value:
    if isinstance(x, Value):
        return x - y
    return -(y - x)  # type: ignore[operator]


def _positive(x: object, scale: object, what: str) -> None:
    if not isinstance(x, Value):
        raise TypeError(f"{what} needs a runtime value")
    if not is_number(scale) or number(scale) <= 0:
        raise x.program.error(f"{what}: scale must be a positive number, got {scale}")


def _branch_dim(c: Value, t: object, f: object) -> int:
    dims = [v.dim for v in (c, t, f) if isinstance(v, Value)]
    dims += [len(v) for v in (t, f) if not isinstance(v, Value) and not is_number(v)]  # type: ignore[arg-type]
    return max(dims)
