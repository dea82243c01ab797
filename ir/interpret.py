"""The reference interpreter: the semantics of the program graph.

A graph runs once per time step, left to right. Because every node depends only on the current and
earlier steps, the interpreter evaluates the graph node by node over whole sequences: a node's value
is an array ``[batch, time, dim]``. Only state nodes loop over time, and by the time a state node is
evaluated its inputs are known for every step (the graph is acyclic apart from state recurrences).

Two modes share this code path:
- float64: numpy arrays, dense weights;
- exact: numpy object arrays of ``mpq``, sparse weights; every result is an exact rational.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from lsrl.ir import pointwise, recurrences
from lsrl.ir.errors import LsrlError
from lsrl.ir.graph import FLOAT_FUNCTIONS, Graph, Loc, Node
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import exact


class NotExactError(ValueError):
    """Exact mode was asked for a graph that holds float (irrational) weights or float functions;
    ``loc`` is where the program wrote the node."""

    def __init__(self, message: str, loc: Loc | None = None):
        super().__init__(message if loc is None else f"{message} (at {loc})")
        self.message, self.loc = message, loc


Array = np.ndarray
# node id -> the node's value [batch, time, dim] to use instead of the one computed: readers see it
# (interchange interventions, lsrl.bench); a state's own recurrence keeps its computed value, which
# is the same thing when the whole sequence is patched
Patches = dict[int, Array]


def _require_exact(node: Node, *matrices: Matrix, vectors: Sequence[tuple] = ()) -> None:
    if all(m.exact for m in matrices) and all(type(v) is not float for vec in vectors for v in vec):
        return
    raise NotExactError(f"'{node.name}' has float weights (from an irrational constant): no exact value", node.loc)


# --- float64 --------------------------------------------------------------------------------------
def _float_weighted_sum(operands: list[Array], weights: Sequence[Matrix], bias: tuple, shape: tuple) -> Array:
    total: Array | None = None
    for x, w in zip(operands, weights):
        if w.nnz:
            term = x @ w.dense().T
            total = term if total is None else total + term
    b = np.array(bias, dtype=np.float64)
    if total is None:
        return np.broadcast_to(b, shape)
    if b.any():
        total += b
    return total


def _float_recurrence(node: Node, driven: Array) -> Array:
    transition = node.attrs["A"]
    init = np.array(node.attrs["init"], dtype=np.float64)
    if transition.is_identity():
        return init + np.cumsum(driven, axis=1)
    a_t = transition.dense().T
    out = np.empty_like(driven)
    s = np.broadcast_to(init, driven[:, 0].shape)
    for t in range(driven.shape[1]):
        s = s @ a_t + driven[:, t]
        out[:, t] = s
    return out


# --- exact ----------------------------------------------------------------------------------------
def _exact_apply(x: Array, matrix: Matrix, out: Array) -> None:
    """out[..., i] += sum_j M[i, j] x[..., j] over object arrays of mpq."""
    for i, row in enumerate(matrix.row_items()):
        for j, w in row:
            out[..., i] += x[..., j] * w


def _exact_filled(shape: tuple[int, ...], vector: tuple) -> Array:
    out = np.empty(shape, dtype=object)
    for i, v in enumerate(vector):
        out[..., i] = v
    return out


def _exact_weighted_sum(node: Node, operands: list[Array], shape: tuple, weights: Sequence[Matrix], bias: tuple):
    _require_exact(node, *weights, vectors=[bias])
    out = _exact_filled(shape + (len(bias),), bias)
    for x, w in zip(operands, weights):
        _exact_apply(x, w, out)
    return out


def _exact_recurrence(node: Node, driven: Array) -> Array:
    transition = node.attrs["A"]
    init = node.attrs["init"]
    _require_exact(node, transition, vectors=[init])
    if transition.is_identity():
        return np.cumsum(driven, axis=1) + _exact_filled(driven.shape, init)
    out = np.empty_like(driven)
    s = _exact_filled(driven[:, 0].shape, init)
    for t in range(driven.shape[1]):
        nxt = driven[:, t].copy()
        _exact_apply(s, transition, nxt)
        out[:, t] = nxt
        s = nxt
    return out


# --- the rules of the kinds -----------------------------------------------------------------------
@dataclass(frozen=True)
class Context:
    """What a rule sees besides its node and operands: the program's input and the mode."""

    x: Array  # the input, [batch, time, dim]
    exact: bool

    @property
    def batch_time(self) -> tuple[int, int]:
        return self.x.shape[:2]

    def filled(self, node: Node, vector: tuple, shape: tuple[int, ...]) -> Array:
        """``vector`` broadcast to ``shape``, after checking that exact mode can hold it."""
        if self.exact:
            _require_exact(node, vectors=[vector])
            return _exact_filled(shape, vector)
        return np.broadcast_to(np.array(vector, dtype=np.float64), shape)

    def weighted_sum(self, node: Node, operands: list[Array], weights: Sequence[Matrix], bias: tuple) -> Array:
        if self.exact:
            return _exact_weighted_sum(node, operands, self.batch_time, weights, bias)
        return _float_weighted_sum(operands, weights, bias, self.batch_time + (node.dim,))


