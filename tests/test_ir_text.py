"""The textual form of the graph: round trips, a fixed point, readable errors; and graph equality.

The graph generators here (``every_kind_graph``, ``graphs``) are shared with ``test_serialize``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from gmpy2 import mpq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lsrl.ir.equality import graph_differences, same_graph
from lsrl.ir.graph import (
    FLOAT_FUNCTIONS,
    INT,
    KINDS,
    MATRIX,
    VECTOR,
    Graph,
    Kind,
    Label,
    Loc,
)
from lsrl.ir.interpret import NotExactError, run
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import add, same_number
from lsrl.ir.serialize import graph_from_json, graph_to_json
from lsrl.ir.text import TextParseError, parse_graph, print_graph
from lsrl.ir.verify import verify

from lsrl.corpus import CASES, Case, as_fraction


def assert_same(got: Graph, want: Graph) -> None:
    differences = graph_differences(got, want)
    assert not differences, "\n".join(differences)


def text_round_trip(graph: Graph) -> Graph:
    return parse_graph(print_graph(graph))


def json_round_trip(graph: Graph) -> Graph:
    """Through JSON text, not just the dict, so the number encodings are exercised."""
    return graph_from_json(json.loads(json.dumps(graph_to_json(graph))))


def assert_same_outputs(case: Case, before: Graph, after: Graph) -> None:
    """Exact outputs, or float64 ones bit for bit where a row has irrational (float) weights.

    On the row's first run only: the exact interpreter is slow on the large rows, one run already
    exercises every node, and ``assert_same`` has compared every weight.
    """
    inputs = [[as_fraction(v) for v in tok] for tok in case.runs[0].inputs]
    try:
        want = run(before, inputs, exact=True)
    except NotExactError:
        floats = [[float(v) for v in tok] for tok in inputs]
        assert np.array_equal(run(before, floats), run(after, floats), equal_nan=True)
        return
    got = run(after, inputs, exact=True)
    assert want.shape == got.shape
    assert all(same_number(a, b) for a, b in zip(want.flat, got.flat))


# --- graphs --------------------------------------------------------------------------------------
def every_kind_graph() -> Graph:
    """One node of every kind, float and exact weights, odd names, locs and labels, two outputs."""
    g = Graph()
    g.add("input", [], 3, name="x", loc=Loc("dir with space/odd \"name\"\\:1.lsrl", 1, 1))
    g.add("const", [], 2, {"value": (mpq(1, 3), 0.1)}, name="c", node_id=2)
    g.add("slice", [0], 2, {"start": 1, "stop": 3}, name="x[1:3]", loc=Loc("üñí:2:3\n.lsrl", 2, 7))
    g.add(
        "affine", [0, 2, 3], 2,
        {
            "weights": (Matrix(2, 3, {(0, 2): mpq(-7, 2)}), Matrix.eye(2, 2.5), Matrix.zeros(2, 2)),
            "bias": (mpq(0), -0.0),
        },
        name='say "hi"\t\\ #not a comment',
    )
    g.add("relu", [4], 2, labels=[Label("reg", 0), Label("reg", 1)])
    g.add("mul", [5, 2], 2, labels=[Label("gate", 3), Label("", -1)])
    cat_labels = [Label("a", 0), Label("a", 1), Label("b", 0)] + [Label("a", i) for i in range(2, 6)]
    g.add("concat", [6, 0, 5], 7, name="cat", labels=cat_labels)
    g.add(
        "state", [7, 0], 2,
        {
            "A": Matrix(2, 2, {(0, 1): 0.5, (1, 0): mpq(1, 10**20)}),
            "B": (Matrix(2, 7, {(1, 6): 1.0}), Matrix(2, 3, {(0, 0): mpq(1)})),
            "bias": (1e-300, float("inf")),
            "init": (mpq(-5), mpq(2, 3)),
        },
        name="s", loc=Loc("", 0, 0), node_id=11,
    )
    g.add("state", [], 1, {"A": Matrix.eye(1), "B": (), "bias": (mpq(1),), "init": (mpq(0),)}, name="counter")
    g.add("affine", [], 1, {"weights": (), "bias": (mpq(4),)})
    g.add("step", [4], 2, {"low": (mpq(-1, 3), 0.25), "high": (mpq(1, 1000), 1e10)}, name="larger/step", node_id=20)
    g.add("gated_state", [20, 5], 2, {"init": (mpq(1, 2), -3.5)}, name="held", node_id=29)
    g.add("matrix_state", [0, 0, 20], 6, {"keys": 3}, name="memory", node_id=28)
    g.add("slice", [0], 1, {"start": 0, "stop": 1}, name="rate", node_id=27)
    g.add("delta_state", [27, 27, 0, 20], 6, {"keys": 3}, name="delta", node_id=26)
    g.add("matrix_state", [27, 0, 0], 9, {"keys": 3}, name="keys", node_id=25)
    g.add("read", [26, 0], 2, name="recall", node_id=23)
    g.add("solve", [25, 0], 3, {"shift": (mpq(1), 0.5, mpq(0)), "steps": 2}, name="mesa", node_id=24)
    for k, name in enumerate(FLOAT_FUNCTIONS):  # one node of each float function, side by side
        g.add(name, [20], 2, name=f"{name}/x", node_id=30 + k)
    g.add("select", [20, 5], 2, {"big": (mpq(10**10), 0.5)}, name="ifelse/select", node_id=21)
    g.add_output(11, "state")
    g.add_output(7, "")
    g.add_output(12, "counter")
    g.add_output(11, "state again")
    g.add_output(21, "selected")
    verify(g)
    return g


NUMBERS = st.one_of(
    st.fractions(min_value=-100, max_value=100, max_denominator=30).map(lambda f: mpq(f.numerator, f.denominator)),
    st.integers(-(10**30), 10**30).map(mpq),
    st.floats(allow_nan=False),
)
NAMES = st.text(max_size=6)


def vectors(n: int) -> st.SearchStrategy:
    return st.lists(NUMBERS, min_size=n, max_size=n).map(tuple)


def matrices(rows: int, cols: int) -> st.SearchStrategy:
    keys = st.tuples(st.integers(0, rows - 1), st.integers(0, cols - 1))
    return st.dictionaries(keys, NUMBERS, max_size=4).map(lambda e: Matrix(rows, cols, e))


# For each kind but input: draw(dims of the existing nodes) -> (operands, dim, attrs).
def _const(draw, dims):
    value = draw(vectors(draw(st.integers(1, 3))))
    return [], len(value), {"value": value}


def _affine(draw, dims):
    ops = draw(st.lists(st.sampled_from(sorted(dims)), max_size=3))
    n = draw(st.integers(1, 3))
    weights = tuple(draw(matrices(n, dims[o])) for o in ops)
    return ops, n, {"weights": weights, "bias": draw(vectors(n))}


def _relu(draw, dims):
    op = draw(st.sampled_from(sorted(dims)))
    return [op], dims[op], {}


def _step(draw, dims):
    op = draw(st.sampled_from(sorted(dims)))
    low = draw(vectors(dims[op]).filter(lambda v: all(abs(x) < 1e6 for x in v)))
    widths = draw(st.lists(st.sampled_from([mpq(1, 1000), mpq(1, 3), mpq(2), 0.5]), min_size=dims[op], max_size=dims[op]))
    return [op], dims[op], {"low": low, "high": tuple(add(lo, w) for lo, w in zip(low, widths))}


def _select(draw, dims):
    a = draw(st.sampled_from(sorted(dims)))
    b = draw(st.sampled_from(sorted(i for i in dims if dims[i] == dims[a])))
    big = draw(st.lists(st.sampled_from([mpq(10**10), mpq(64), mpq(1, 2), 1e10]), min_size=dims[a], max_size=dims[a]))
    return [a, b], dims[a], {"big": tuple(big)}


def _gated_state(draw, dims):
    a = draw(st.sampled_from(sorted(dims)))
    b = draw(st.sampled_from(sorted(i for i in dims if dims[i] == dims[a])))
    return [a, b], dims[a], {"init": draw(vectors(dims[a]))}


def _matrix_state(draw, dims):
    key = draw(st.sampled_from(sorted(dims)))
    value = draw(st.sampled_from(sorted(dims)))
    decay = draw(st.sampled_from(sorted(i for i in dims if dims[i] in (1, dims[key]))))
    return [decay, key, value], dims[key] * dims[value], {"keys": dims[key]}


def _delta_state(draw, dims):
    ones = sorted(i for i in dims if dims[i] == 1)
    if not ones:  # no operand of length 1 to be alpha and beta: a ReLU instead
        return ("relu", *_relu(draw, dims))
    key, value = draw(st.sampled_from(sorted(dims))), draw(st.sampled_from(sorted(dims)))
    alpha, beta = draw(st.sampled_from(ones)), draw(st.sampled_from(ones))
    return [alpha, beta, key, value], dims[key] * dims[value], {"keys": dims[key]}


def _solve(draw, dims):
    square = [(m, q) for m in dims for q in dims if dims[m] == dims[q] ** 2]
    if not square:  # no square matrix to solve: a ReLU instead
        return ("relu", *_relu(draw, dims))
    m, q = draw(st.sampled_from(sorted(square)))
    return [m, q], dims[q], {"shift": draw(vectors(dims[q])), "steps": draw(st.integers(0, 3))}


def _read(draw, dims):
    divisible = [(s, q) for s in dims for q in dims if dims[s] % dims[q] == 0]
    state, query = draw(st.sampled_from(sorted(divisible)))
    return [state, query], dims[state] // dims[query], {}


def _mul(draw, dims):
    a = draw(st.sampled_from(sorted(dims)))
    b = draw(st.sampled_from(sorted(i for i in dims if dims[i] == dims[a])))
    return [a, b], dims[a], {}


def _concat(draw, dims):
    ops = draw(st.lists(st.sampled_from(sorted(dims)), min_size=1, max_size=3))
    return ops, sum(dims[o] for o in ops), {}


def _slice(draw, dims):
    op = draw(st.sampled_from(sorted(dims)))
    start = draw(st.integers(0, dims[op] - 1))
    stop = draw(st.integers(start + 1, dims[op]))
    return [op], stop - start, {"start": start, "stop": stop}


def _state(draw, dims):
    ops = draw(st.lists(st.sampled_from(sorted(dims)), max_size=2))
    n = draw(st.integers(1, 3))
    attrs = {
        "A": draw(matrices(n, n)),
        "B": tuple(draw(matrices(n, dims[o])) for o in ops),
        "bias": draw(vectors(n)),
        "init": draw(vectors(n)),
    }
    return ops, n, attrs


NODE_MAKERS = {"const": _const, "affine": _affine, "relu": _relu, "step": _step, "select": _select, "mul": _mul,
               "concat": _concat, "slice": _slice, "state": _state, "gated_state": _gated_state, "matrix_state": _matrix_state,
               "delta_state": _delta_state, "read": _read, "solve": _solve,
               **{name: _relu for name in FLOAT_FUNCTIONS}}


@st.composite
def graphs(draw) -> Graph:
    """Small valid graphs of random kinds, weights, ids, names, locs, labels and node order."""
    node_id = draw(st.integers(0, 3))
    dims = {node_id: draw(st.integers(1, 3))}
    nodes = [(node_id, "input", [], dims[node_id], {})]
    for kind in draw(st.lists(st.sampled_from(sorted(NODE_MAKERS)), max_size=6)):
        node_id += draw(st.integers(1, 3))
        made = NODE_MAKERS[kind](draw, dims)
        kind, (operands, dim, attrs) = (made[0], made[1:]) if len(made) == 4 else (kind, made)
        dims[node_id] = dim
        nodes.append((node_id, kind, operands, dim, attrs))
    if draw(st.booleans()):  # operands may come after their users in the graph's order
        nodes = draw(st.permutations(nodes))
    g = Graph()
    for node_id, kind, operands, dim, attrs in nodes:
        labels = draw(st.none() | st.lists(st.builds(Label, NAMES, st.integers(-2, 5)), min_size=dim, max_size=dim))
        loc = draw(st.none() | st.builds(Loc, NAMES, st.integers(0, 10**6), st.integers(0, 300)))
        g.add(kind, operands, dim, attrs, draw(NAMES), loc, labels, node_id=node_id)
    for _ in range(draw(st.integers(1, 3))):
        g.add_output(draw(st.sampled_from(sorted(dims))), draw(NAMES))
    verify(g)
    return g


def test_generators_cover_every_kind() -> None:
    """A new node kind must be added to the generators, and so to every round-trip test."""
    assert set(NODE_MAKERS) | {"input"} == set(KINDS)
    assert {n.kind for n in every_kind_graph()} == set(KINDS)


# --- round trips ---------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_table_round_trip(case: Case) -> None:
    """Text, then JSON: the same graph each time, and the same outputs at the end."""
    graph = case.graph()
    text = print_graph(graph)
    parsed = parse_graph(text)
    assert_same(parsed, graph)
    assert print_graph(parsed) == text
    loaded = json_round_trip(parsed)
    assert_same(loaded, graph)
    assert_same_outputs(case, graph, loaded)


def test_every_kind_round_trip() -> None:
    graph = every_kind_graph()
    parsed = text_round_trip(graph)
    assert_same(parsed, graph)
    assert print_graph(parsed) == print_graph(graph)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs())
def test_random_graphs_round_trip(graph: Graph) -> None:
    """Text and JSON in one test: drawing the graphs costs more than both round trips."""
    text = print_graph(graph)
    parsed = parse_graph(text)
    assert_same(parsed, graph)
    assert print_graph(parsed) == text
    assert_same(json_round_trip(graph), graph)


def test_printed_form() -> None:
    text = print_graph(every_kind_graph())
    assert '%2 = const : 2 {value=[1/3, float(0.1)]} name "c"' in text
    assert "{start=1, stop=3}" in text
    assert "[2x3: (0,2)=-7/2]" in text and "[2x2]" in text  # sparse; an all-zero matrix has no entries
    assert "bias=[float(1e-300), float(inf)]" in text
    assert 'labels ["a"[0:2], "b"[0], "a"[2:6]]' in text
    assert 'labels ["gate"[3], ""[-1]]' in text
    assert 'name "say \\"hi\\"\\t\\\\ #not a comment"' in text
    assert 'at "üñí:2:3\\n.lsrl":2:7' in text
    assert "output %7\n" in text and 'output "counter" = %12' in text
    assert "labels" not in text.split("\n")[1]  # default labels are implicit


def test_hand_written_text_runs() -> None:
    graph = parse_graph(
        """
        # running count of ones, minus one half, through a ReLU
        graph {
          %0 = input : 1 name "x"
          %1 = state(%0) : 1 {A=[1x1: (0,0)=1], B=([1x1: (0,0)=1]), bias=[0], init=[0]}
          %2 = affine(%1) : 1 {weights=([1x1: (0,0)=1]), bias=[-1/2]}   # comments end lines
          %3 = relu(%2) : 1
          output "y" = %3
        }
        """
    )
    assert graph[1].labels == (Label("%1", 0),)
    assert [v for v in run(graph, [1, 0, 1, 1], exact=True).flat] == [mpq(1, 2), mpq(1, 2), mpq(3, 2), mpq(5, 2)]


def test_new_kinds_need_no_grammar_change(monkeypatch: pytest.MonkeyPatch) -> None:
    """Attribute names that are keywords of the text, and a kind named like one, still round-trip."""
    kind = Kind("output", 1, {"name": VECTOR, "at": INT, "graph": MATRIX}, lambda dims, attrs: len(attrs["name"]))
    monkeypatch.setitem(KINDS, "output", kind)
    g = Graph()
    g.add("input", [], 2, name="x")
    g.add("output", [0], 1, {"name": (mpq(1),), "at": -3, "graph": Matrix.eye(2)})
    g.add_output(1, "labels")
    assert_same(text_round_trip(g), g)


# --- errors --------------------------------------------------------------------------------------
HEAD = 'graph {\n  %0 = input : 2 name "x"\n'


@pytest.mark.parametrize(
    "text, line, col, message",
    [
        ("", 1, 1, "unexpected end of text, expected 'graph'"),
        ("graph {", 1, 8, "unexpected end of text"),
        ("graph { $ }", 1, 9, "unexpected character '$'"),
        (HEAD + "  %1 = relu(%0) : 2 name x\n}", 3, 26, "expected a quoted string"),
        (HEAD + "  %1 = softmax(%0) : 2\n}", 3, 8, "unknown node kind 'softmax'"),
        (HEAD + "  %0 = relu(%0) : 2\n}", 3, 3, "%0 is defined twice"),
        (HEAD + "  %1 = relu(%7) : 2\n}", 3, 13, "%7 is not defined"),
        (HEAD + "  output %9\n}", 3, 10, "%9 is not defined"),
        (HEAD + "  %1 = const : 1\n}", 3, 8, "const needs attribute(s) value"),
        (HEAD + "  %1 = const : 1 {value=[1], bias=[2]}\n}", 3, 30, "const has no attribute 'bias'"),
        (HEAD + "  %1 = const : 1 {value=[1], value=[1]}\n}", 3, 30, "attribute 'value' given twice"),
        (HEAD + "  %1 = const : 1 {value=[1x1]}\n}", 3, 19, "value: expected a vector"),
        (HEAD + "  %1 = const : 1 {value=[1/0]}\n}", 3, 26, "not a number: 1/0"),
        (HEAD + "  %1 = const : 1 {value=[float(one)]}\n}", 3, 26, "not a number: float(one)"),
        (HEAD + "  %1 = slice(%0) : 1 {start=1/2, stop=1}\n}", 3, 29, "expected an integer, found 1/2"),
        (HEAD + "  %1 = affine(%0) : 1 {weights=[1x2], bias=[0]}\n}", 3, 24, "weights: expected a tuple of matrices"),
        (HEAD + "  %1 = affine(%0) : 1 {weights=([1x2: (0,2)=1]), bias=[0]}\n}", 3, 40, "outside a 1x2 matrix"),
        (HEAD + "  %1 = affine(%0) : 1 {weights=([1x2: (0,1)=1, (0,1)=2]), bias=[0]}\n}", 3, 49, "given twice"),
        (HEAD + '  %1 = relu(%0) : 2 name "\\q"\n}', 3, 26, "bad string"),
        (HEAD + '  %1 = relu(%0) : 2 labels ["a"[2:2]]\n}', 3, 29, "empty label range [2:2]"),
        # verifier failures point at the node they name, else at the end
        (HEAD + "  %1 = relu(%0) : 3\n  output %1\n}", 3, 3, "invalid graph: %1 (relu) has length 3"),
        (HEAD + '  %1 = relu(%0) : 2 labels ["a"[0]]\n  output %1\n}', 3, 3, "one label per output unit"),
        (HEAD + "}", 3, 2, "invalid graph: the graph has no output"),
    ],
)
def test_parse_errors(text: str, line: int, col: int, message: str) -> None:
    with pytest.raises(TextParseError) as info:
        parse_graph(text)
    assert message in info.value.message
    assert (info.value.line, info.value.column) == (line, col)
    assert str(info.value).startswith(f"{line}:{col}: ")


def test_printing_needs_declared_kinds_and_attributes() -> None:
    g = every_kind_graph()
    g[5].attrs["alpha"] = 1
    with pytest.raises(ValueError, match="cannot print %5: relu has no attribute 'alpha'"):
        print_graph(g)
    g[5].kind = "previous"
    with pytest.raises(ValueError, match="cannot print %5: unknown node kind 'previous'"):
        print_graph(g)


def test_parse_error_is_a_value_error_without_lark_context() -> None:
    with pytest.raises(ValueError) as info:
        parse_graph("graph { %0 = }")
    assert info.value.__cause__ is None and info.value.__suppress_context__


# --- equality ------------------------------------------------------------------------------------
def test_equality_tells_exact_from_float() -> None:
    a, b = every_kind_graph(), every_kind_graph()
    assert same_graph(a, b)
    b[2].attrs["value"] = (1 / 3, 0.1)
    assert graph_differences(a, b) == [
        "%2: attribute 'value' (1/3, float(0.1)) != (float(0.3333333333333333), float(0.1))"
    ]
    b = every_kind_graph()
    b[11].attrs["A"] = Matrix(2, 2, {(0, 1): mpq(1, 2), (1, 0): mpq(1, 10**20)})
    assert graph_differences(a, b)[0].startswith("%11: attribute 'A' [2x2: (0,1)=float(0.5)")


def test_equality_reports_every_field() -> None:
    a, b = every_kind_graph(), every_kind_graph()
    b[0].name = "y"
    b[5].labels = (Label("reg", 0), Label("reg", 2))
    b[3].loc = None
    b[6].operands = (5, 5)
    b.outputs.reverse()
    b.remove(12)
    differences = graph_differences(a, b)
    assert len(differences) == 6, differences
    assert differences[0] == "nodes only in the first graph: ['%12']; only in the second: []"
    assert any(d.startswith("%0: name 'x' != 'y'") for d in differences)
    assert any(d.startswith("%5: labels") for d in differences)
    assert any(d.startswith("%3: loc") for d in differences)
    assert any(d.startswith("%6: operands (5, 2) != (5, 5)") for d in differences)
    assert differences[-1].startswith("outputs")
    c = Graph()
    for node in reversed(list(a)):
        c.add(node.kind, node.operands, node.dim, node.attrs, node.name, node.loc, node.labels, node_id=node.id)
    c.outputs = list(a.outputs)
    assert graph_differences(a, c) == ["the nodes are in a different order"]
