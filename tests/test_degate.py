"""rebuild_gates (passes/degate.py): products rebuilt from ReLUs keep the exact outputs wherever
one factor is proven to be 0 or 1 and the other bounded, and are refused, at the product's source
line, where that is not shown."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lsrl.ir.errors import LsrlError
from lsrl.ir.interpret import run
from lsrl.ir.verify import verify
from lsrl.passes import lower, run_pipeline
from lsrl.passes.degate import SMALLEST_CONSTANT, rebuild_gates

import lsrl
from lsrl.corpus import as_fraction, case

MAX_LEN = 1024


def _rebuilt(graph, input_range, integer_inputs=True):
    out = rebuild_gates(run_pipeline(graph), input_range, MAX_LEN, integer_inputs)
    verify(out)
    assert not any(n.kind == "mul" for n in out), "a product was left"
    return out


def _gated(value_scale: Fraction, condition_first: bool = True):
    """Input [a, b]: the product of the condition larger(a, 0) and b * value_scale."""
    p = lsrl.Program()
    ab = p.input(2)
    condition, value = lsrl.larger(ab[0], 0), ab[1] * value_scale
    p.output(condition * value if condition_first else value * condition, name="product")
    return p.finish()


def test_the_table_rows_with_products_keep_their_exact_outputs() -> None:
    row = case("tok2tok_random_2_mul")
    graph = row.graph()
    rebuilt = _rebuilt(graph, row.input_range)
    inputs = [[as_fraction(v) for v in token] for token in row.runs[0].inputs]
    assert np.array_equal(run(rebuilt, inputs, exact=True), run(graph, inputs, exact=True))


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    low=st.integers(-6, 3),
    span=st.integers(0, 6),
    scale=st.fractions(min_value=-3, max_value=3, max_denominator=7),
    condition_first=st.booleans(),
    data=st.data(),
)
def test_products_of_conditions_and_bounded_values_are_exact(low, span, scale, condition_first, data) -> None:
    """Random 0/1 conditions times values of either sign: the same outputs in exact arithmetic, and
    in float64 the same as the gate's (the rebuilt product adds no rounding of its own)."""
    high = low + span
    graph = _gated(scale, condition_first)
    rebuilt = _rebuilt(graph, (low, high))
    length = data.draw(st.integers(1, 6))
    inputs = [[data.draw(st.integers(low, high)) for _ in range(2)] for _ in range(length)]
    want = run(graph, inputs, exact=True)
    assert np.array_equal(run(rebuilt, inputs, exact=True), want)
    floats = [[float(v) for v in token] for token in inputs]
    assert np.array_equal(run(rebuilt, floats), run(graph, floats)), "the rebuilt product rounds in float64"
    model = lower(graph, (low, high), MAX_LEN, rebuild_gates=True, integer_inputs=True)
    assert all(layer.kind != "gate" for layer in model.layers)
    assert np.array_equal(model.run(inputs, exact=True), want)


def test_the_product_node_keeps_its_identity() -> None:
    graph = run_pipeline(_gated(Fraction(1, 3)))
    product = graph[graph.outputs[0].node]
    assert product.kind == "mul"
    rebuilt = rebuild_gates(graph, (-5, 5), MAX_LEN, integer_inputs=True)
    node = rebuilt[product.id]
    assert (node.kind, node.name, node.loc, node.labels) == ("affine", product.name, product.loc, product.labels)
    parts = {rebuilt[o].name: rebuilt[o] for o in node.operands}
    assert set(parts) == {f"{product.name}/positive", f"{product.name}/negative"}
    assert [str(label) for label in parts[f"{product.name}/positive"].labels] == [f"relu({product.labels[0].name})[0]"]


def test_a_value_of_one_sign_needs_one_relu_and_a_large_enough_constant() -> None:
    """b in [0, 4]: only the positive part; the constant is at least SMALLEST_CONSTANT so that
    linearize computes off = 1 - c as a unit of its own."""
    rebuilt = _rebuilt(_gated(Fraction(1)), (0, 4))
    product = rebuilt[rebuilt.outputs[0].node]
    assert [rebuilt[o].name.rsplit("/", 1)[-1] for o in product.operands] == ["positive"]
    constants = [w for n in rebuilt for m in n.attrs.get("weights", ()) for w in m.entries.values()]
    assert -SMALLEST_CONSTANT in constants


def _refusal(source: str, **assumptions) -> LsrlError:
    graph = lsrl.compile_source(source, "program.lsrl")
    with pytest.raises(LsrlError) as caught:
        lower(graph, max_len=MAX_LEN, rebuild_gates=True, **assumptions)
    return caught.value


def test_a_product_of_continuous_values_is_refused_at_its_line() -> None:
    error = _refusal("input x[1]\ny = x + 1\noutput x * y\n")
    assert (error.loc.file, error.loc.line) == ("program.lsrl", 3)
    assert "neither factor is proven to be 0 or 1" in error.message
    assert "not proven to be an integer" in error.message
    assert "--integer-inputs" in error.message


def test_a_condition_times_an_unbounded_value_is_refused() -> None:
    source = "input x[1]\nc = step(x)\noutput c * x\n"
    error = _refusal(source, integer_inputs=True)
    assert error.loc.line == 3
    assert "the first factor is a 0/1 condition, but the second is not bounded" in error.message
    assert "--input-range" in error.message
    lower(lsrl.compile_source(source), (-3, 3), MAX_LEN, rebuild_gates=True, integer_inputs=True)


def test_a_condition_needs_integer_inputs() -> None:
    error = _refusal("input x[1]\nc = step(x)\noutput c * x\n", input_range=(-3, 3))
    assert "the first lies in [0, 1] and is not proven to be an integer" in error.message


def test_the_refusal_names_the_unit_of_a_vector_product() -> None:
    """Unit 0 is a condition times a bounded value; unit 1 the product of two integers in [-3, 3]."""
    source = "input x[2]\nc = step(x[0])\noutput concat(c, x[0]) * concat(x[1], x[1])\n"
    error = _refusal(source, input_range=(-3, 3), integer_inputs=True)
    assert error.loc.line == 3
    assert "cannot rebuild this product (unit 1 of 2) from ReLUs" in error.message
    assert "the first is an integer in [-3, 3]" in error.message
    assert "--input-range" not in error.message  # the facts were given
