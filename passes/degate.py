"""rebuild_gates: products of runtime values rebuilt from ReLUs, for targets without gates.

An Elman RNN or a linear RNN with MLPs has no multiplicative units, so a ``mul`` node (the
elementwise product ``c * t``) must become ReLUs. That is exact when, unit by unit, one factor
``c`` takes only the values 0 and 1 and the other factor ``t`` stays in a bounded interval
``[lo, hi]``. With ``off = 1 - c`` and constants ``M+ >= hi``, ``M- >= -lo``:

    c * t = relu(t - M+ off) - relu(-t - M- off)

Where c = 1, off = 0 and this is ``relu(t) - relu(-t) = t``; where c = 0 both ReLUs are 0,
because ``-M- <= lo <= t <= hi <= M+``. The two ReLUs are the positive and the negative part of
the product, so a factor that is never negative (``lo >= 0``) needs only the first, and one that
is never positive only the second.

Floating point: ``off`` is computed as a unit of its own, so it is exactly 0 or 1 wherever ``c``
is (the library's conditions are: ``passes.canonicalize.balance_relus``), and then the product is
exact as well: ``t - M+ * 0`` is ``t``, and ``t - M+`` rounds to a number <= 0. Folding ``off``
into the ReLUs' input weights instead would add ``M+`` times the condition's own large terms (a
step is ``relu(1000 x) - relu(1000 x - 1)``) to ``t`` and round ``t`` at that scale. Linearize
computes a value on its own exactly when a reader scales it by more than ``LARGE_WEIGHT``
(``passes.linear_forms``, for LSRL's ``1e10`` conditionals), so the constants are at least
:data:`SMALLEST_CONSTANT`, above that threshold. (Computing ``off`` can cost one layer, where the
condition is ready no earlier than the other factor.)

The range analysis (``passes.ranges``) proves both facts: a 0/1 condition is an integer unit
whose interval lies in [0, 1] (integrality needs ``integer_inputs`` where the condition is
computed from the input), and ``t``'s bounds come from the input range and, for counters and
accumulators, from the longest sequence length. A product where they are not shown is refused
with its source location and what could not be shown.

The product node keeps its id, name, location and labels (it becomes the affine node
``positive - negative``); the new nodes ``NAME/off``, ``NAME/positive`` and ``NAME/negative``
are named after it and carry its location.
"""

from __future__ import annotations

from dataclasses import dataclass

from lsrl.ir.errors import LsrlError
from lsrl.ir.graph import Graph, Label, Node
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import ONE, ZERO, Number
from lsrl.passes.linear_forms import LARGE_WEIGHT
from lsrl.passes.ranges import INF, Interval, Ranges, analyze

# The smallest constant M: large enough that linearize computes ``off`` as a unit of its own.
SMALLEST_CONSTANT = 2 * LARGE_WEIGHT

# Where the user has not given the input facts yet, a refusal says how to give them (CLI options).
HINT_FACTS = "if the inputs are integers in a range, say so (--integer-inputs, --input-range)"
HINT_RANGE = "bound the inputs with --input-range"


@dataclass(frozen=True)
class _UnitPlan:
    """How one unit of a product is rebuilt: ``condition`` is the operand position (0 or 1) of
    the 0/1 factor, ``value`` the bounds of the other factor."""

    condition: int
    value: Interval

    def constant(self, sign: int) -> Number | None:
        """M+ (sign 1) or M- (sign -1); None where the product has no part of that sign."""
        bound = self.value.hi if sign > 0 else -self.value.lo
        return max(bound, SMALLEST_CONSTANT) if bound > 0 else None

    def parts(self) -> int:
        return sum(self.constant(sign) is not None for sign in (1, -1))


def rebuild_gates(
    graph: Graph, input_range: object = None, max_len: int | None = None, integer_inputs: bool = False
) -> Graph:
    """``graph`` with every ``mul`` node rebuilt from ReLUs; raises ``LsrlError`` at the first
    product (in topological order) that cannot be rebuilt exactly under the given assumptions
    (the arguments of ``passes.ranges.analyze``)."""
    bounds = analyze(graph, input_range, max_len, integer_inputs)
    # A refusal's hint names the facts the user has not given yet.
    hints = {
        "bounded": None if input_range is not None else HINT_RANGE,
        "condition": None if integer_inputs and input_range is not None else HINT_FACTS,
    }
    out = graph.copy()
    for node in out.topological_order():
        if node.kind == "mul":
            plans = [_plan_unit(bounds, node, j, hints) for j in range(node.dim)]
            _rebuild(out, node, plans)
    return out


