"""The Python builder: LSRL's primitives as Python values that build the program graph.

    p = Program()
    x = p.input(1)
    ones = p.state(0, lambda prev: prev + x, name="ones")
    p.output(ones)

A :class:`Value` is one runtime vector of a program; arithmetic on values adds graph nodes
(``affine``, ``relu``, ``mul``, ``concat``, ``slice``, ``state``). Numbers, vectors and matrices
are compile-time constants: they become weights and never appear as nodes. The ``.lsrl`` front end
builds its graphs through this same module.
"""

from __future__ import annotations

from contextlib import contextmanager
from fractions import Fraction
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from lsrl.errors import LsrlError
from lsrl.ir.graph import KINDS, Graph, Loc, Node, default_labels
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import ONE, ZERO, Number, add, inverse, mul, number
from lsrl.ir.verify import verify

NUMBER_TYPES = (int, float, Fraction, np.integer, np.floating)


def is_number(x: object) -> bool:
    return (isinstance(x, NUMBER_TYPES) and not isinstance(x, bool)) or type(x).__name__ == "mpq"


def is_vector(x: object) -> bool:
    if isinstance(x, np.ndarray):
        return x.ndim == 1
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(is_number(v) for v in x)


def is_matrix(x: object) -> bool:
    if isinstance(x, Matrix):
        return True
    if isinstance(x, np.ndarray):
        return x.ndim == 2
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(is_vector(r) for r in x)


def to_vector(x: object) -> tuple[Number, ...]:
    if is_number(x):
        return (number(x),)
    return tuple(number(v) for v in x)  # type: ignore[union-attr]


def to_matrix(x: object) -> Matrix:
    if isinstance(x, Matrix):
        return x
    rows = x.tolist() if isinstance(x, np.ndarray) else x
    return Matrix.from_rows(rows)  # type: ignore[arg-type]


