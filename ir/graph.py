"""The program graph: nodes in SSA form, each computing one runtime vector per time step.

A node has an id, a kind, operand ids, a static output length (``dim``), kind-specific attributes
(weights), a human name, the source location it came from and one label per output unit. Kinds are
described by :class:`Kind` entries in :data:`KINDS`; adding a node kind (a gated state, a new
activation) means adding an entry here and an evaluation rule in ``ir.interpret``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import Number


@dataclass(frozen=True)
class Loc:
    """A source position, 1-based."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Label:
    """What one output unit means: unit ``index`` of the source value ``name``."""

    name: str
    index: int

    def __str__(self) -> str:
        return f"{self.name}[{self.index}]"


def default_labels(name: str, dim: int) -> tuple[Label, ...]:
    return tuple(Label(name, i) for i in range(dim))


def node_default_labels(node_id: int, name: str, dim: int) -> tuple[Label, ...]:
    """The labels a node gets when none are given: its name, or its id when it has none."""
    return default_labels(name or f"%{node_id}", dim)


Vector = tuple[Number, ...]

# Attribute value types, used by the verifier, the printer/parser and the serializer.
VECTOR, MATRIX, MATRICES, INT = "vector", "matrix", "matrices", "int"


@dataclass(frozen=True)
class Kind:
    """The static description of a node kind.

    ``arity`` is the number of operands (None: any number, at least ``min_operands``);
    ``attributes`` maps attribute names to their types; ``optional`` the same for attributes a
    node may leave out; ``result_dim`` computes the output length from the operand lengths and
    attributes, or returns an error message (a str) when they are inconsistent.
    """

    name: str
    arity: int | None
    attributes: dict[str, str]
    result_dim: Callable[[Sequence[int], dict[str, Any]], int | str]
    min_operands: int = 0
    optional: dict[str, str] = field(default_factory=dict)

    def attribute_type(self, name: str) -> str | None:
        """The type of attribute ``name``, required or optional (None: the kind has no such attribute)."""
        return self.attributes.get(name, self.optional.get(name))


def _input_dim(dims: Sequence[int], attrs: dict[str, Any]) -> int | str:
    return "an input node's length comes from its declaration"


def input_tokens(node: "Node") -> tuple[int, int] | None:
    """The declared token range ``(lo, hi)`` of an input node (values lo..hi-1), or None."""
    tokens = node.attrs.get("tokens")
    return None if tokens is None else (int(tokens[0]), int(tokens[1]))


def tokens_error(tokens: Sequence[Any]) -> str | None:
    """Why ``tokens`` is not a token range ``(lo, hi)`` of integers with lo < hi, or None."""
    if len(tokens) != 2 or not all(getattr(v, "denominator", None) == 1 for v in tokens):
        return f"tokens must be two integers [LO, HI], got {list(tokens)}"
    if not tokens[0] < tokens[1]:
        return f"tokens [{tokens[0]}, {tokens[1]}] is empty: LO must be below HI"
    return None


def _const_dim(dims: Sequence[int], attrs: dict[str, Any]) -> int | str:
    return len(attrs["value"])


def _weighted_sum_dim(dims: Sequence[int], weights: Sequence[Matrix], bias: Vector, what: str) -> int | str:
    if len(weights) != len(dims):
        return f"{what} has {len(dims)} operands but {len(weights)} weight matrices"
    for i, (w, d) in enumerate(zip(weights, dims)):
        if w.cols != d:
            return f"{what} weight {i} has {w.cols} columns but operand {i} has length {d}"
        if w.rows != len(bias):
            return f"{what} weight {i} has {w.rows} rows but the bias has length {len(bias)}"
    return len(bias)


def _affine_dim(dims: Sequence[int], attrs: dict[str, Any]) -> int | str:
    return _weighted_sum_dim(dims, attrs["weights"], attrs["bias"], "affine")


def _same_dims(dims: Sequence[int], attrs: dict[str, Any]) -> int | str:
    if len(set(dims)) != 1:
        return f"operands have different lengths {list(dims)}"
    return dims[0]


def _concat_dim(dims: Sequence[int], attrs: dict[str, Any]) -> int | str:
    return sum(dims)


def _slice_dim(dims: Sequence[int], attrs: dict[str, Any]) -> int | str:
    start, stop = attrs["start"], attrs["stop"]
    if not 0 <= start < stop <= dims[0]:
        return f"slice [{start}:{stop}] out of range for length {dims[0]}"
    return stop - start


def _state_dim(dims: Sequence[int], attrs: dict[str, Any]) -> int | str:
    n = len(attrs["init"])
    transition = attrs["A"]
    if transition.shape != (n, n):
        return f"state transition is {transition.rows}x{transition.cols} but the state has length {n}"
    result = _weighted_sum_dim(dims, attrs["B"], attrs["bias"], "state")
    if isinstance(result, int) and result != n:
        return f"state update has length {result} but the state has length {n}"
    return result


