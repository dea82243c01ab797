"""The graph verifier: every pass and front end must hand on a graph that passes it."""

from __future__ import annotations

from lsrl.ir.graph import (
    INT,
    KINDS,
    MATRICES,
    MATRIX,
    VECTOR,
    Graph,
    Label,
    Node,
    tokens_error,
)
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import is_exact


class VerifyError(ValueError):
    """A malformed graph: a bug in whatever built it, never a user's mistake."""


def _check_attribute(node: Node, name: str, kind: str) -> None:
    value = node.attrs.get(name)
    where = f"%{node.id} ({node.kind}) attribute {name!r}"
    if kind == VECTOR:
        ok = isinstance(value, tuple) and all(is_exact(v) or type(v) is float for v in value)
    elif kind == MATRIX:
        ok = isinstance(value, Matrix)
    elif kind == MATRICES:
        ok = isinstance(value, tuple) and all(isinstance(m, Matrix) for m in value)
    elif kind == INT:
        ok = type(value) is int
    else:  # pragma: no cover - a mistake in KINDS
        raise AssertionError(kind)
    if not ok:
        raise VerifyError(f"{where} should be a {kind}, got {type(value).__name__}")


def verify(graph: Graph) -> None:
    """Check kinds, attributes, shapes, labels, acyclicity, the single input and the outputs."""
    try:
        order = graph.topological_order()
    except ValueError as e:
        raise VerifyError(str(e)) from None
    inputs = [n.id for n in order if n.kind == "input"]
    if len(inputs) != 1:
        raise VerifyError(f"a graph needs exactly one input node, found {len(inputs)}")
    for node in order:
        kind = KINDS.get(node.kind)
        if kind is None:
            raise VerifyError(f"%{node.id} has unknown kind {node.kind!r}")
        n_ops = len(node.operands)
        if kind.arity is not None and n_ops != kind.arity:
            raise VerifyError(f"%{node.id} ({node.kind}) takes {kind.arity} operands, got {n_ops}")
        if n_ops < kind.min_operands:
            raise VerifyError(f"%{node.id} ({node.kind}) needs at least {kind.min_operands} operand(s)")
        given = set(node.attrs)
        if not set(kind.attributes) <= given <= set(kind.attributes) | set(kind.optional):
            optional = f" (optional: {sorted(kind.optional)})" if kind.optional else ""
            raise VerifyError(
                f"%{node.id} ({node.kind}) has attributes {sorted(node.attrs)}, expected {sorted(kind.attributes)}{optional}"
            )
        for name in node.attrs:
            _check_attribute(node, name, kind.attribute_type(name))
        if node.kind == "input":
            problem = tokens_error(node.attrs["tokens"]) if "tokens" in node.attrs else None
            if problem:
                raise VerifyError(f"%{node.id} (input): {problem}")
            expected = node.dim
        else:
            expected = kind.result_dim([graph[o].dim for o in node.operands], node.attrs)
        if isinstance(expected, str):
            raise VerifyError(f"%{node.id} ({node.kind}): {expected}")
        if node.dim != expected or node.dim < 1:
            raise VerifyError(f"%{node.id} ({node.kind}) has length {node.dim}, its operands give {expected}")
        if len(node.labels) != node.dim or not all(isinstance(l, Label) for l in node.labels):
            raise VerifyError(f"%{node.id} needs one label per output unit ({node.dim}), has {len(node.labels)}")
    if not graph.outputs:
        raise VerifyError("the graph has no output")
    for out in graph.outputs:
        if out.node not in graph.nodes:
            raise VerifyError(f"output {out.name!r} refers to missing node %{out.node}")