class Program:
    """A program under construction: its graph, the current scope and source location."""

    def __init__(self) -> None:
        self.graph = Graph()
        self.loc: Loc | None = None
        self._scopes: list[str] = []
        self._user_named: set[int] = set()

    # --- errors and naming -------------------------------------------------------------------------
    def error(self, message: str) -> LsrlError:
        return LsrlError(message, self.loc)

    @contextmanager
    def scope(self, name: str) -> Iterator[None]:
        """Nodes made inside get names like ``larger/relu``: their provenance, for labels."""
        self._scopes.append(name)
        try:
            yield
        finally:
            self._scopes.pop()

    def _auto_name(self, kind: str) -> str:
        return "/".join(self._scopes + [kind])

    def node(self, kind: str, operands: Sequence["Value"], dim: int, attrs: dict[str, Any], name: str = "") -> "Value":
        for v in operands:
            if v.program is not self:
                raise self.error("a value from another program was used")
            if v.id not in self.graph.nodes:
                raise self.error("a state's previous value was used outside its update")
        node = self.graph.add(kind, [v.id for v in operands], dim, attrs, name or self._auto_name(kind), self.loc)
        if name:
            self._user_named.add(node.id)
        return Value(self, node.id, dim)

    def name(self, value: "Value", name: str) -> "Value":
        """Give an unnamed node its source name; a value already named keeps its name (an alias)."""
        if value.id in self._user_named:
            return value
        node = self.graph[value.id]
        node.name = name
        node.labels = default_labels(name, node.dim)
        if self.loc is not None:
            node.loc = self.loc
        self._user_named.add(value.id)
        return value

    # --- primitives --------------------------------------------------------------------------------
    def input(self, dim: int, name: str = "x", tokens: int | range | None = None) -> "Value":
        """The program's input, ``dim`` numbers per step. ``tokens`` declares its vocabulary: N
        (the token ids 0..N-1) or ``range(lo, hi)``: every input value is an integer in lo..hi-1,
        a promise the compiler builds on and the command line enforces (docs/language.md)."""
        if any(n.kind == "input" for n in self.graph):
            raise self.error("a program has exactly one input")
        if not isinstance(dim, int) or dim < 1:
            raise self.error(f"input length must be a positive integer, got {dim}")
        attrs = {}
        if tokens is not None:
            span = range(tokens) if isinstance(tokens, int) else tokens
            if not isinstance(span, range) or span.step != 1 or len(span) == 0:
                raise self.error(f"tokens must be a count N or a nonempty range(lo, hi), got {tokens!r}")
            attrs["tokens"] = (number(span.start), number(span.stop))
        return self.node("input", [], dim, attrs, name)

    def const(self, value: object, name: str = "") -> "Value":
        vector = to_vector(value)
        return self.node("const", [], len(vector), {"value": vector}, name)

    def affine(self, terms: Sequence[tuple[Matrix, "Value"]], bias: Sequence[Number], name: str = "") -> "Value":
        """sum W_i x_i + b, merging repeated operands; a term list that is empty gives a constant."""
        merged: dict[int, Matrix] = {}
        values: dict[int, Value] = {}
        for w, v in terms:
            merged[v.id] = merged[v.id] + w if v.id in merged else w
            values[v.id] = v
        ops = [values[i] for i in merged]
        bias = tuple(number(b) for b in bias)
        if not ops:
            return self.node("const", [], len(bias), {"value": bias}, name)
        return self.node("affine", ops, len(bias), {"weights": tuple(merged.values()), "bias": bias}, name)

    def linear_state(
        self,
        inputs: "Value | Sequence[Value]",
        A: object,
        B: object,
        init: object,
        bias: object = None,
        name: str = "",
    ) -> "Value":
        """LSRL's LinState: s_t = A s_{t-1} + B u_t (+ bias), s_0 = init; one B per input."""
        operands = [inputs] if isinstance(inputs, Value) else list(inputs)
        B_list = [to_matrix(B)] if len(operands) == 1 and is_matrix(B) else [to_matrix(b) for b in B]  # type: ignore[union-attr]
        init_v = to_vector(init)
        bias_v = to_vector(bias) if bias is not None else (ZERO,) * len(init_v)
        attrs = {"A": to_matrix(A), "B": tuple(B_list), "bias": bias_v, "init": init_v}
        self._check(operands, "state", attrs)
        return self.node("state", operands, len(init_v), attrs, name)

    def _check(self, operands: Sequence["Value"], kind: str, attrs: dict[str, Any]) -> None:
        result = KINDS[kind].result_dim([v.dim for v in operands], attrs)
        if isinstance(result, str):
            raise self.error(result)

    def state(
        self, init: object, update: Callable[["Value"], object], dim: int | None = None, name: str = ""
    ) -> "Value":
        """A linear state whose new value is ``update(previous)``, affine in ``previous``.

        ``update`` receives the previous value and may use any value of this step; the graph it
        builds is folded into the state's transition ``A``, input maps ``B`` and bias, so it must
        be affine in the previous value. ``init`` is a number (with ``dim``) or a vector.
        """
        init_v = to_vector(init)
        if dim is None:
            dim = len(init_v)
        if len(init_v) == 1 and dim > 1:
            init_v = init_v * dim
        if len(init_v) != dim:
            raise self.error(f"state {name or ''} has length {dim} but its initial value has length {len(init_v)}")
        declared_at = self.loc
        prev_node = self.graph.add("previous", [], dim, {}, f"{name}.previous", self.loc)
        prev = Value(self, prev_node.id, dim)
        try:
            result = update(prev)
            if not isinstance(result, Value):
                result = self.const(broadcast_vector(self, to_vector(result), dim))
            if result.dim != dim:
                raise self.error(f"the update of state '{name}' has length {result.dim}, the state has length {dim}")
            transition, inputs, bias, gates = self._affine_in_previous(result, prev_node, name)
        finally:
            self._drop_dependents(prev_node.id)
        if gates:
            return self._gated_state(name, transition, inputs, bias, gates, init_v, declared_at)
        attrs = {
            "A": transition,
            "B": tuple(w for w, _ in inputs),
            "bias": bias,
            "init": init_v,
        }
        self.loc = declared_at  # the update may have moved it; the state is where it was declared
        return self.node("state", [v for _, v in inputs], dim, attrs, name)

    def _gated_state(self, name: str, transition: Matrix, inputs: list, bias: tuple, gates: list, init: tuple,
                     declared_at: Loc | None) -> "Value":
        """``h_t = a_t * h_{t-1} + b_t`` from the folded update: ``a = diag(A) + sum_g W_g g`` and
        ``b = sum_i B_i u_i + bias``; the transition must be diagonal (each unit keeps to itself)."""
        if not transition.is_diagonal():
            raise LsrlError(
                f"the update of state '{name}' mixes units of its previous value and gates it: a gated "
                "state's update is a * h + b, elementwise", declared_at)
        dim = len(init)
        gate = self.affine(gates, transition.diagonal())
        drive = self.affine(inputs, bias) if inputs else self.const(bias)
        self.loc = declared_at
        return self.node("gated_state", [gate, drive], dim, {"init": init}, name)

    def matrix_state(self, decay: object, key: "Value", value: "Value", name: str = "") -> "Value":
        """``S_t = diag(decay_t) S_{t-1} + key_t value_t^T`` from ``S_0 = 0``: a matrix-valued
        state with rank-one writes (linear attention, RetNet, Mamba2 with a scalar decay; GLA with
        a decay per key), flattened row by row (unit ``i * len(value) + j`` is ``S[i, j]``);
        ``decay`` is a number, or a runtime value of length 1 or ``len(key)``. ``read`` reads it."""
        if not isinstance(decay, Value):
            decay = self.const(to_vector(decay))
        attrs = {"keys": key.dim}
        self._check([decay, key, value], "matrix_state", attrs)
        return self.node("matrix_state", [decay, key, value], key.dim * value.dim, attrs, name)

    def delta_state(self, alpha: object, beta: object, key: "Value", value: "Value", name: str = "") -> "Value":
        """``S_t = alpha_t (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T`` from ``S_0 = 0``: the
        delta rule (DeltaNet with alpha = 1, gated DeltaNet), flattened as ``matrix_state`` is; a
        key written again replaces its value (``beta = 1`` and a unit key). ``alpha`` and ``beta``
        are numbers or runtime values of length 1."""
        alpha, beta = (v if isinstance(v, Value) else self.const(to_vector(v)) for v in (alpha, beta))
        attrs = {"keys": key.dim}
        self._check([alpha, beta, key, value], "delta_state", attrs)
        return self.node("delta_state", [alpha, beta, key, value], key.dim * value.dim, attrs, name)

    def gated_state(self, init: object, gate: "Value", drive: object, name: str = "") -> "Value":
        """``h_t = gate_t * h_{t-1} + drive_t`` elementwise, ``h_0 = init``: a gated diagonal state
        (Mamba's selective scan, RG-LRU, GLA's decay, hold-or-overwrite registers)."""
        init_v = broadcast_vector(self, to_vector(init), gate.dim)
        if not isinstance(drive, Value):
            drive = self.const(broadcast_vector(self, to_vector(drive), gate.dim))
        self._check([gate, drive], "gated_state", {"init": init_v})
        return self.node("gated_state", [gate, drive], gate.dim, {"init": init_v}, name)

    def _dependents(self, prev_id: int) -> list[Node]:
        dependent = {prev_id}
        out = []
        for node in self.graph:
            if node.id == prev_id or any(o in dependent for o in node.operands):
                dependent.add(node.id)
                out.append(node)
        return out

    def _drop_dependents(self, prev_id: int) -> None:
        for node in self._dependents(prev_id):
            self.graph.remove(node.id)
            self._user_named.discard(node.id)

    def _affine_in_previous(
        self, result: "Value", prev: Node, name: str
    ) -> tuple[Matrix, list[tuple[Matrix, "Value"]], tuple[Number, ...], list[tuple[Matrix, "Value"]]]:
        """Fold the update graph into A (on the previous value), input maps, a bias and the gates:
        the update is ``A h + sum_g W_g (h * g) + sum_i B_i u_i + bias`` for products ``h * g`` of
        the previous value (a diagonal map of it) with a runtime gate ``g`` that does not depend on it."""
        dependent = {n.id: n for n in self._dependents(prev.id)}
        if result.id not in dependent:
            return Matrix.zeros(prev.dim, prev.dim), [(Matrix.eye(prev.dim), result)], (ZERO,) * prev.dim, []
        # a form: {operand id, or ("gated", gate id): weight}, bias
        forms: dict[int, tuple[dict[object, Matrix], tuple[Number, ...]]] = {}
        for node in dependent.values():  # graph order: operands first
            if node.id == prev.id:
                forms[node.id] = ({prev.id: Matrix.eye(node.dim)}, (ZERO,) * node.dim)
                continue
            if node.kind == "mul":
                forms[node.id] = self._gated_form(node, forms, prev, name)
                continue
            if node.kind not in ("affine", "slice", "concat"):
                what = {"relu": "a ReLU", "state": "another state"}.get(node.kind, f"a {node.kind} node")
                raise LsrlError(
                    f"the update of state '{name}' is not affine in its previous value: it passes through {what}",
                    node.loc or self.loc,
                )
            terms: dict[object, Matrix] = {}
            bias: tuple[Number, ...] = (ZERO,) * node.dim

            def add_term(op: int, weight: Matrix) -> None:
                nonlocal bias
                if op in forms:
                    op_terms, op_bias = forms[op]
                    for k, m in op_terms.items():
                        terms[k] = terms[k] + weight @ m if k in terms else weight @ m
                    bias = tuple(add(a, b) for a, b in zip(bias, weight.apply(op_bias)))
                else:
                    terms[op] = terms[op] + weight if op in terms else weight

            if node.kind == "affine":
                for op, w in zip(node.operands, node.attrs["weights"]):
                    add_term(op, w)
                bias = tuple(add(a, b) for a, b in zip(bias, node.attrs["bias"]))
            elif node.kind == "slice":
                start, stop = node.attrs["start"], node.attrs["stop"]
                src = self.graph[node.operands[0]].dim
                add_term(node.operands[0], Matrix.selection(node.dim, src, ((i, start + i) for i in range(stop - start))))
            else:  # concat
                offset = 0
                for op in node.operands:
                    d = self.graph[op].dim
                    add_term(op, Matrix.selection(node.dim, d, ((offset + i, i) for i in range(d))))
                    offset += d
            forms[node.id] = (terms, bias)
        terms, bias = forms[result.id]
        transition = terms.pop(prev.id, Matrix.zeros(prev.dim, prev.dim))
        gates = [(w, Value(self, key[1], self.graph[key[1]].dim)) for key, w in terms.items() if isinstance(key, tuple)]
        inputs = [(w, Value(self, op, self.graph[op].dim)) for op, w in terms.items() if not isinstance(op, tuple)]
        return transition, inputs, bias, gates

    def _gated_form(self, node: Node, forms: dict, prev: Node, name: str) -> tuple[dict[object, Matrix], tuple]:
        """The form of a product ``(D h) * g``: ``diag(D) (h * g)`` (D a diagonal map of the
        previous value h, g a runtime gate that does not depend on it)."""
        dependent = [op for op in node.operands if op in forms]
        if len(dependent) == 2:
            raise LsrlError(f"the update of state '{name}' multiplies its previous value by itself", node.loc or self.loc)
        (held,), (gate,) = dependent, [op for op in node.operands if op not in forms]
        terms, bias = forms[held]
        scale = terms.get(prev.id)
        if set(terms) != {prev.id} or any(b != 0 for b in bias) or scale is None or not scale.is_diagonal():
            raise LsrlError(
                f"the update of state '{name}' multiplies a mix of its previous value's units (or of it and "
                "other values) by a runtime gate; a gated state's update is a * h + b, elementwise",
                node.loc or self.loc,
            )
        return {("gated", gate): Matrix.diag(scale.diagonal())}, (ZERO,) * node.dim

    def output(self, value: object, name: str = "") -> None:
        if not isinstance(value, Value):
            value = self.const(value)
        if name:
            self.name(value, name)
        self.graph.add_output(value.id, name)

    def finish(self) -> Graph:
        """Check the program is complete and hand over its graph."""
        if not any(n.kind == "input" for n in self.graph):
            raise LsrlError("the program has no input", self.loc)
        if not self.graph.outputs:
            raise LsrlError("the program has no output", self.loc)
        verify(self.graph)
        return self.graph