def _step_dim(dims: Sequence[int], attrs: dict[str, Any]) -> int | str:
    low, high = attrs["low"], attrs["high"]
    if len(low) != dims[0] or len(high) != dims[0]:
        return f"step bounds have lengths {len(low)} and {len(high)} but the operand has length {dims[0]}"
    if not all(lo < hi for lo, hi in zip(low, high)):
        return "a step needs low < high in every unit"
    return dims[0]


def _select_dim(dims: Sequence[int], attrs: dict[str, Any]) -> int | str:
    if dims[0] != dims[1]:
        return f"select's condition has length {dims[0]} but its value has length {dims[1]}"
    if len(attrs["big"]) != dims[0] or not all(b > 0 for b in attrs["big"]):
        return f"select needs one positive big per unit ({dims[0]})"
    return dims[0]


# Elementwise functions that have no exact value at most rational points: the interpreter computes
# them in float64 only, and exact mode refuses them (ir/pointwise.py has their values).
FLOAT_FUNCTIONS = ("exp", "log", "sigmoid", "softplus", "silu", "tanh", "sqrt", "rsqrt")


def _gated_state_dim(dims: Sequence[int], attrs: dict[str, Any]) -> int | str:
    n = len(attrs["init"])
    if list(dims) != [n, n]:
        return f"a gated state of length {n} needs a gate and an input of length {n}, got {list(dims)}"
    return n


def _matrix_state_dim(dims: Sequence[int], attrs: dict[str, Any]) -> int | str:
    decay, keys, values = dims
    if keys != attrs["keys"]:
        return f"a matrix state with {attrs['keys']} keys needs a key of length {attrs['keys']}, got {keys}"
    if decay not in (1, keys):
        return f"a matrix state's decay has length 1 or {keys} (one per key), got {decay}"
    return keys * values


def _delta_state_dim(dims: Sequence[int], attrs: dict[str, Any]) -> int | str:
    alpha, beta, keys, values = dims
    if (alpha, beta) != (1, 1):
        return f"a delta state's alpha and beta have length 1, got {alpha} and {beta}"
    if keys != attrs["keys"]:
        return f"a delta state with {attrs['keys']} keys needs a key of length {attrs['keys']}, got {keys}"
    return keys * values


def _read_dim(dims: Sequence[int], attrs: dict[str, Any]) -> int | str:
    state, query = dims
    if state % query:
        return f"a query of length {query} cannot read a state of {state} units (not a multiple)"
    return state // query


def _solve_dim(dims: Sequence[int], attrs: dict[str, Any]) -> int | str:
    matrix, vector = dims
    if matrix != vector * vector:
        return f"solve needs a {vector}x{vector} matrix ({vector * vector} units) for a vector of {vector}, got {matrix}"
    if len(attrs["shift"]) != vector:
        return f"solve's shift has length {len(attrs['shift'])}, the vector {vector}"
    if attrs["steps"] < 0:
        return "solve's conjugate-gradient steps cannot be negative"
    return vector


KINDS: dict[str, Kind] = {
    k.name: k
    for k in [
        # tokens=[LO, HI], where declared: every input value is an integer in LO..HI-1 (its vocabulary)
        Kind("input", 0, {}, _input_dim, optional={"tokens": VECTOR}),
        Kind("const", 0, {"value": VECTOR}, _const_dim),
        # sum_i W_i x_i + b
        Kind("affine", None, {"weights": MATRICES, "bias": VECTOR}, _affine_dim),
        Kind("relu", 1, {}, _same_dims),
        # 0 where x <= low, 1 where x >= high, linear in between (the comparisons of the library)
        Kind("step", 1, {"low": VECTOR, "high": VECTOR}, _step_dim),
        # relu(v - big g) - relu(-v - big g) of (g, v): v where g = 0, 0 where big g >= |v| (LSRL's
        # conditional branch)
        Kind("select", 2, {"big": VECTOR}, _select_dim),
        # elementwise product of two runtime vectors (the multiplicative gate)
        Kind("mul", 2, {}, _same_dims),
        *(Kind(name, 1, {}, _same_dims) for name in FLOAT_FUNCTIONS),
        Kind("concat", None, {}, _concat_dim, min_operands=1),
        Kind("slice", 1, {"start": INT, "stop": INT}, _slice_dim),
        # h_t = a_t * h_{t-1} + b_t elementwise, h_0 = init, for operands (a, b): a gated diagonal state
        Kind("gated_state", 2, {"init": VECTOR}, _gated_state_dim),
        # S_t = diag(d_t) S_{t-1} + k_t v_t^T from S_0 = 0, for operands (d, k, v), d of length 1 or
        # ``keys``; the value is S_t, ``keys`` x len(v), row by row (unit i * len(v) + j is S[i, j])
        Kind("matrix_state", 3, {"keys": INT}, _matrix_state_dim),
        # S_t = alpha_t (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T from S_0 = 0, for operands
        # (alpha, beta, k, v): the delta rule (DeltaNet with alpha = 1, gated DeltaNet), flattened
        Kind("delta_state", 4, {"keys": INT}, _delta_state_dim),
        # q_t^T S_t = sum_i q_i S[i, :] for operands (S, q), S read as len(q) rows: the read of a
        # matrix state, which a head of a matrix or delta layer computes without emitting S
        Kind("read", 2, {}, _read_dim),
        # (H + diag(shift))^-1 q for operands (H, q), H a len(q) x len(q) matrix row by row: exactly,
        # or in float64 by ``steps`` conjugate-gradient steps (0: a direct solve): Mesa's readout
        Kind("solve", 2, {"shift": VECTOR, "steps": INT}, _solve_dim),
        # s_t = A s_{t-1} + sum_i B_i u_i + bias, s_0 = init; the node's value is s_t
        Kind("state", None, {"A": MATRIX, "B": MATRICES, "bias": VECTOR, "init": VECTOR}, _state_dim),
    ]
}


