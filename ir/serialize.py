"""The program graph as JSON: a stable file format for tools, never pickle.

    {"format": "lsrl.graph", "version": 1,
     "nodes": [{"id": 0, "kind": "input", "operands": [], "dim": 1, "attrs": {}, "name": "x",
                "loc": {"file": "more_ones.lsrl", "line": 2, "col": 1}, "labels": [["x", 0]]}, ...],
     "outputs": [{"name": "", "node": 14}]}

Exact numbers are strings ("1/3", "-2") and floats are JSON numbers, so neither turns into the
other on the way through. Matrices are sparse: ``{"shape": [rows, cols], "entries": [[i, j, v]]}``.
Labels are always written out, so a reader in another language needs no rule for default labels.
Attributes are written and read with the types ``ir.graph.KINDS`` declares, so a new node kind
needs no change here. Loading checks every field and runs the verifier: a malformed file is a
:class:`GraphFileError`, never a crash deeper in the compiler.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from lsrl.ir.graph import INT, KINDS, MATRICES, MATRIX, VECTOR, Graph, Label, Loc
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import Number, exact, is_exact
from lsrl.ir.verify import VerifyError, verify

FORMAT = "lsrl.graph"
VERSION = 1


class GraphFileError(ValueError):
    """A graph file or JSON object that is malformed, of another format or version, or invalid."""


# --- writing --------------------------------------------------------------------------------------
def _number_out(x: Number) -> str | float:
    return str(x) if is_exact(x) else float(x)


def _matrix_out(m: Matrix) -> dict[str, Any]:
    return {"shape": [m.rows, m.cols], "entries": [[i, j, _number_out(v)] for (i, j), v in sorted(m.entries.items())]}


_WRITERS: dict[str, Callable[[Any], Any]] = {
    VECTOR: lambda v: [_number_out(x) for x in v],
    MATRIX: _matrix_out,
    MATRICES: lambda ms: [_matrix_out(m) for m in ms],
    INT: lambda v: v,
}


def graph_to_json(graph: Graph) -> dict[str, Any]:
    """The JSON object of a graph; the graph is verified first, so what is written can be read back."""
    verify(graph)
    nodes = []
    for n in graph:
        kind = KINDS[n.kind]
        nodes.append({
            "id": n.id,
            "kind": n.kind,
            "operands": list(n.operands),
            "dim": n.dim,
            "attrs": {k: _WRITERS[kind.attribute_type(k)](v) for k, v in n.attrs.items()},
            "name": n.name,
            "loc": None if n.loc is None else {"file": n.loc.file, "line": n.loc.line, "col": n.loc.col},
            "labels": [[label.name, label.index] for label in n.labels],
        })
    return {
        "format": FORMAT,
        "version": VERSION,
        "nodes": nodes,
        "outputs": [{"name": o.name, "node": o.node} for o in graph.outputs],
    }


# --- reading --------------------------------------------------------------------------------------
_TYPE_NAMES = {int: "an integer", str: "a string", list: "a list", dict: "an object"}


def _typed(value: Any, typ: type, where: str) -> Any:
    if type(value) is not typ:  # also keeps true/false from passing as integers
        raise GraphFileError(f"{where}: expected {_TYPE_NAMES[typ]}, got {json.dumps(value)[:60]}")
    return value


def _field(obj: dict, key: str, typ: type, where: str) -> Any:
    if key not in obj:
        raise GraphFileError(f"{where}: missing {key!r}")
    return _typed(obj[key], typ, f"{where}.{key}")


def _number_in(value: Any, where: str) -> Number:
    """A string is exact, a JSON number with a fraction or exponent is a float, an integer is exact."""
    if type(value) is float:
        return value
    if type(value) is int:
        return exact(value)
    if type(value) is str:
        try:
            return exact(value)
        except ValueError:
            pass
    raise GraphFileError(f"{where}: not a number: {json.dumps(value)[:60]}")


def _vector_in(value: Any, where: str) -> tuple[Number, ...]:
    return tuple(_number_in(x, f"{where}[{i}]") for i, x in enumerate(_typed(value, list, where)))


def _matrix_in(value: Any, where: str) -> Matrix:
    shape = _field(_typed(value, dict, where), "shape", list, where)
    if len(shape) != 2 or any(type(n) is not int or n < 0 for n in shape):
        raise GraphFileError(f"{where}.shape: expected [rows, cols], got {shape}")
    rows, cols = shape
    entries: dict[tuple[int, int], Number] = {}
    for k, entry in enumerate(_field(value, "entries", list, where)):
        at = f"{where}.entries[{k}]"
        if type(entry) is not list or len(entry) != 3 or type(entry[0]) is not int or type(entry[1]) is not int:
            raise GraphFileError(f"{at}: expected [row, col, value], got {json.dumps(entry)[:60]}")
        i, j, v = entry
        if not (0 <= i < rows and 0 <= j < cols) or (i, j) in entries:
            raise GraphFileError(f"{at}: entry ({i}, {j}) is outside the {rows}x{cols} matrix or repeated")
        entries[(i, j)] = _number_in(v, at)
    return Matrix(rows, cols, entries)


_READERS: dict[str, Callable[[Any, str], Any]] = {
    VECTOR: _vector_in,
    MATRIX: _matrix_in,
    MATRICES: lambda v, where: tuple(_matrix_in(m, f"{where}[{i}]") for i, m in enumerate(_typed(v, list, where))),
    INT: lambda v, where: _typed(v, int, where),
}


def _loc_in(value: Any, where: str) -> Loc | None:
    if value is None:
        return None
    _typed(value, dict, where)
    return Loc(_field(value, "file", str, where), _field(value, "line", int, where), _field(value, "col", int, where))


def _labels_in(value: Any, where: str) -> list[Label]:
    labels = []
    for i, pair in enumerate(_typed(value, list, where)):
        if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not str or type(pair[1]) is not int:
            raise GraphFileError(f"{where}[{i}]: expected [name, index], got {json.dumps(pair)[:60]}")
        labels.append(Label(pair[0], pair[1]))
    return labels


def _add_node(graph: Graph, data: Any, where: str) -> None:
    _typed(data, dict, where)
    node_id = _field(data, "id", int, where)
    where = f"{where} (%{node_id})"
    if node_id in graph.nodes:
        raise GraphFileError(f"{where}: node id used twice")
    kind = _field(data, "kind", str, where)
    if kind not in KINDS:
        raise GraphFileError(f"{where}: unknown node kind {kind!r}")
    types = {**KINDS[kind].attributes, **KINDS[kind].optional}
    attrs = _field(data, "attrs", dict, where)
    if not set(KINDS[kind].attributes) <= set(attrs) <= set(types):
        optional = f" (optional: {sorted(KINDS[kind].optional)})" if KINDS[kind].optional else ""
        raise GraphFileError(f"{where}: a {kind} node has attributes {sorted(KINDS[kind].attributes)}{optional}, got {sorted(attrs)}")
    graph.add(
        kind,
        [_typed(o, int, f"{where}.operands") for o in _field(data, "operands", list, where)],
        _field(data, "dim", int, where),
        {k: _READERS[types[k]](v, f"{where}.attrs.{k}") for k, v in attrs.items()},
        name=_field(data, "name", str, where),
        loc=_loc_in(data.get("loc"), f"{where}.loc"),
        labels=_labels_in(data["labels"], f"{where}.labels") if "labels" in data else None,
        node_id=node_id,
    )


def graph_from_json(data: Any) -> Graph:
    """Read and verify a graph object; ``loc`` may be left out and ``labels`` default as in ``Graph.add``."""
    _typed(data, dict, "graph")
    if data.get("format") != FORMAT:
        raise GraphFileError(f"not an lsrl graph: format is {data.get('format')!r}, expected {FORMAT!r}")
    if data.get("version") != VERSION:
        raise GraphFileError(f"unsupported graph file version {data.get('version')!r} (this lsrl reads {VERSION})")
    graph = Graph()
    for i, node in enumerate(_field(data, "nodes", list, "graph")):
        _add_node(graph, node, f"nodes[{i}]")
    for i, out in enumerate(_field(data, "outputs", list, "graph")):
        where = f"outputs[{i}]"
        _typed(out, dict, where)
        graph.add_output(_field(out, "node", int, where), _field(out, "name", str, where))
    try:
        verify(graph)
    except VerifyError as e:
        raise GraphFileError(f"invalid graph: {e}") from None
    return graph


# --- files ----------------------------------------------------------------------------------------
def save_graph(graph: Graph, path: str | Path) -> None:
    """Write one node per line, so files diff well and stay readable with large sparse matrices."""
    data = graph_to_json(graph)
    head = json.dumps({"format": data["format"], "version": data["version"]})[:-1]
    nodes = ",\n  ".join(json.dumps(n) for n in data["nodes"])
    text = f'{head},\n "nodes": [\n  {nodes}\n ],\n "outputs": {json.dumps(data["outputs"])}\n}}\n'
    Path(path).write_text(text, encoding="utf-8")


def load_graph(path: str | Path) -> Graph:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GraphFileError(f"{path}: cannot read a graph: {e}") from None
    try:
        return graph_from_json(data)
    except GraphFileError as e:
        raise GraphFileError(f"{path}: {e}") from None