def broadcast_vector(program: Program, vector: tuple[Number, ...], dim: int) -> tuple[Number, ...]:
    if len(vector) == dim:
        return vector
    if len(vector) == 1:
        return vector * dim
    raise program.error(f"length mismatch: {len(vector)} and {dim}")


class Value:
    """A runtime vector of a program under construction."""

    __slots__ = ("program", "id", "dim")
    __array_ufunc__ = None  # make numpy arrays defer to Value for ``M @ x`` and arithmetic

    def __init__(self, program: Program, node_id: int, dim: int):
        self.program = program
        self.id = node_id
        self.dim = dim

    def __repr__(self) -> str:
        node = self.program.graph.nodes.get(self.id)
        return f"Value(%{self.id} {node.name if node else '?'}: {self.dim})"

    def __len__(self) -> int:
        return self.dim

    def __bool__(self) -> bool:
        raise self.program.error("a runtime value has no compile-time truth value")

    def named(self, name: str) -> "Value":
        return self.program.name(self, name)

    # --- arithmetic --------------------------------------------------------------------------------
    def _broadcast(self, dim: int) -> "Value":
        if self.dim == dim:
            return self
        if self.dim == 1:
            return self.program.affine([(Matrix.ones(dim, 1), self)], (ZERO,) * dim)
        raise self.program.error(f"length mismatch: {self.dim} and {dim}")

    def _combine(self, other: object, sign: Number, self_sign: Number = ONE) -> "Value":
        p = self.program
        if isinstance(other, Value):
            dim = max(self.dim, other.dim)
            a, b = self._broadcast(dim), other._broadcast(dim)
            return p.affine([(Matrix.eye(dim, self_sign), a), (Matrix.eye(dim, sign), b)], (ZERO,) * dim)
        if is_number(other) or is_vector(other):
            vector = to_vector(other)
            dim = max(self.dim, len(vector))
            a = self._broadcast(dim)
            bias = tuple(mul(sign, v) for v in broadcast_vector(p, vector, dim))
            return p.affine([(Matrix.eye(dim, self_sign), a)], bias)
        return NotImplemented

    def __add__(self, other: object) -> "Value":
        return self._combine(other, ONE)

    __radd__ = __add__

    def __sub__(self, other: object) -> "Value":
        return self._combine(other, -ONE)

    def __rsub__(self, other: object) -> "Value":
        return self._combine(other, ONE, self_sign=-ONE)

    def __neg__(self) -> "Value":
        return self.program.affine([(Matrix.eye(self.dim, -ONE), self)], (ZERO,) * self.dim)

    def __pos__(self) -> "Value":
        return self

    def scaled(self, factor: object) -> "Value":
        """Multiply by a compile-time number or (elementwise) vector."""
        p = self.program
        if is_number(factor):
            return p.affine([(Matrix.eye(self.dim, number(factor)), self)], (ZERO,) * self.dim)
        vector = to_vector(factor)
        dim = max(self.dim, len(vector))
        return p.affine([(Matrix.diag(broadcast_vector(p, vector, dim)), self._broadcast(dim))], (ZERO,) * dim)

    def __mul__(self, other: object) -> "Value":
        if isinstance(other, Value):
            dim = max(self.dim, other.dim)
            return self.program.node("mul", [self._broadcast(dim), other._broadcast(dim)], dim, {})
        if is_number(other) or is_vector(other):
            return self.scaled(other)
        return NotImplemented

    __rmul__ = __mul__

    def __truediv__(self, other: object) -> "Value":
        if isinstance(other, Value):
            raise self.program.error("division by a runtime value is not allowed")
        if is_number(other):
            if number(other) == 0:
                raise self.program.error("division by zero")
            return self.scaled(inverse(number(other)))
        if is_vector(other):
            if any(number(v) == 0 for v in other):  # type: ignore[union-attr]
                raise self.program.error("division by zero")
            return self.scaled(tuple(inverse(number(v)) for v in other))  # type: ignore[union-attr]
        return NotImplemented

    def __rtruediv__(self, other: object) -> "Value":
        raise self.program.error("division by a runtime value is not allowed")

    def __rmatmul__(self, matrix: object) -> "Value":
        if not is_matrix(matrix):
            return NotImplemented
        m = to_matrix(matrix)
        if m.cols != self.dim:
            raise self.program.error(f"a {m.rows}x{m.cols} matrix cannot apply to a vector of length {self.dim}")
        return self.program.affine([(m, self)], (ZERO,) * m.rows)

    def __matmul__(self, other: object) -> "Value":
        raise self.program.error("a matrix applies from the left: write M @ x")

    def __getitem__(self, index: object) -> "Value":
        p = self.program
        if isinstance(index, slice):
            if index.step not in (None, 1):
                raise p.error("slices with a step are not supported")
            start, stop, _ = index.indices(self.dim)
        elif isinstance(index, (int, np.integer)) and not isinstance(index, bool):
            i = int(index)
            if not -self.dim <= i < self.dim:
                raise p.error(f"index {i} out of range for a vector of length {self.dim}")
            start = i % self.dim
            stop = start + 1
        else:
            raise p.error(f"an index must be an integer or a slice, got {type(index).__name__}")
        if not start < stop:
            raise p.error(f"slice [{start}:{stop}] of a vector of length {self.dim} is empty")
        if (start, stop) == (0, self.dim):
            return self
        return p.node("slice", [self], stop - start, {"start": start, "stop": stop})