@dataclass(eq=False)
class Node:
    id: int
    kind: str
    operands: tuple[int, ...]
    dim: int
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    loc: Loc | None = None
    labels: tuple[Label, ...] = ()

    def __repr__(self) -> str:
        ops = ", ".join(f"%{o}" for o in self.operands)
        return f"<%{self.id} = {self.kind}({ops}) : {self.dim} {self.name!r}>"


@dataclass(frozen=True)
class Output:
    name: str
    node: int


class Graph:
    """Nodes in insertion order (which builders keep topological) and the named outputs."""

    def __init__(self) -> None:
        self.nodes: dict[int, Node] = {}
        self.outputs: list[Output] = []
        self._next_id = 0

    def add(
        self,
        kind: str,
        operands: Sequence[int],
        dim: int,
        attrs: dict[str, Any] | None = None,
        name: str = "",
        loc: Loc | None = None,
        labels: Sequence[Label] | None = None,
        node_id: int | None = None,
    ) -> Node:
        if node_id is None:
            node_id = self._next_id
        if node_id in self.nodes:
            raise ValueError(f"node %{node_id} already exists")
        self._next_id = max(self._next_id, node_id + 1)
        node = Node(
            id=node_id,
            kind=kind,
            operands=tuple(operands),
            dim=dim,
            attrs=dict(attrs or {}),
            name=name,
            loc=loc,
            labels=tuple(labels) if labels is not None else node_default_labels(node_id, name, dim),
        )
        self.nodes[node_id] = node
        return node

    def remove(self, node_id: int) -> None:
        del self.nodes[node_id]

    def add_output(self, node_id: int, name: str) -> None:
        self.outputs.append(Output(name, node_id))

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, node_id: int) -> Node:
        return self.nodes[node_id]

    @property
    def input(self) -> Node:
        inputs = [n for n in self.nodes.values() if n.kind == "input"]
        if len(inputs) != 1:
            raise ValueError(f"the graph has {len(inputs)} input nodes, not one")
        return inputs[0]

    @property
    def output_dim(self) -> int:
        return sum(self.nodes[o.node].dim for o in self.outputs)

    @property
    def output_labels(self) -> tuple[Label, ...]:
        return tuple(
            Label(o.name if len(self.outputs) > 1 or o.name else "out", i)
            for o in self.outputs
            for i in range(self.nodes[o.node].dim)
        )

    def users(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {n: [] for n in self.nodes}
        for node in self.nodes.values():
            for op in node.operands:
                out.setdefault(op, []).append(node.id)
        return out

    def topological_order(self) -> list[Node]:
        """Nodes with every operand before its users; raises ValueError on a cycle."""
        order: list[Node] = []
        state: dict[int, int] = {}  # 1: on the stack, 2: done
        for root in self.nodes:
            if root in state:
                continue
            stack: list[tuple[int, int]] = [(root, 0)]
            state[root] = 1
            while stack:
                node_id, i = stack.pop()
                operands = self.nodes[node_id].operands
                if i < len(operands):
                    stack.append((node_id, i + 1))
                    op = operands[i]
                    if op not in self.nodes:
                        raise ValueError(f"%{node_id} uses %{op}, which does not exist")
                    if state.get(op) == 1:
                        raise ValueError(f"cycle through %{op} and %{node_id}")
                    if op not in state:
                        state[op] = 1
                        stack.append((op, 0))
                else:
                    state[node_id] = 2
                    order.append(self.nodes[node_id])
        return order

    def copy(self) -> "Graph":
        other = Graph()
        for n in self.nodes.values():
            other.add(n.kind, n.operands, n.dim, n.attrs, n.name, n.loc, n.labels, node_id=n.id)
        other.outputs = list(self.outputs)
        other._next_id = self._next_id
        return other

    def stats(self) -> dict[str, int]:
        return {
            "nodes": len(self.nodes),
            "state_dims": sum(n.dim for n in self.nodes.values() if n.kind == "state"),
            "max_width": max((n.dim for n in self.nodes.values()), default=0),
        }
