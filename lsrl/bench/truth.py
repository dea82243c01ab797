"""The ground truth of a case (docs/bench.md): ``labels.json`` and ``graph.json``.

``labels.json`` says, for every layer of the (obfuscated) layered model, what each of its units
holds as a combination of the compiler's labelled units, and for every labelled unit the direction
of the layer's units that reads it (``value = direction . h``). Without obfuscation both are one
unit each; after ``mix`` they are directions. The labels are the compiler's (``ir.layered``): the
program value's name and index, its role, sign, the node of the graph that was compiled and where
the program wrote it; a distractor unit (``distract``'s free units) has the name and role
``distractor`` and no node.

``graph.json`` is the causal graph of that program graph: every node (a program value), the values
it reads, and the outputs it can influence.

``module.json`` (targets that are stock modules: rnn, lstm, gru, mamba, hawk) says where the
target's module holds each layer of the layered model: a stage's output and a linear reading.
"""

from __future__ import annotations

from typing import Any, Sequence

from lsrl.bench.intervene import sites, sites_json
from lsrl.bench.obfuscate import Basis
from lsrl.ir.graph import Graph, Loc
from lsrl.ir.layered import FREE, LayeredModel
from lsrl.ir.matrix import Matrix

LABELS_FORMAT, GRAPH_FORMAT = "lsrl.bench.labels", "lsrl.bench.graph"
MODULE_FORMAT, MODULE_FILE = "lsrl.bench.module", "module.json"
DISTRACTOR = "distractor"  # the name and role of a distractor unit in labels.json


def _loc(loc: Loc | None) -> dict | None:
    return None if loc is None else {"file": loc.file, "line": loc.line, "col": loc.col}


def _columns(matrix: Matrix) -> list[list[list[float]]]:
    """Per column j: ``[[row, entry], ...]`` (sparse)."""
    columns: list[list[list[float]]] = [[] for _ in range(matrix.cols)]
    for (i, j), v in sorted(matrix.entries.items()):
        columns[j].append([i, float(v)])
    return columns


def labels_json(model: LayeredModel, bases: Sequence[Basis], graph: Graph) -> dict[str, Any]:
    """``model`` is the compiler's labelled model (before obfuscation), ``bases`` each layer's
    change of basis, ``graph`` the graph it was compiled from (for locations). ``sites`` lists the
    values held in units of their own (``intervene.sites``), which interventions check."""

    def label(unit) -> dict[str, Any]:
        if unit.role == FREE:  # a distractor (``distract``): it carries no program value
            return {"name": DISTRACTOR, "index": unit.source.index, "role": DISTRACTOR, "sign": 1, "rectified": False,
                    "node": None, "unit": None, "loc": None}
        node = graph.nodes.get(unit.node) if unit.node is not None else None
        return {**unit.to_json(), "loc": _loc(node.loc if node else None)}

    layers = []
    for layer, basis in zip(model.layers, bases):
        rows = basis.inverse.row_items()  # old unit j = sum_k inverse[j, k] new_k
        values = [{**label(unit), "direction": [[k, float(v)] for k, v in row]} for unit, row in zip(layer.units, rows)]
        holds = [[[j, float(v)] for j, v in row] for row in basis.forward.row_items()]
        layers.append({"kind": layer.kind, "width": layer.width, "basis": "units" if basis.is_monomial else "directions",
                       "values": values, "units": holds})
    return {
        "format": LABELS_FORMAT,
        "input_labels": [[l.name, l.index] for l in model.input_labels],
        "output_labels": [[l.name, l.index] for l in model.output_labels],
        "layers": layers,
        "sites": sites_json(sites(model, graph), graph),
    }


def graph_json(graph: Graph) -> dict[str, Any]:
    """Every node with the nodes it reads and the output units (positions in the model's output)
    it can influence."""
    offsets, position = {}, 0
    for output in graph.outputs:
        offsets.setdefault(output.node, []).extend(range(position, position + graph.nodes[output.node].dim))
        position += graph.nodes[output.node].dim
    influences: dict[int, set[int]] = {}
    for node in reversed(list(graph.topological_order())):
        influences.setdefault(node.id, set()).update(offsets.get(node.id, ()))
        for operand in node.operands:
            influences.setdefault(operand, set()).update(influences[node.id])
    nodes = [
        {"id": node.id, "kind": node.kind, "name": node.name, "dim": node.dim,
         "labels": [[l.name, l.index] for l in node.labels], "loc": _loc(node.loc), "reads": list(node.operands),
         "influences": sorted(influences.get(node.id, ()))}
        for node in graph.topological_order()
    ]
    outputs = [{"name": o.name, "node": o.node, "units": offsets[o.node]} for o in graph.outputs]
    return {"format": GRAPH_FORMAT, "nodes": nodes, "outputs": outputs}


def readings_json(readings: Sequence) -> dict[str, Any]:
    """``module.json``: per hidden layer of the case's layered model, the stage of the target's
    module whose output holds it and how (``backends.target.LayerReading``: sparse rows of ``M``
    and the offset of ``values = M s + offset``), or null where no stage holds it alone."""
    layers: list[dict | None] = []
    for reading in readings:
        if reading is None:
            layers.append(None)
            continue
        rows = [[[j, float(v)] for j, v in row] for row in reading.matrix.row_items()]
        layers.append({"stage": reading.stage, "width": reading.matrix.cols, "rows": rows,
                       "offset": [float(v) for v in reading.offset]})
    return {"format": MODULE_FORMAT, "layers": layers}