# --- functions of values --------------------------------------------------------------------------
def relu(x: Value) -> Value:
    if not isinstance(x, Value):
        raise TypeError("relu of a compile-time value: compute it at compile time")
    return x.program.node("relu", [x], x.dim, {})


def float_function(name: str, x: Value) -> Value:
    """``name(x)`` elementwise, for a float function of ``ir.graph.FLOAT_FUNCTIONS`` (exp, log,
    sigmoid, softplus, silu, tanh, sqrt, rsqrt): float64 only, exact mode refuses it."""
    if not isinstance(x, Value):
        raise TypeError(f"{name} of a compile-time value: compute it at compile time")
    return x.program.node(name, [x], x.dim, {})


L2NORM_EPS = Fraction(1, 10**6)  # fla's l2norm default


def l2norm(x: Value, eps: object = L2NORM_EPS) -> Value:
    """``x / sqrt(sum_i x_i^2 + eps)``, as flash-linear-attention's ``l2norm`` computes it (eps
    inside the root, default 1e-6): the products ``x_i x_i``, their sum, ``rsqrt`` and the product
    with x, so float64 only (``rsqrt`` has no exact value; exact mode refuses it at the call)."""
    if not isinstance(x, Value):
        raise TypeError("l2norm of a compile-time value: compute it at compile time")
    p = x.program
    with p.scope("l2norm"):
        total = p.affine([(Matrix.ones(1, x.dim), x * x)], to_vector(eps))
        return x * float_function("rsqrt", total)


