"""fit_constants: the library's comparisons and conditionals rebuilt with constants that fit the
values they actually see.

LSRL's ``step`` ramps over ``[0, 1/scale]`` with ``scale = 1000`` and its conditionals add
``big = 1e10`` times a condition: constants chosen for continuous inputs. Nested comparisons
multiply them (1e6, 1e9 once ``balance_relus`` folds a reader's scale into the ReLUs), which
float32, with 24 significant bits, cannot hold. Where the range analysis (``passes.ranges``)
proves that an operand lives on a lattice (integer tokens, counts, sums of 0/1 conditions), the
node only ever sees the lattice's points, and other constants give the same value at every one:

- ``step`` (low, high): where no reachable point lies strictly inside the ramp, the ramp moves to
  the middle third of the gap between the points on either side, ``(p + s/3, p + 2s/3)`` for
  points ``p`` and ``p + s``: the same 0 and 1 at every point, a slope of ``3/s`` instead of
  ``scale``, and a margin of ``s/3`` on both sides, so that a rounding error in the operand below
  ``s/3`` no longer reaches the output. Expanded (``passes.expand``), the step is
  ``relu(3k - 1) - relu(3k - 2)`` at the point ``p + k s``: integer arguments, so that integer
  programs stay integer all the way through;
- ``select`` (big): where the condition's nonzero points are at least ``m`` in magnitude and the
  value is bounded by ``V``, any ``big >= V/m`` gives the same result; the pass takes the power
  of two at or above ``2 V / m`` (a margin of V), when that is smaller than the program's big.

Nodes are changed in place (id, name, location and labels kept); every other node is untouched.
Exact mode therefore gives identical outputs on every input the ranges were computed for.
"""

from __future__ import annotations

import math

from gmpy2 import mpq
from lsrl.ir.graph import Graph
from lsrl.ir.numbers import Number, mul
from lsrl.passes import lattice as lat
from lsrl.passes.lattice import Lattice
from lsrl.passes.ranges import INF, Interval, Ranges, select_needs


def fit_constants(graph: Graph, ranges: Ranges) -> Graph:
    """A copy of ``graph`` whose step and select nodes use the constants fitted to ``ranges``
    (the range analysis of ``graph`` for the inputs the model will see)."""
    out = graph.copy()
    for node in out:
        if node.kind == "step":
            operand = node.operands[0]
            ramps = [
                fitted_ramp(lattice, x, low, high)
                for lattice, x, low, high in zip(ranges.lattice(operand), ranges[operand], node.attrs["low"], node.attrs["high"])
            ]
            node.attrs = {"low": tuple(r[0] for r in ramps), "high": tuple(r[1] for r in ramps)}
        elif node.kind == "select":
            condition, value = node.operands
            node.attrs = {"big": tuple(
                fitted_big(*args) for args in zip(ranges.lattice(condition), ranges[condition], ranges[value], node.attrs["big"])
            )}
    return out


def fitted_ramp(lattice: Lattice | None, x: Interval, low: Number, high: Number) -> tuple[Number, Number]:
    """The ramp of a step whose operand lies on ``lattice`` within ``x``: the middle third of the
    gap around (low, high), or (low, high) itself where a reachable point lies on the ramp."""
    if lattice is None or lattice.step == 0 or lat.first_on_ramp(lattice, x.lo, x.hi, low, high) is not None:
        return low, high
    below, above, s = lattice.floor(low), lattice.ceil(high), lattice.step
    if above - below != s:  # points inside (low, high) exist but are unreachable: keep to a reachable side
        if below >= x.lo:
            above = below + s
        else:
            below = above - s
    return below + s / 3, above - s / 3


def fitted_big(condition: Lattice | None, c: Interval, value: Interval, big: Number) -> Number:
    """The smallest power of two at or above ``2 V / m`` (see the module docstring), where it is
    smaller than ``big`` and ``big`` itself already gave the select its clean values."""
    needs = select_needs(condition, c, value)
    if needs is None or needs[0] == INF:
        return big
    smallest = needs[0]
    magnitude = max(abs(value.lo), abs(value.hi))
    if mul(big, smallest) < magnitude:
        return big
    wanted = max(2 * mpq(magnitude), mpq(1)) / smallest
    fitted = mpq(2) ** math.ceil(math.log2(wanted))
    if fitted < wanted:  # log2 of a rational rounds
        fitted *= 2
    return fitted if fitted < big else big
