"""Canonicalization: rewrites that shrink the graph and give it a uniform shape, outputs unchanged.

Once the six passes have run, in this order, until a round changes nothing (``canonicalize``),
every linear computation is one ``affine`` node applied directly to atoms (``relu``, ``mul``,
states with memory, the input, and the linear values a reader scales up), every state reads
atoms directly, nothing is computed twice and nothing is computed in vain:

- ``fold_constants``: a node whose operands are all constant becomes a ``const``; a product with a
  constant factor becomes an ``affine`` scaling, a gated state with a constant gate a linear state;
- ``fold_affine``: chains of affine maps, slices and concatenations (and states that keep nothing
  from the previous step) collapse into one ``affine`` node over atoms (non-linear values, and
  the scaled-up linear values ``passes.linear_forms`` keeps for float64's sake);
- ``fold_state_inputs``: the affine maps feeding a state move into its input weights ``B``;
- ``balance_relus``: ReLUs absorb the positive scale their readers apply, for float64's sake;
- ``eliminate_common_subexpressions``: nodes of the same kind, operands and weights are merged;
- ``eliminate_dead_code``: nodes no output depends on are removed.

Each pass copies the graph; a node that survives keeps its id, name, location and labels, so a
folded node is still named after the value the program gave it. More than one round is needed
when merging exposes folding: ``relu(v) - relu(v)`` is zero only once the two ReLUs are one.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable

import numpy as np
from lsrl.ir import pointwise
from lsrl.ir.graph import FLOAT_FUNCTIONS, Graph, Node, Output
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import ONE, ZERO, Number, inverse, is_exact, mul
from lsrl.passes.linear_forms import (
    Form,
    LinearForms,
    is_linear,
    linear_form,
    weighted_sum,
)


def _become_const(node: Node, value: tuple[Number, ...]) -> None:
    node.kind, node.operands, node.attrs = "const", (), {"value": tuple(value)}


def _become_affine(node: Node, form: Form) -> None:
    node.kind, node.operands = "affine", tuple(form.terms)
    node.attrs = {"weights": tuple(form.terms.values()), "bias": form.bias}


def _redirect(graph: Graph, alias: dict[int, int]) -> None:
    """Point operands and outputs at the replacement of every aliased node."""
    for node in graph:
        node.operands = tuple(alias.get(o, o) for o in node.operands)
    graph.outputs = [Output(o.name, alias.get(o.node, o.node)) for o in graph.outputs]


def _relu(value: Number) -> Number:
    if value > 0:
        return value
    return 0.0 if type(value) is float else ZERO  # keep the number's kind: exact or float


def _constants(operands: list[Form]) -> list[tuple]:
    return [f.bias for f in operands if f.is_constant]


def _fold_pointwise(value: Callable[[Node, list[tuple]], tuple]) -> FoldRule:
    """The rule of an elementwise kind: a constant once every operand is."""

    def fold(node: Node, operands: list[Form], forms: dict[int, Form]) -> list[Form]:
        constant = _constants(operands)
        if len(constant) == len(operands):
            _become_const(node, value(node, constant))
        return operands

    return fold


def _fold_product(node: Node, operands: list[Form], forms: dict[int, Form]) -> list[Form]:
    constant = _constants(operands)
    if len(constant) == 2:
        _become_const(node, tuple(mul(a, b) for a, b in zip(*constant)))
    elif constant:  # scaling by a constant factor
        other = node.operands[1 - next(i for i, f in enumerate(operands) if f.is_constant)]
        node.kind, node.operands = "affine", (other,)
        node.attrs = {"weights": (Matrix.diag(constant[0]),), "bias": (ZERO,) * node.dim}
        return [forms[other]]
    return operands


def _fold_gated_state(node: Node, operands: list[Form], forms: dict[int, Form]) -> list[Form]:
    if not operands[0].is_constant:
        return operands
    # a constant gate: an ordinary linear state h_t = diag(a) h_{t-1} + b_t
    node.kind, node.operands = "state", (node.operands[1],)
    node.attrs = {"A": Matrix.diag(operands[0].bias), "B": (Matrix.eye(node.dim),),
                  "bias": (ZERO,) * node.dim, "init": node.attrs["init"]}
    return [operands[1]]


def _float_function_values(node: Node, constant: list[tuple]) -> tuple:
    values = pointwise.FLOAT_FUNCTION_VALUES[node.kind](np.array([float(v) for v in constant[0]]))
    return tuple(float(v) for v in values)


FoldRule = Callable[[Node, list[Form], dict[int, Form]], list[Form]]

# How fold_constants rewrites a node of each kind given its operands' linear forms (it may turn the
# node into another kind); the rule returns the forms of the operands the node then has. Linear
# kinds fold through their linear forms; the kinds in NOT_FOLDED are left as they are (a test checks
# that every kind is in one of the three).
FOLD_RULES: dict[str, FoldRule] = {
    "relu": _fold_pointwise(lambda node, c: tuple(_relu(v) for v in c[0])),
    "step": _fold_pointwise(lambda node, c: tuple(pointwise.step(np.array(c[0], dtype=object), **node.attrs))),
    "select": _fold_pointwise(
        lambda node, c: tuple(pointwise.select(*(np.array(v, dtype=object) for v in c), **node.attrs))
    ),
    **{name: _fold_pointwise(_float_function_values) for name in FLOAT_FUNCTIONS},
    "mul": _fold_product,
    "gated_state": _fold_gated_state,
}
NOT_FOLDED = ("input", "state", "matrix_state", "delta_state", "read", "solve")  # (a state of zero transition is linear)


def fold_constants(graph: Graph) -> Graph:
    """Evaluate every node whose operands are constant; scale by a constant factor affinely."""
    out = graph.copy()
    forms: dict[int, Form] = {}
    for node in out.topological_order():
        operands = [forms[o] for o in node.operands]
        if node.kind in FOLD_RULES:
            operands = FOLD_RULES[node.kind](node, operands, forms)
        if is_linear(node):
            form = linear_form(node, operands)
            if form.is_constant and node.kind != "const":
                _become_const(node, form.bias)
        else:
            form = Form.of_atom(node.id, node.dim)
        forms[node.id] = form
    return out


def fold_affine(graph: Graph) -> Graph:
    """Rewrite every linear node as one affine node over atoms (or a constant).

    A linear node that merely repeats an atom is replaced by that atom; a linear node that a
    reader scales up stays an atom (see ``passes.linear_forms``).
    """
    out = graph.copy()
    alias: dict[int, int] = {}
    forms = LinearForms(out)
    for node in out.topological_order():
        if not is_linear(node) or node.kind == "const":
            continue
        form = forms.definition(node.id)
        if form.is_constant:
            _become_const(node, form.bias)
        elif (atom := form.is_atom()) is not None:
            alias[node.id] = atom
        else:
            _become_affine(node, form)
    _redirect(out, alias)
    return out


def fold_state_inputs(graph: Graph) -> Graph:
    """Move the affine maps (and constants) feeding each state into its input weights and bias."""
    out = graph.copy()
    forms = LinearForms(out)
    for node in out:
        if node.kind != "state" or is_linear(node):
            continue
        drive = weighted_sum(node.attrs["B"], [forms[o] for o in node.operands], node.attrs["bias"])
        node.operands = tuple(drive.terms)
        node.attrs = {**node.attrs, "B": tuple(drive.terms.values()), "bias": drive.bias}
    return out


# The smallest reader scale worth moving into a ReLU: LSRL's comparisons scale by 1000. The steps
# passes.constants builds scale by 3 per level; balancing those would multiply the ReLUs' values by
# 3 per level of nesting for no gain, pushing integer programs past what float32 holds exactly.
LARGE_SCALE = 256


def _reader_scales(relu: Node, readers: list[Node], outputs: set[int]) -> list[Number]:
    """Per unit of ``relu``: the one magnitude every reader weighs it with, where it is a large
    integer (an integer ReLU stays an integer), else 1."""
    if relu.id in outputs or any(r.kind not in ("affine", "state") for r in readers):
        return [ONE] * relu.dim
    magnitudes: list[set] = [set() for _ in range(relu.dim)]
    for reader in readers:
        weights = reader.attrs["weights" if reader.kind == "affine" else "B"]
        for operand, weight in zip(reader.operands, weights):
            if operand == relu.id:
                for (_, j), w in weight.entries.items():
                    magnitudes[j].add(abs(w) if is_exact(w) else None)
    return [m.pop() if len(m) == 1 and None not in m and _worth_balancing(next(iter(m))) else ONE for m in magnitudes]


def _worth_balancing(scale: Number) -> bool:
    return scale.denominator == 1 and scale >= LARGE_SCALE


def balance_relus(graph: Graph) -> Graph:
    """Scale ReLU units so that their readers weigh them by 1 or -1: ``c relu(z) = relu(c z)``.

    The step's ``relu(x - 1/s)``, read as ``s relu(x - 1/s)``, becomes ``relu(s x - 1)``: its two
    ReLUs then share a pre-activation and differ by exactly 1 in float64 wherever the step
    saturates, so the step is exactly 0 or 1 there, as LSRL's conditionals need. Only exact
    integer scales of at least ``LARGE_SCALE`` are balanced (folding 1/3 into a ReLU would leave an
    integer ReLU off the integers, and float32 could no longer compute it exactly), and only ReLUs whose operand is an affine node of their own; a balanced
    ReLU keeps its name and labels (its value is the program's, times a positive constant).
    """
    out = graph.copy()
    users = out.users()
    outputs = {o.node for o in out.outputs}
    for node in out.topological_order():
        if node.kind != "relu":
            continue
        operand = out[node.operands[0]]
        if operand.kind != "affine" or users[operand.id] != [node.id]:
            continue
        readers = [out[r] for r in users[node.id]]
        scales = _reader_scales(node, readers, outputs)
        if all(c == 1 for c in scales):
            continue
        scale, unscale = Matrix.diag(scales), Matrix.diag([inverse(c) for c in scales])
        operand.attrs = {
            "weights": tuple(scale @ w for w in operand.attrs["weights"]),
            "bias": tuple(scale.apply(operand.attrs["bias"])),
        }
        for reader in readers:
            key = "weights" if reader.kind == "affine" else "B"
            weights = tuple(w @ unscale if o == node.id else w for o, w in zip(reader.operands, reader.attrs[key]))
            reader.attrs = {**reader.attrs, key: weights}
    return out


def _attribute_key(value: Any) -> Hashable:
    """Equal keys mean equal attributes, exact and float numbers told apart."""
    if isinstance(value, tuple):
        return tuple(_attribute_key(v) for v in value)
    if isinstance(value, Matrix) or isinstance(value, int):
        return value
    return (type(value).__name__, value)


def _node_key(node: Node) -> Hashable:
    kind, attrs = node.kind, node.attrs
    if kind == "mul":  # commutative
        return (kind, node.dim, tuple(sorted(node.operands)))
    if kind in ("affine", "state"):  # a weighted sum does not depend on the order of its terms
        weights = attrs["weights" if kind == "affine" else "B"]
        terms = tuple(sorted(zip(node.operands, (_attribute_key(w) for w in weights)), key=lambda t: t[0]))
        rest = tuple(sorted((k, _attribute_key(v)) for k, v in attrs.items() if k not in ("weights", "B")))
        return (kind, node.dim, terms, rest)
    return (kind, node.dim, node.operands, tuple(sorted((k, _attribute_key(v)) for k, v in attrs.items())))


def eliminate_common_subexpressions(graph: Graph) -> Graph:
    """Merge nodes that compute the same value; the first one (in topological order) stays."""
    out = graph.copy()
    alias: dict[int, int] = {}
    seen: dict[Hashable, int] = {}
    for node in out.topological_order():
        node.operands = tuple(alias.get(o, o) for o in node.operands)
        if node.kind == "input":
            continue
        key = _node_key(node)
        if key in seen:
            alias[node.id] = seen[key]
        else:
            seen[key] = node.id
    _redirect(out, alias)
    for node_id in alias:
        out.remove(node_id)
    return out


def eliminate_dead_code(graph: Graph) -> Graph:
    """Keep the input and the nodes some output depends on."""
    out = graph.copy()
    live = {graph.input.id}
    stack = [o.node for o in graph.outputs]
    while stack:
        node_id = stack.pop()
        if node_id not in live:
            live.add(node_id)
            stack.extend(graph[node_id].operands)
    for node_id in [n for n in out.nodes if n not in live]:
        out.remove(node_id)
    return out


PIPELINE: tuple[tuple[str, Callable[[Graph], Graph]], ...] = (
    ("fold_constants", fold_constants),
    ("fold_affine", fold_affine),
    ("fold_state_inputs", fold_state_inputs),
    ("balance_relus", balance_relus),
    ("cse", eliminate_common_subexpressions),
    ("dce", eliminate_dead_code),
)

# Rounds of the pipeline before canonicalize gives up looking for a fixed point (each round
# only ever removes nodes or folds weights, so in practice two or three rounds reach it).
MAX_ROUNDS = 10


def _structure(graph: Graph) -> list:
    return [(n.id, n.kind, n.operands, n.attrs) for n in graph] + [graph.outputs]


def canonicalize(graph: Graph) -> Graph:
    """Rounds of ``PIPELINE`` until a round changes nothing."""
    for _ in range(MAX_ROUNDS):
        before = _structure(graph)
        for _, run_pass in PIPELINE:
            graph = run_pass(graph)
        if _structure(graph) == before:
            break
    return graph