def _plan_unit(bounds: Ranges, node: Node, unit: int, hints: dict[str, str | None]) -> _UnitPlan:
    """How to rebuild one unit of the product (with fewer ReLUs where both factors are 0/1
    conditions), or the refusal that says why it cannot be rebuilt."""
    conditions = [k for k, o in enumerate(node.operands) if bounds.is_condition(o, unit)]
    plans = [_UnitPlan(k, bounds[node.operands[1 - k]][unit]) for k in conditions]
    bounded = [p for p in plans if p.value.lo != -INF and p.value.hi != INF]
    if bounded:
        return min(bounded, key=_UnitPlan.parts)
    if plans:
        which, other = ("first", "second") if plans[0].condition == 0 else ("second", "first")
        reason = f"the {which} factor is a 0/1 condition, but the {other} is not bounded (it lies in {plans[0].value})"
        hint = hints["bounded"]
    else:
        first, second = (_describe(bounds, o, unit, p) for p, o in zip(("first", "second"), node.operands))
        reason = f"neither factor is proven to be 0 or 1 ({first}; {second})"
        hint = hints["condition"]
    where = f" (unit {unit} of {node.dim})" if node.dim > 1 else ""
    message = f"cannot rebuild this product{where} from ReLUs for a target without multiplicative gates: {reason}"
    raise LsrlError(message + (f"; {hint}" if hint else ""), node.loc)


def _describe(bounds: Ranges, operand: int, unit: int, position: str) -> str:
    interval = bounds[operand][unit]
    if bounds.integer(operand)[unit]:
        return f"the {position} is an integer in {interval}"
    return f"the {position} lies in {interval} and is not proven to be an integer"


def _rebuild(graph: Graph, node: Node, plans: list[_UnitPlan]) -> None:
    """Turn the product node into ``positive - negative`` (module docstring)."""
    n = node.dim
    signs = [sign for sign in (1, -1) if any(p.constant(sign) is not None for p in plans)]
    if not signs:  # the other factor is 0 wherever it is bounded: so is the product
        node.kind, node.operands, node.attrs = "const", (), {"value": (ZERO,) * n}
        return
    off_weights = [Matrix(n, n, {(j, j): -ONE for j, p in enumerate(plans) if p.condition == k}) for k in (0, 1)]
    off = graph.add(
        "affine", node.operands, n, {"weights": tuple(off_weights), "bias": (ONE,) * n},
        name=f"{node.name}/off", loc=node.loc,
    )
    parts = []
    for sign in signs:
        suffix = "positive" if sign > 0 else "negative"
        units = [j for j, p in enumerate(plans) if p.constant(sign) is not None]
        # row r, for product unit j = units[r]: sign * t_j - M * off_j
        value_entries: list[dict] = [{}, {}]  # by operand position
        for r, j in enumerate(units):
            value_entries[1 - plans[j].condition][(r, j)] = ONE if sign > 0 else -ONE
        weights = [Matrix(len(units), n, entries) for entries in value_entries]
        weights.append(Matrix(len(units), n, {(r, j): -plans[j].constant(sign) for r, j in enumerate(units)}))
        pre = graph.add(
            "affine", [*node.operands, off.id], len(units), {"weights": tuple(weights), "bias": (ZERO,) * len(units)},
            name=f"{node.name}/{suffix}/in", loc=node.loc,
        )
        minus = "-" if sign < 0 else ""
        labels = [Label(f"relu({minus}{node.labels[j].name})", node.labels[j].index) for j in units]
        relu = graph.add("relu", [pre.id], len(units), name=f"{node.name}/{suffix}", loc=node.loc, labels=labels)
        parts.append((relu.id, Matrix(n, len(units), {(j, r): sign for r, j in enumerate(units)})))
    node.kind, node.operands = "affine", tuple(p for p, _ in parts)
    node.attrs = {"weights": tuple(m for _, m in parts), "bias": (ZERO,) * n}