Rule = Callable[[Node, list[Array], Context], Array]


def _input(node: Node, ops: list[Array], ctx: Context) -> Array:
    if ctx.x.shape[2] != node.dim:
        raise ValueError(f"the program takes tokens of length {node.dim}, got {ctx.x.shape[2]}")
    return ctx.x


def _state(node: Node, ops: list[Array], ctx: Context) -> Array:
    driven = ctx.weighted_sum(node, ops, node.attrs["B"], node.attrs["bias"])
    return _exact_recurrence(node, driven) if ctx.exact else _float_recurrence(node, driven)


def _checked(rule: Rule, *exact_vectors: str) -> Rule:
    """``rule``, after checking in exact mode that the attributes named hold no floats."""

    def checked(node: Node, ops: list[Array], ctx: Context) -> Array:
        if ctx.exact:
            _require_exact(node, vectors=[node.attrs[name] for name in exact_vectors])
        return rule(node, ops, ctx)

    return checked


def _solve(node: Node, ops: list[Array], ctx: Context) -> Array:
    try:
        return recurrences.solve(ops[0], ops[1], node.attrs["shift"], node.attrs["steps"])
    except ValueError as e:
        raise LsrlError(f"solve: {e}", node.loc) from None


def _float_function(node: Node, ops: list[Array], ctx: Context) -> Array:
    if ctx.exact:
        raise NotExactError(f"{node.kind} has no exact value", node.loc)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return pointwise.FLOAT_FUNCTION_VALUES[node.kind](ops[0])


# The value of a node of each kind over whole sequences, from its operands' values: the semantics
# of the graph (tests/test_kinds.py checks that every kind has a rule).
EVALUATION_RULES: dict[str, Rule] = {
    "input": _input,
    "const": lambda node, ops, ctx: ctx.filled(node, node.attrs["value"], ctx.batch_time + (node.dim,)),
    "affine": lambda node, ops, ctx: ctx.weighted_sum(node, ops, node.attrs["weights"], node.attrs["bias"]),
    "relu": lambda node, ops, ctx: pointwise.relu(ops[0]),
    "step": _checked(lambda node, ops, ctx: pointwise.step(ops[0], node.attrs["low"], node.attrs["high"]), "low", "high"),
    "select": _checked(lambda node, ops, ctx: pointwise.select(ops[0], ops[1], node.attrs["big"]), "big"),
    "mul": lambda node, ops, ctx: ops[0] * ops[1],
    **{name: _float_function for name in FLOAT_FUNCTIONS},
    "concat": lambda node, ops, ctx: np.concatenate(ops, axis=-1),
    "slice": lambda node, ops, ctx: ops[0][..., node.attrs["start"] : node.attrs["stop"]],
    "state": _state,
    "gated_state": lambda node, ops, ctx: recurrences.gated(
        ops[0], ops[1], ctx.filled(node, node.attrs["init"], ctx.batch_time[:1] + (node.dim,))
    ),
    "matrix_state": lambda node, ops, ctx: recurrences.matrix(*ops),
    "delta_state": lambda node, ops, ctx: recurrences.delta(*ops),
    "read": lambda node, ops, ctx: recurrences.read(*ops),
    "solve": _checked(_solve, "shift"),
}


