"""The Python builder: operators, broadcasting, state folding and its errors."""

from __future__ import annotations

from fractions import Fraction

import pytest
from lsrl.ir.interpret import run

import lsrl
from lsrl.errors import LsrlError


def _values(graph, inputs):
    return [[Fraction(int(v.numerator), int(v.denominator)) for v in row] for row in run(graph, inputs, exact=True)[0]]


def test_operators_and_broadcasting() -> None:
    p = lsrl.Program()
    x = p.input(2)
    first = x[0]
    p.output(x + first, "broadcast_sum")  # length-1 value broadcasts
    p.output(Fraction(1, 2) * x - 1, "scaled")
    p.output([[1, 1], [0, 2]] @ x, "matrix")
    p.output(x / 4, "divided")
    p.output(x * first, "gated")
    p.output(lsrl.concat(x[1], -x[0]), "concat")
    g = p.finish()
    got = _values(g, [[3, 5]])
    assert got == [[6, 8, Fraction(1, 2), Fraction(3, 2), 8, 10, Fraction(3, 4), Fraction(5, 4), 9, 15, 5, -3]]


def test_repeated_operands_merge_into_one_affine() -> None:
    p = lsrl.Program()
    x = p.input(1)
    y = x + x
    node = p.graph[y.id]
    assert node.kind == "affine" and node.operands == (x.id,)
    assert node.attrs["weights"][0].to_rows() == [[2]]


def test_state_update_folds_into_transition_inputs_and_bias() -> None:
    p = lsrl.Program()
    x = p.input(1)
    s = p.state([1, 0], lambda prev: lsrl.concat(prev[1] * 2 + x, prev[0] - 1), name="s")
    p.output(s)
    g = p.finish()
    node = g[s.id]
    assert node.attrs["A"].to_rows() == [[0, 2], [1, 0]]
    assert node.attrs["bias"] == (0, -1)
    assert [n.kind for n in g] == ["input", "state"]  # the update's own nodes are folded away
    state = [1, 0]
    expected = []
    for u in [3, -1, 2]:
        state = [2 * state[1] + u, state[0] - 1]
        expected.append(state)
    assert _values(g, [3, -1, 2]) == expected


def test_non_affine_update_is_refused_with_its_location() -> None:
    from lsrl.ir.graph import Loc

    p = lsrl.Program()
    x = p.input(1)
    p.loc = Loc("prog.lsrl", 3, 5)
    with pytest.raises(LsrlError, match="not affine") as err:
        p.state(0, lambda prev: lsrl.relu(prev) + x, name="s")
    assert err.value.loc == Loc("prog.lsrl", 3, 5)
    with pytest.raises(LsrlError, match="multiplies its previous value by itself"):
        p.state(0, lambda prev: prev * prev + x, name="t")
    # the failed updates leave nothing behind
    assert [n.kind for n in p.graph] == ["input"]


def test_user_mistakes_raise_lsrl_errors() -> None:
    p = lsrl.Program()
    x = p.input(2)
    with pytest.raises(LsrlError, match="division by a runtime value"):
        x / x
    with pytest.raises(LsrlError, match="length mismatch"):
        x + lsrl.concat(x, x[0])
    with pytest.raises(LsrlError, match="out of range"):
        x[2]
    with pytest.raises(LsrlError, match="exactly one input"):
        p.input(1)
    with pytest.raises(LsrlError, match="no output"):
        p.finish()


def test_delay_and_accumulate() -> None:
    p = lsrl.Program()
    x = p.input(1)
    p.output(lsrl.delay(x, 3), "delayed")
    p.output(lsrl.accumulate(x), "sum")
    g = p.finish()
    seq = [5, 1, 4, 2, 8]
    got = _values(g, seq)
    assert [row[0] for row in got] == [0, 0, 0, 5, 1]
    assert [row[1] for row in got] == [5, 6, 10, 12, 20]


def test_nodes_are_named_by_library_scope_and_binding() -> None:
    p = lsrl.Program()
    x = p.input(1)
    y = lsrl.larger(x, 0).named("positive")
    z = lsrl.larger(x, 1)
    names = {n.name for n in p.graph}
    assert "larger/affine" in names
    assert (p.graph[z.id].kind, p.graph[z.id].name) == ("step", "larger/step")
    assert p.graph[y.id].labels[0].name == "positive"
