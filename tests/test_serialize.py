"""The JSON form of the graph: round trips, number kinds, sparse matrices and malformed files.

``test_ir_text`` also runs random graphs through JSON, and checks the table rows' exact outputs
after a text-then-JSON round trip.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from gmpy2 import mpq
from lsrl.ir.serialize import (
    GraphFileError,
    graph_from_json,
    graph_to_json,
    load_graph,
    save_graph,
)

from lsrl.corpus import CASES, Case
from tests.test_ir_text import assert_same, every_kind_graph, json_round_trip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_table_round_trip(case: Case) -> None:
    graph = case.graph()
    assert_same(json_round_trip(graph), graph)


def test_every_kind_file_round_trip(tmp_path: Path) -> None:
    graph = every_kind_graph()
    path = tmp_path / "graph.json"
    save_graph(graph, path)
    assert_same(load_graph(path), graph)
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) == len(graph) + 5  # one node per line
    assert json.loads(text) == json.loads(json.dumps(graph_to_json(graph)))


def test_numbers_keep_their_kind() -> None:
    data = graph_to_json(every_kind_graph())
    assert (data["format"], data["version"]) == ("lsrl.graph", 1)
    nodes = {n["id"]: n for n in data["nodes"]}
    assert nodes[2]["attrs"]["value"] == ["1/3", 0.1]
    state = nodes[11]["attrs"]
    assert state["A"] == {"shape": [2, 2], "entries": [[0, 1, 0.5], [1, 0, "1/" + str(10**20)]]}
    assert state["B"][0] == {"shape": [2, 7], "entries": [[1, 6, 1.0]]}  # sparse [row, col, value]
    assert state["init"] == ["-5", "2/3"]
    assert nodes[4]["attrs"]["weights"][2] == {"shape": [2, 2], "entries": []}
    assert nodes[3]["loc"] == {"file": "üñí:2:3\n.lsrl", "line": 2, "col": 7}
    assert nodes[6]["labels"] == [["gate", 3], ["", -1]]
    assert data["outputs"][:2] == [{"name": "state", "node": 11}, {"name": "", "node": 7}]
    loaded = graph_from_json(json.loads(json.dumps(data)))
    assert loaded[11].attrs["A"].entries[(0, 1)] == 0.5 and type(loaded[11].attrs["A"].entries[(0, 1)]) is float
    assert type(loaded[11].attrs["init"][1]) is type(mpq(1))


def test_hand_written_object_with_defaults() -> None:
    """``loc`` and ``labels`` may be left out; a JSON integer reads as an exact number."""
    graph = graph_from_json({
        "format": "lsrl.graph", "version": 1,
        "nodes": [
            {"id": 0, "kind": "input", "operands": [], "dim": 1, "attrs": {}, "name": "x"},
            {"id": 1, "kind": "affine", "operands": [0], "dim": 1, "name": "",
             "attrs": {"weights": [{"shape": [1, 1], "entries": [[0, 0, 2]]}], "bias": ["0.25"]}},
        ],
        "outputs": [{"name": "y", "node": 1}],
    })
    assert graph[1].attrs["weights"][0].entries == {(0, 0): mpq(2)}
    assert graph[1].attrs["bias"] == (mpq(1, 4),)
    assert graph[1].loc is None and str(graph[1].labels[0]) == "%1[0]"


def _broken(change) -> dict:
    data = copy.deepcopy(graph_to_json(every_kind_graph()))
    change(data)
    return data


def _set(path: list, value):
    def change(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        if value is KeyError:
            del target[path[-1]]
        else:
            target[path[-1]] = value
    return change


@pytest.mark.parametrize(
    "change, message",
    [
        (_set(["format"], "onnx"), "not an lsrl graph: format is 'onnx'"),
        (_set(["version"], 2), "unsupported graph file version 2"),
        (_set(["nodes"], KeyError), "graph: missing 'nodes'"),
        (_set(["nodes", 0, "id"], "0"), "nodes[0].id: expected an integer, got \"0\""),
        (_set(["nodes", 1, "id"], 0), "nodes[1] (%0): node id used twice"),
        (_set(["nodes", 1, "kind"], "softmax"), "nodes[1] (%2): unknown node kind 'softmax'"),
        (_set(["nodes", 1, "attrs"], {}), "a const node has attributes ['value'], got []"),
        (_set(["nodes", 1, "attrs", "value", 0], "float(0.5)"), 'attrs.value[0]: not a number: "float(0.5)"'),
        (_set(["nodes", 1, "attrs", "value", 0], True), "nodes[1] (%2).attrs.value[0]: not a number: true"),
        (_set(["nodes", 2, "attrs", "start"], 1.0), "nodes[2] (%3).attrs.start: expected an integer"),
        (_set(["nodes", 3, "attrs", "weights", 0, "shape"], [2]), "shape: expected [rows, cols]"),
        (_set(["nodes", 3, "attrs", "weights", 0, "entries", 0], [0, 3, "1"]), "outside the 2x3 matrix"),
        (_set(["nodes", 3, "attrs", "weights", 0, "entries", 0], [0, "2", "1"]), "expected [row, col, value]"),
        (_set(["nodes", 3, "loc"], {"file": "f", "line": 1}), "nodes[3] (%4).loc: missing 'col'"),
        (_set(["nodes", 4, "labels", 0], ["reg"]), "nodes[4] (%5).labels[0]: expected [name, index]"),
        (_set(["nodes", 4, "dim"], 3), "invalid graph: %5 (relu) has length 3"),
        (_set(["outputs", 0, "node"], 99), "invalid graph: output 'state' refers to missing node %99"),
        (_set(["outputs"], {}), "graph.outputs: expected a list"),
    ],
)
def test_malformed_objects(change, message: str) -> None:
    with pytest.raises(GraphFileError) as info:
        graph_from_json(_broken(change))
    assert message in str(info.value)


def test_malformed_files(tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=r"g\.json: cannot read a graph: Expecting property name"):
        load_graph(path)
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(GraphFileError, match=r"g\.json: graph: expected an object"):
        load_graph(path)
    with pytest.raises(GraphFileError, match="missing.json: cannot read a graph"):
        load_graph(tmp_path / "missing.json")
