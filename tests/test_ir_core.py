"""Focused tests of the IR core: matrices, the verifier and the interpreter's rules."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from gmpy2 import mpq
from lsrl.ir.graph import Graph, Label
from lsrl.ir.interpret import NotExactError, run, trace
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import exact, format_number, parse_number, same_number
from lsrl.ir.verify import VerifyError, verify


def Q(text: str) -> mpq:
    return exact(text)


def test_exact_reads_what_the_user_wrote() -> None:
    assert exact("1/3") == Fraction(1, 3)
    assert exact(0.1) == Fraction(1, 10)
    assert exact("1e10") == 10**10
    assert exact(Fraction(-2, 6)) == Fraction(-1, 3)
    with pytest.raises(ValueError):
        exact("x")


def test_number_format_round_trip_keeps_kind() -> None:
    for value in [Q("1/3"), Q("-7"), 0.1, -2.5e-300, 1.0]:
        back = parse_number(format_number(value))
        assert same_number(back, value)
    assert not same_number(Q("1"), 1.0)


def test_matrix_product_is_exact_and_sparse() -> None:
    a = Matrix.from_rows([[Q("1/3"), 0], [0, 2]])
    b = Matrix.from_rows([[3, 1], [0, Q("1/2")]])
    c = a @ b
    assert c.to_rows() == [[1, Q("1/3")], [0, 1]]
    assert c.exact and c.nnz == 3
    assert not (a @ Matrix.from_rows([[0.5, 0], [0, 1]])).exact


def _affine_graph(weights: Matrix, bias: tuple) -> Graph:
    g = Graph()
    x = g.add("input", [], weights.cols, name="x")
    y = g.add("affine", [x.id], weights.rows, {"weights": (weights,), "bias": bias}, name="y")
    g.add_output(y.id, "y")
    return g


def test_verifier_rejects_shape_errors() -> None:
    g = _affine_graph(Matrix.eye(2), (Q("0"),))  # bias too short
    with pytest.raises(VerifyError, match="rows"):
        verify(g)


def test_verifier_rejects_two_inputs_and_missing_outputs() -> None:
    g = Graph()
    g.add("input", [], 1, name="a")
    g.add("input", [], 1, name="b")
    with pytest.raises(VerifyError, match="exactly one input"):
        verify(g)
    g = Graph()
    g.add("input", [], 1, name="a")
    with pytest.raises(VerifyError, match="no output"):
        verify(g)


def test_verifier_rejects_cycles_and_bad_labels() -> None:
    g = Graph()
    g.add("input", [], 1, name="x")
    g.add("relu", [2], 1, name="a", node_id=1)
    g.add("relu", [1], 1, name="b", node_id=2)
    g.add_output(1, "a")
    with pytest.raises(VerifyError, match="cycle"):
        verify(g)
    g = _affine_graph(Matrix.eye(1), (Q("0"),))
    g[1].labels = (Label("y", 0), Label("y", 1))
    with pytest.raises(VerifyError, match="label"):
        verify(g)


def test_state_with_general_transition_matches_a_hand_loop() -> None:
    rotation = Matrix.from_rows([[0, -1], [1, Q("1/2")]])
    g = Graph()
    x = g.add("input", [], 1, name="x")
    s = g.add(
        "state",
        [x.id],
        2,
        {"A": rotation, "B": (Matrix.from_rows([[1], [Q("1/3")]]),), "bias": (Q("1"), Q("0")), "init": (Q("2"), Q("-1"))},
        name="s",
    )
    g.add_output(s.id, "s")
    verify(g)
    inputs = [Q("1/2"), Q("0"), Q("-3"), Q("5/7")]
    state = [Fraction(2), Fraction(-1)]
    expected = []
    for u in inputs:
        u = Fraction(int(u.numerator), int(u.denominator))
        state = [-state[1] + u + 1, state[0] + Fraction(1, 2) * state[1] + u / 3]
        expected.append(state)
    got = run(g, inputs, exact=True)[0]
    assert [[Fraction(int(v.numerator), int(v.denominator)) for v in row] for row in got] == expected
    floats = run(g, [float(v) for v in inputs])[0]
    np.testing.assert_allclose(floats, [[float(v) for v in row] for row in expected], rtol=1e-12)


def test_exact_mode_refuses_float_weights_with_the_node_name() -> None:
    g = _affine_graph(Matrix.from_rows([[0.5]]), (Q("0"),))
    with pytest.raises(NotExactError, match="'y'"):
        run(g, [1], exact=True)
    assert run(g, [1.0])[0, 0, 0] == 0.5


def test_batches_run_independently() -> None:
    g = _affine_graph(Matrix.from_rows([[2, -1]]), (Q("1"),))
    batch = np.array([[[1, 2], [3, 4]], [[0, 0], [-1, 5]]], dtype=float)
    out = run(g, batch)
    np.testing.assert_array_equal(out[..., 0], 2 * batch[..., 0] - batch[..., 1] + 1)
    values = trace(g, batch)
    assert set(values) == {0, 1}
