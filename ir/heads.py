"""The heads of the layers that hold structured states: ``matrix`` (``S_t = diag(d_t) S_{t-1} +
k_t v_t^T``), ``delta`` (the delta rule) and ``solve`` (Mesa's readout).

Such a layer computes ``pre = W x + b`` for every unit. Most units pass ``pre`` through: the
operands of its heads (a state head's decay, key, value and query; a solve head's matrix and
vector) and the values carried past the layer. Each head then fills its own output units, whose
rows of ``W`` are zero:

- a matrix head (``MatrixHead``) keeps ``S_t = diag(d_t) S_{t-1} + k_t v_t^T`` from 0, ``keys x
  values``, its decay one unit (a scalar) or ``keys`` (one per row);
- a delta head (``DeltaHead``) keeps ``S_t = alpha_t (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t
  v_t^T`` from 0;
- a matrix or delta head with a query (``query >= 0``) emits its read ``q_t^T S_t`` (``values``
  units), the state staying inside the layer; without one (``query == NO_QUERY``) it emits
  ``S_t`` row by row (``keys * values`` units: unit ``i * values + j`` is ``S[i, j]``);
- a solve head (``SolveHead``) emits the ``size`` units of ``(M + diag(shift))^-1 q``.

Positions are units of ``pre`` (the layer's own units). A layer keeps its heads as one tuple of
integers (``heads``), each head a run of ``len(fields)`` numbers in field order.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields
from typing import Any, Sequence, Union

import numpy as np
from lsrl.ir.graph import Graph, Label
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import ZERO
from lsrl.ir.recurrences import delta, matrix, read, solve

NO_QUERY = -1  # a state head without a query emits its state


def _emitted(head: "MatrixHead | DeltaHead") -> range:
    count = head.values if head.query != NO_QUERY else head.keys * head.values
    return range(head.out, head.out + count)


@dataclass(frozen=True)
class MatrixHead:
    decay: int  # the first of ``decays`` units holding d_t
    decays: int  # 1 (one decay for the whole state) or ``keys`` (one per row)
    key: int  # the first of ``keys`` units holding k_t
    keys: int
    value: int  # the first of ``values`` units holding v_t
    values: int
    query: int  # the first of ``keys`` units holding q_t, or NO_QUERY
    out: int  # the first of the units the head fills

    @property
    def outputs(self) -> range:
        return _emitted(self)


@dataclass(frozen=True)
class DeltaHead:
    alpha: int  # the unit of pre holding alpha_t
    beta: int
    key: int  # the first of ``keys`` units holding k_t
    keys: int
    value: int  # the first of ``values`` units holding v_t
    values: int
    query: int  # the first of ``keys`` units holding q_t, or NO_QUERY
    out: int  # the first of the units the head fills

    @property
    def outputs(self) -> range:
        return _emitted(self)


@dataclass(frozen=True)
class SolveHead:
    matrix: int  # the first of ``size * size`` units holding M, row by row
    size: int
    query: int  # the first of ``size`` units holding q
    out: int  # the first of the ``size`` units the head fills

    @property
    def outputs(self) -> range:
        return range(self.out, self.out + self.size)


Head = Union[MatrixHead, DeltaHead, SolveHead]
HEAD_OF_KIND = {"matrix": MatrixHead, "delta": DeltaHead, "solve": SolveHead}
STATE_HEADS = ("matrix", "delta")  # the layer kinds whose heads keep a state from token to token


def decode(kind: str, flat: Sequence[int]) -> list[Head]:
    cls = HEAD_OF_KIND[kind]
    n = len(fields(cls))
    if len(flat) % n:
        raise ValueError(f"a {kind} layer's heads need {n} numbers each, got {len(flat)}")
    return [cls(*(int(v) for v in flat[i:i + n])) for i in range(0, len(flat), n)]


def encode(heads: Sequence[Head]) -> tuple[int, ...]:
    return tuple(v for head in heads for v in astuple(head))


def state_size(kind: str, flat: Sequence[int]) -> int:
    """The number of state entries the heads of a matrix or delta layer keep (0 for others)."""
    if kind not in STATE_HEADS:
        return 0
    return sum(head.keys * head.values for head in decode(kind, flat))


def solved_states(previous_kind: str, previous_attrs: dict[str, Any], attrs: dict[str, Any]) -> dict[int, MatrixHead]:
    """The solve heads of a solve layer (by position in its heads) whose matrix is, unit for unit,
    the state of a matrix head without a query of the layer before it (Mesa's ``solve(H, q)``
    over ``H = matrix_state(...)``), with that head: a chunk form can solve them from the head's
    operands by chunks (``ir.forms.solve_chunk``) instead of from its emitted states."""
    if previous_kind != "matrix":
        return {}
    emitting = {h.out: h for h in decode("matrix", previous_attrs["heads"]) if h.query == NO_QUERY and h.keys == h.values}
    rows, bias = attrs["W"].row_items(), attrs["b"]
    found = {}
    for position, head in enumerate(decode("solve", attrs["heads"])):
        first = rows[head.matrix]
        state = emitting.get(first[0][0]) if len(first) == 1 else None
        if state is None or state.keys != head.size:
            continue
        if all(rows[head.matrix + r] == [(state.out + r, 1)] and bias[head.matrix + r] == 0 for r in range(head.size ** 2)):
            found[position] = state
    return found


def head_nodes(g: Graph, pre: int, kind: str, flat: Sequence[int], width: int, shift: Sequence = (), steps: int = 0,
               name: str = "", labels: Sequence[Label] | None = None) -> int:
    """A delta or solve layer as graph nodes: its heads' states or solutions from the units of
    ``pre`` they read, every other unit ``pre`` itself, in the layer's order."""
    heads = decode(kind, flat)
    filled = {u for head in heads for u in head.outputs}
    passed = [u for u in range(width) if u not in filled]
    parts, placements = [], []

    def units(start: int, count: int) -> int:
        picked = Matrix.selection(count, width, ((k, start + k) for k in range(count)))
        return g.add("affine", [pre], count, {"weights": (picked,), "bias": (ZERO,) * count}, f"{name}/in").id

    def place(node: int, positions: Sequence[int]) -> None:
        parts.append(node)
        placements.append(Matrix.selection(width, len(positions), [(u, k) for k, u in enumerate(positions)]))

    if passed:
        picked = Matrix.selection(len(passed), width, enumerate(passed))
        place(g.add("affine", [pre], len(passed), {"weights": (picked,), "bias": (ZERO,) * len(passed)}, f"{name}/pass").id, passed)
    for head in heads:
        if isinstance(head, SolveHead):
            attrs = {"shift": tuple(shift[u] for u in head.outputs), "steps": steps}
            node = g.add("solve", [units(head.matrix, head.size * head.size), units(head.query, head.size)], head.size,
                         attrs, f"{name}/solve").id
        else:
            if isinstance(head, MatrixHead):
                operands = [units(head.decay, head.decays), units(head.key, head.keys), units(head.value, head.values)]
                node = g.add("matrix_state", operands, head.keys * head.values, {"keys": head.keys}, f"{name}/matrix").id
            else:
                operands = [units(head.alpha, 1), units(head.beta, 1), units(head.key, head.keys), units(head.value, head.values)]
                node = g.add("delta_state", operands, head.keys * head.values, {"keys": head.keys}, f"{name}/delta").id
            if head.query != NO_QUERY:
                node = g.add("read", [node, units(head.query, head.keys)], head.values, {}, f"{name}/read").id
        place(node, list(head.outputs))
    return g.add("affine", parts, width, {"weights": tuple(placements), "bias": (ZERO,) * width}, name, labels=labels).id


def fill(kind: str, attrs: dict[str, Any], pre: np.ndarray) -> np.ndarray:
    """The layer's output ``[batch, time, width]`` from ``pre``: its heads' units filled (in
    ``pre``'s dtype: a float32 model stays float32)."""
    out = pre.copy()
    shift = np.array([float(v) for v in attrs.get("shift", ())], dtype=pre.dtype)
    for head in decode(kind, attrs["heads"]):
        if isinstance(head, SolveHead):
            values = solve(pre[..., head.matrix:head.matrix + head.size * head.size],
                           pre[..., head.query:head.query + head.size], tuple(shift[list(head.outputs)]), attrs["steps"][0])
        else:
            key, value = pre[..., head.key:head.key + head.keys], pre[..., head.value:head.value + head.values]
            if isinstance(head, MatrixHead):
                values = matrix(pre[..., head.decay:head.decay + head.decays], key, value)
            else:
                values = delta(pre[..., head.alpha:head.alpha + 1], pre[..., head.beta:head.beta + 1], key, value)
            if head.query != NO_QUERY:
                values = read(values, pre[..., head.query:head.query + head.keys])
        out[..., head.outputs.start:head.outputs.stop] = values
    return out