# --- the interpreter -------------------------------------------------------------------------------
def _evaluate(graph: Graph, x: Array, exact_mode: bool, patches: Patches | None = None) -> dict[int, Array]:
    ctx = Context(x, exact_mode)
    values: dict[int, Array] = {}
    for node in graph.topological_order():
        rule = EVALUATION_RULES.get(node.kind)
        if rule is None:
            raise ValueError(f"the interpreter has no rule for node kind {node.kind!r}")
        value = rule(node, [values[o] for o in node.operands], ctx)
        if patches and node.id in patches:
            value = np.array(value, copy=True)
            value[...] = patches[node.id]
        values[node.id] = value
    return values


def _as_batch(inputs: object, exact_mode: bool) -> Array:
    """Accept one sequence [time, dim] or a batch [batch, time, dim] (a token may be a bare number)."""
    if exact_mode:
        rows = inputs.tolist() if isinstance(inputs, np.ndarray) else inputs
        nested = _nest(rows)
        arr = np.empty((len(nested), len(nested[0]) if nested else 0, len(nested[0][0]) if nested and nested[0] else 0), dtype=object)
        for b, seq in enumerate(nested):
            if len(seq) != arr.shape[1]:
                raise ValueError("all sequences in a batch must have the same length")
            for t, token in enumerate(seq):
                if len(token) != arr.shape[2]:
                    raise ValueError("all tokens must have the same length")
                for d, value in enumerate(token):
                    arr[b, t, d] = exact(value)
        return arr
    arr = np.asarray(inputs, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"inputs must be [time, dim] or [batch, time, dim], got shape {arr.shape}")
    return arr


def _nest(rows: object) -> list:
    """Normalize exact inputs to [batch][time][dim] nested lists."""
    rows = list(rows)  # type: ignore[arg-type]
    if not rows:
        return [[]]

    def depth(x: object) -> int:
        return 1 + depth(x[0]) if isinstance(x, (list, tuple)) and x else (1 if isinstance(x, (list, tuple)) else 0)

    d = depth(rows)
    if d == 1:
        return [[[v] for v in rows]]
    if d == 2:
        return [[list(tok) if isinstance(tok, (list, tuple)) else [tok] for tok in rows]]
    return [[list(tok) if isinstance(tok, (list, tuple)) else [tok] for tok in seq] for seq in rows]


def run(graph: Graph, inputs: object, exact: bool = False) -> Array:
    """Run ``graph`` over a batch of sequences and return the outputs ``[batch, time, d_out]``.

    ``inputs`` is ``[time, dim]`` or ``[batch, time, dim]`` (a bare number may stand for a token of
    length 1). In exact mode the numbers may be ints, strings such as "1/3", Fractions or mpq, and
    the result is an object array of mpq; otherwise it is float64.
    """
    x = _as_batch(inputs, exact)
    values = _evaluate(graph, x, exact)
    outs = [values[o.node] for o in graph.outputs]
    return np.concatenate(outs, axis=-1)


def trace(graph: Graph, inputs: object, exact: bool = False, patches: Patches | None = None) -> dict[int, Array]:
    """The value of every node, ``[batch, time, dim]`` each: for debugging and for labelled probes;
    with ``patches``, the nodes named there take the values given (interventions)."""
    return _evaluate(graph, _as_batch(inputs, exact), exact, patches)