def ramp(x: Value, low: object, high: object) -> Value:
    """0 where x <= low, 1 where x >= high, linear in between, unit by unit (the ``step`` node;
    numbers broadcast)."""
    if not isinstance(x, Value):
        raise TypeError("a step of a compile-time value: compute it at compile time")
    p = x.program
    attrs = {"low": broadcast_vector(p, to_vector(low), x.dim), "high": broadcast_vector(p, to_vector(high), x.dim)}
    p._check([x], "step", attrs)
    return p.node("step", [x], x.dim, attrs)


def select(condition: Value, value: object, big: object) -> Value:
    """``relu(v - big c) - relu(-v - big c)``: v where the condition c is 0, and 0 where
    ``big * c >= |v|`` (the ``select`` node; a number or vector v becomes a constant)."""
    p = condition.program
    if not isinstance(value, Value):
        value = p.const(broadcast_vector(p, to_vector(value), condition.dim))
    dim = max(condition.dim, value.dim)
    condition, value = condition._broadcast(dim), value._broadcast(dim)
    attrs = {"big": broadcast_vector(p, to_vector(big), dim)}
    p._check([condition, value], "select", attrs)
    return p.node("select", [condition, value], dim, attrs)


def read(state: Value, query: Value) -> Value:
    """``S^T q`` of a matrix state ``S`` (``Program.matrix_state``, or any value of
    ``len(query) * n`` units read as ``len(query)`` rows of ``n``): ``sum_i q_i S[i, :]`` (the
    ``read`` node: a head of the state's layer computes it without emitting S)."""
    p = state.program
    p._check([state, query], "read", {})
    return p.node("read", [state, query], state.dim // query.dim, {})


def solve(matrix: Value, query: Value, shift: object = 0, steps: int = 0) -> Value:
    """``(M + diag(shift))^-1 q`` for a runtime ``len(q) x len(q)`` matrix M (row by row, e.g. a
    matrix state of keys by keys) and vector q: exactly in exact mode; in float64 a direct solve,
    or ``steps`` conjugate-gradient steps (M symmetric positive definite): Mesa's readout."""
    p = query.program
    attrs = {"shift": broadcast_vector(p, to_vector(shift), query.dim), "steps": int(steps)}
    p._check([matrix, query], "solve", attrs)
    return p.node("solve", [matrix, query], query.dim, attrs)


def concat(*values: Value | Sequence[Value]) -> Value:
    if len(values) == 1 and isinstance(values[0], (list, tuple)):
        values = tuple(values[0])
    runtime = [v for v in values if isinstance(v, Value)]
    if not runtime:
        raise TypeError("concat needs at least one runtime value")
    p = runtime[0].program
    parts = [v if isinstance(v, Value) else p.const(v) for v in values]
    if len(parts) == 1:
        return parts[0]
    return p.node("concat", parts, sum(v.dim for v in parts), {})


def linear(x: Value, A: object, b: object = None) -> Value:
    """LSRL's Linear: A x + b."""
    m = to_matrix(A)
    if m.cols != x.dim:
        raise x.program.error(f"a {m.rows}x{m.cols} matrix cannot apply to a vector of length {x.dim}")
    bias = to_vector(b) if b is not None else (ZERO,) * m.rows
    return x.program.affine([(m, x)], broadcast_vector(x.program, bias, m.rows))


def gate(a: Value, b: Value) -> Value:
    """LSRL's Multiplicative: the elementwise product of two runtime vectors."""
    return a * b
