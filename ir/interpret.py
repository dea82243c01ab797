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

from typing import Sequence

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


# --- the interpreter -------------------------------------------------------------------------------
def _evaluate(graph: Graph, x: Array, exact_mode: bool) -> dict[int, Array]:
    batch_time = x.shape[:2]
    values: dict[int, Array] = {}
    for node in graph.topological_order():
        ops = [values[o] for o in node.operands]
        kind, attrs = node.kind, node.attrs
        if kind == "input":
            if x.shape[2] != node.dim:
                raise ValueError(f"the program takes tokens of length {node.dim}, got {x.shape[2]}")
            v = x
        elif kind == "const":
            if exact_mode:
                _require_exact(node, vectors=[attrs["value"]])
                v = _exact_filled(batch_time + (node.dim,), attrs["value"])
            else:
                v = np.broadcast_to(np.array(attrs["value"], dtype=np.float64), batch_time + (node.dim,))
        elif kind == "affine":
            if exact_mode:
                v = _exact_weighted_sum(node, ops, batch_time, attrs["weights"], attrs["bias"])
            else:
                v = _float_weighted_sum(ops, attrs["weights"], attrs["bias"], batch_time + (node.dim,))
        elif kind == "relu":
            v = pointwise.relu(ops[0])
        elif kind == "step":
            if exact_mode:
                _require_exact(node, vectors=[attrs["low"], attrs["high"]])
            v = pointwise.step(ops[0], attrs["low"], attrs["high"])
        elif kind == "select":
            if exact_mode:
                _require_exact(node, vectors=[attrs["big"]])
            v = pointwise.select(ops[0], ops[1], attrs["big"])
        elif kind == "mul":
            v = ops[0] * ops[1]
        elif kind == "gated_state":
            if exact_mode:
                _require_exact(node, vectors=[attrs["init"]])
            init = _exact_filled(batch_time[:1] + (node.dim,), attrs["init"]) if exact_mode else np.array(attrs["init"], dtype=np.float64)
            v = recurrences.gated(ops[0], ops[1], init)
        elif kind == "matrix_state":
            v = recurrences.matrix(*ops)
        elif kind == "delta_state":
            v = recurrences.delta(*ops)
        elif kind == "read":
            v = recurrences.read(*ops)
        elif kind == "solve":
            if exact_mode:
                _require_exact(node, vectors=[attrs["shift"]])
            try:
                v = recurrences.solve(ops[0], ops[1], attrs["shift"], attrs["steps"])
            except ValueError as e:
                raise LsrlError(f"solve: {e}", node.loc) from None
        elif kind in FLOAT_FUNCTIONS:
            if exact_mode:
                raise NotExactError(f"{kind} has no exact value", node.loc)
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                v = pointwise.FLOAT_FUNCTION_VALUES[kind](ops[0])
        elif kind == "concat":
            v = np.concatenate(ops, axis=-1)
        elif kind == "slice":
            v = ops[0][..., attrs["start"] : attrs["stop"]]
        elif kind == "state":
            if exact_mode:
                driven = _exact_weighted_sum(node, ops, batch_time, attrs["B"], attrs["bias"])
                v = _exact_recurrence(node, driven)
            else:
                driven = _float_weighted_sum(ops, attrs["B"], attrs["bias"], batch_time + (node.dim,))
                v = _float_recurrence(node, driven)
        else:
            raise ValueError(f"the interpreter has no rule for node kind {kind!r}")
        values[node.id] = v
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


def trace(graph: Graph, inputs: object, exact: bool = False) -> dict[int, Array]:
    """The value of every node, ``[batch, time, dim]`` each: for debugging and for labelled probes."""
    return _evaluate(graph, _as_batch(inputs, exact), exact)
