"""Structural identity of graphs: what a round trip (text, JSON) must preserve.

Two graphs are the same when they hold the same nodes in the same order, with the same ids, kinds,
operands, lengths, attributes, names, locations and labels, and the same outputs in the same order.
Numbers must agree in value and in kind: an exact 1/2 and the float 0.5 differ, because exact mode
treats them differently.
"""

from __future__ import annotations

from typing import Any

from lsrl.ir.graph import Graph, Node
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import format_number, is_exact, same_number


def _is_number(x: object) -> bool:
    return is_exact(x) or type(x) is float


def _same_value(x: Any, y: Any) -> bool:
    if isinstance(x, tuple) and isinstance(y, tuple):
        return len(x) == len(y) and all(_same_value(a, b) for a, b in zip(x, y))
    if _is_number(x) or _is_number(y):
        return same_number(x, y)
    if isinstance(x, Matrix) or isinstance(y, Matrix):
        return x == y
    return type(x) is type(y) and x == y


def _show(x: Any) -> str:
    if isinstance(x, tuple):
        return "(" + ", ".join(_show(v) for v in x) + ")"
    if _is_number(x):
        return format_number(x)
    if isinstance(x, Matrix):
        entries = ", ".join(f"({i},{j})={format_number(v)}" for (i, j), v in sorted(x.entries.items())[:8])
        return f"[{x.rows}x{x.cols}: {entries}{', ...' if x.nnz > 8 else ''}]"
    return repr(x)


def _node_differences(a: Node, b: Node) -> list[str]:
    where = f"%{a.id}"
    out = [
        f"{where}: {field} {getattr(a, field)!r} != {getattr(b, field)!r}"
        for field in ("kind", "operands", "dim", "name", "loc", "labels")
        if getattr(a, field) != getattr(b, field)
    ]
    if a.attrs.keys() != b.attrs.keys():
        out.append(f"{where}: attributes {sorted(a.attrs)} != {sorted(b.attrs)}")
    for key in a.attrs.keys() & b.attrs.keys():
        if not _same_value(a.attrs[key], b.attrs[key]):
            out.append(f"{where}: attribute {key!r} {_show(a.attrs[key])} != {_show(b.attrs[key])}")
    return out


def graph_differences(a: Graph, b: Graph) -> list[str]:
    """Human-readable differences between two graphs (empty when they are the same), for test messages."""
    out: list[str] = []
    ids_a, ids_b = list(a.nodes), list(b.nodes)
    if ids_a != ids_b:
        only_a = [f"%{i}" for i in ids_a if i not in b.nodes]
        only_b = [f"%{i}" for i in ids_b if i not in a.nodes]
        if only_a or only_b:
            out.append(f"nodes only in the first graph: {only_a}; only in the second: {only_b}")
        else:
            out.append("the nodes are in a different order")
    for node_id in ids_a:
        if node_id in b.nodes:
            out += _node_differences(a.nodes[node_id], b.nodes[node_id])
    if a.outputs != b.outputs:
        out.append(f"outputs {a.outputs} != {b.outputs}")
    return out


def same_graph(a: Graph, b: Graph) -> bool:
    return not graph_differences(a, b)
