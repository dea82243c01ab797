"""Gated diagonal states ``h_t = a_t * h_{t-1} + b_t``: what the builder and the language accept as
one (and what they refuse, where), constant gates folding into linear states, and the bounds.

The table rows ``hold_register`` and ``moving_average`` (lsrl/corpus/cases_gated.py) run them on
the interpreter, through every pass and on every target (torch and jax compute them, the others
refuse them at the state's line); the property tests of tests/test_pass_properties.py draw them in
random programs."""

from __future__ import annotations

from fractions import Fraction

import pytest
from lsrl.ir.interpret import run
from lsrl.passes import run_pipeline
from lsrl.passes.ranges import analyze

import lsrl
from lsrl.errors import LsrlError
from lsrl.load import compile_source


def kinds(graph) -> list[str]:
    return sorted(n.kind for n in graph if n.kind in ("state", "gated_state"))


def test_a_runtime_gate_on_the_previous_value_makes_a_gated_state() -> None:
    graph = compile_source("input x[2]\nstate h[2] = [1, 2] <- x * h + 3 * h * x[0] - 1\noutput h\n", "g.lsrl")
    assert kinds(graph) == ["gated_state"]
    # h_t = (x + 3 x[0]) * h_{t-1} - 1, unit by unit, computed here by hand
    h, want = [Fraction(1), Fraction(2)], []
    for token in ([Fraction(1, 2), 2], [3, Fraction(-1, 3)]):
        h = [(token[i] + 3 * token[0]) * h[i] - 1 for i in range(2)]
        want.append(h)
    got = run(graph, [[Fraction(1, 2), 2], [3, Fraction(-1, 3)]], exact=True)[0].tolist()
    assert got == want


def test_a_constant_gate_is_an_ordinary_state() -> None:
    graph = compile_source("input x[1]\nstate h[1] = 0 <- (1/2) * h + x\noutput h\n", "g.lsrl")
    assert kinds(graph) == ["state"]
    p = lsrl.Program()
    x = p.input(1)
    p.output(p.gated_state(0, p.const(Fraction(1, 2)), x))  # a gate that is a constant node
    assert kinds(run_pipeline(p.finish())) == ["state"]


@pytest.mark.parametrize("update, message, column", [
    ("x[0] * (swap @ h) + x", "multiplies a mix of its previous value's units", 24),
    ("x * h + [[1, 1], [0, 1]] @ h", "mixes units of its previous value and gates it", 1),
    ("h * h", "multiplies its previous value by itself", 21),
    ("x * (h + x)", "multiplies a mix of its previous value's units (or of it and other values)", 21),
])
def test_updates_that_are_not_a_gated_state_are_refused_where_they_are(update: str, message: str, column: int) -> None:
    text = f"input x[2]\nswap = [[0, 1], [1, 0]]\nstate h[2] = 0 <- {update}\noutput h\n"
    with pytest.raises(LsrlError) as e:
        compile_source(text, "g.lsrl")
    assert message in e.value.message
    assert (e.value.loc.line, e.value.loc.col) == (3, column)


def test_bounds_of_a_gated_state() -> None:
    """A gate in [0, 1] and an input in [0, 1]: at most the step count; a gate below 1/2 in size:
    at most 1 / (1 - 1/2)."""
    graph = compile_source("input x[2]\nstate h[1] = 0 <- x[0] * h + x[1]\noutput h\n", "g.lsrl")
    (node,) = [n for n in graph if n.kind == "gated_state"]
    assert analyze(graph, (0, 1), max_len=1000)[node.id][0].hi == 1000
    assert analyze(graph, (0, Fraction(1, 2)))[node.id][0].hi <= 1
    assert analyze(graph, (0, 1))[node.id][0].hi == float("inf")
