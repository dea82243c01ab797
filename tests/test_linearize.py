"""linearize and the layered model: exact agreement with the interpreter on every table row, unit
labels that hold what they say, serialization, and the carrying rules on small programs."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
from lsrl.ir.interpret import NotExactError, run, trace
from lsrl.ir.layered import CARRY, PART, VALUE, Layer, LayeredModel, LayeredModelError
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import same_number
from lsrl.passes import lower
from lsrl.passes.linearize import layer_schedule, linearize
from safetensors.numpy import load_file

import lsrl
from lsrl.corpus import CASES, Case, as_fraction
from tests.test_canonicalize import assert_same_outputs, exact_batches, prepared_graph
from tests.test_table import check_outputs


@functools.lru_cache(maxsize=None)
def model_of(name: str) -> LayeredModel:
    return linearize(prepared_graph(name))


@pytest.mark.parametrize("row", CASES, ids=lambda c: c.name)
def test_layered_model_matches_the_interpreter_exactly(row: Case) -> None:
    model = model_of(row.name)
    assert_same_outputs(lambda batch: model.run(batch, exact=True), row.name, "linearize")


@pytest.mark.parametrize("row", CASES, ids=lambda c: c.name)
def test_layered_model_in_float64(row: Case) -> None:
    model = model_of(row.name)
    for r in row.runs:
        outputs = model.run([[float(as_fraction(v)) for v in tok] for tok in r.inputs])
        check_outputs(row, outputs[0], r.expected, exact=False)


@pytest.mark.parametrize("row", CASES, ids=lambda c: c.name)
def test_unit_labels_hold_their_values(row: Case) -> None:
    """A value or carry unit holds its node's unit times its sign, or the ReLU of that (exact)."""
    graph, model = prepared_graph(row.name), model_of(row.name)
    batch = exact_batches(row.name, first_run_only=True)[0]
    values = trace(graph, batch, exact=True)
    checked = 0
    for i, (layer, out) in enumerate(zip(model.layers, model.trace(batch, exact=True))):
        for u, label in enumerate(layer.units):
            if label.role == PART:
                continue
            want = values[label.node][..., label.unit] * label.sign
            if label.rectified:
                want = np.where(want > 0, want, 0)
            assert np.array_equal(out[..., u], want), f"{row.name}: layer {i} unit {u} ({label}) is wrong"
            checked += 1
    assert checked >= sum(layer.width for layer in model.layers) // 2


@pytest.mark.parametrize("row", CASES, ids=lambda c: c.name)
def test_no_deeper_than_the_critical_path_needs(row: Case) -> None:
    """Each layer holds one kind, so atoms of different kinds ready together cost extra layers;
    the greedy schedule stays within one extra layer per kind beyond the first."""
    plan = layer_schedule(prepared_graph(row.name))
    assert len(plan.kinds) <= plan.critical_path + len(set(plan.kinds)) - 1
    assert len(model_of(row.name).layers) <= len(plan.kinds) + 1


@pytest.mark.parametrize("row", CASES, ids=lambda c: c.name)
def test_json_round_trip_keeps_every_weight_exactly(row: Case) -> None:
    model = model_of(row.name)
    data = json.loads(json.dumps(model.to_json()))
    again = LayeredModel.from_json(data)
    assert again.to_json() == data
    for original, loaded in zip(model.layers, again.layers):
        assert original.units == loaded.units
        for name, value in original.attrs.items():
            if isinstance(value, Matrix):
                assert loaded.attrs[name] == value
            else:
                assert all(same_number(a, b) for a, b in zip(loaded.attrs[name], value))


def test_save_and_load(tmp_path) -> None:
    model = model_of("more_ones")
    model.save(tmp_path)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    assert set(tensors) == {f"layers.{i}.{k}" for i, layer in enumerate(model.layers) for k in layer.attrs}
    np.testing.assert_array_equal(tensors["layers.1.W"], model.layers[1].attrs["W"].dense())
    loaded = LayeredModel.load(tmp_path)
    inputs = [1, 0, 0, 1, 1]
    assert np.array_equal(loaded.run(inputs, exact=True), model.run(inputs, exact=True))


def test_stats_and_text() -> None:
    model = model_of("more_ones")
    stats = model.stats()
    assert {"layers", "state_dims", "max_width", "dense_params", "nonzeros"} <= set(stats)
    assert (stats["layers"], stats["state_dims"], stats["max_width"]) == (3, 2, 2)
    assert stats["layer_kinds"] == {"state": 1, "relu": 1, "affine": 1}
    text = model.format()
    assert "layer 0: state, 2 units <- 1" in text
    # its input declares the tokens 0 and 1: the comparison of the counts is fitted to the integers
    assert "ones[0]" in text and "zeros[0]" in text and "relu(3*x0 - 3*x1 - 1)" in text


# --- carrying, on small programs -------------------------------------------------------------------
def _check(graph, inputs, **assumptions) -> LayeredModel:
    model = lower(graph, **assumptions)
    assert np.array_equal(model.run(inputs, exact=True), run(graph, inputs, exact=True))
    return model


def _carries(model: LayeredModel, layer: int) -> list[str]:
    return [str(u) for u in model.layers[layer].units if u.role != VALUE]


def _late_read(x_range=None):
    """x read two ReLU layers after the input: it is carried through both."""
    p = lsrl.Program()
    x = p.input(1)
    p.output(lsrl.relu(lsrl.relu(x) - 1) + x)
    return p.finish()


def test_a_value_of_unknown_sign_takes_two_units_through_a_relu_layer() -> None:
    model = _check(_late_read(), [[-3], [2], ["1/2"]])
    assert _carries(model, 0) == ["carry relu(x[0])", "carry relu(-x[0])"]


def test_a_value_of_known_sign_takes_one_unit_through_a_relu_layer() -> None:
    model = _check(_late_read(), [[3], [2], ["1/2"]], input_range=(0, None))
    assert _carries(model, 0) == ["carry x[0]"]
    model = _check(_late_read(), [[-3], [-2]], input_range=(None, 0))
    assert _carries(model, 0) == ["carry -x[0]"]


def test_a_sum_read_later_is_carried_as_one_combination() -> None:
    p = lsrl.Program()
    x = p.input(3)
    total = lsrl.relu(x[0]) + 2 * lsrl.relu(x[1]) + lsrl.relu(x[2])
    p.output(lsrl.relu(lsrl.relu(x[0] - x[1]) - 1) + total)
    model = _check(p.finish(), [[1, 2, 3], [-1, 5, "1/3"]])
    assert len(_carries(model, 1)) == 1


def test_dependent_combinations_are_carried_once() -> None:
    """a, b and a + b are all read at the end: two carried units hold all three."""
    p = lsrl.Program()
    x = p.input(2)
    a, b = lsrl.relu(x[0]), lsrl.relu(x[1])
    late = lsrl.relu(lsrl.relu(a - b) - 1)
    p.output(lsrl.concat(late, a, b, a + b))
    model = _check(p.finish(), [[3, 1], [-1, 2], ["1/2", "1/3"]])
    assert [layer.width for layer in model.layers] == [2, 3, 3, 4]
    assert len(_carries(model, 2)) == 2


def test_gate_and_state_layers_carry_with_one_unit() -> None:
    p = lsrl.Program()
    x = p.input(2)
    product = x[0] * x[1]
    p.output(lsrl.accumulate(product * product) + x[0])
    model = _check(p.finish(), [[1, 2], [3, "-1/2"], [0, 7]])
    assert [layer.kind for layer in model.layers] == ["gate", "gate", "state", "affine"]
    gate = model.layers[0]
    carry = next(u for u, label in enumerate(gate.units) if label.role == CARRY)
    assert gate.attrs["W2"].row_items()[carry] == [] and gate.attrs["b2"][carry] == 1
    state = model.layers[2]
    carry = next(u for u, label in enumerate(state.units) if label.role == CARRY)
    assert state.attrs["A"].row_items()[carry] == []


def test_chained_states_share_one_layer() -> None:
    p = lsrl.Program()
    x = p.input(1)
    total = lsrl.accumulate(x)
    p.output(lsrl.delay(total, 2) + lsrl.accumulate(total))
    model = _check(p.finish(), [[1], [2], ["1/3"], [-4], [5]])
    assert [layer.kind for layer in model.layers] == ["state", "affine"]


def test_only_the_units_read_are_built() -> None:
    p = lsrl.Program()
    x = p.input(3)
    p.output(lsrl.relu(x)[1])
    model = _check(p.finish(), [[1, -2, 3], [-1, 5, 0]])
    assert [layer.width for layer in model.layers] == [1]


def test_affine_and_constant_programs_are_one_affine_layer() -> None:
    p = lsrl.Program()
    x = p.input(2)
    p.output(3 * x[0] - x[1] + 1)
    p.output(p.const([2, "1/3"]))
    model = _check(p.finish(), [[1, 2], [0, "1/2"]])
    assert [layer.kind for layer in model.layers] == ["affine"]
    assert model.d_out == 3


def test_large_constant_conditionals_keep_float64_exact() -> None:
    """A condition scaled by 1e10 is computed on its own first (passes.linear_forms), so x = 1/3
    passes through the conditional exactly in float64 too."""
    p = lsrl.Program()
    x = p.input(2)
    p.output(lsrl.ifelse_step(x[0], x[1] + 5, 2 - x[1]))
    graph = p.finish()
    tokens = [[0, "1/3"], [1, "5/7"], ["2/3", "1/9"], ["1/3", "-2/7"]]
    model = _check(graph, tokens)
    exact = model.run(tokens, exact=True).astype(float)
    floats = model.run([[float(as_fraction(v)) for v in t] for t in tokens])
    assert np.abs(floats - exact).max() < 1e-13
    assert "affine" in [layer.kind for layer in model.layers[:-1]]  # where the conditions are computed


def test_float_weights_run_in_float64_only() -> None:
    p = lsrl.Program()
    x = p.input(1)
    p.output(lsrl.relu(x * 2**0.5) + lsrl.relu(-x) * 0.1)
    graph = p.finish()
    model = lower(graph)
    inputs = [[1.5], [-2.0], [0.25]]
    np.testing.assert_allclose(model.run(inputs), run(graph, inputs), rtol=1e-15)
    with pytest.raises(NotExactError):
        model.run(inputs, exact=True)
    again = LayeredModel.from_json(json.loads(json.dumps(model.to_json())))
    assert again.to_json() == model.to_json()


def test_a_malformed_model_is_refused() -> None:
    model = model_of("more_ones")
    relu = model.layers[1]
    layers = [model.layers[0], Layer(relu.kind, {**relu.attrs, "b": (0,)}, relu.units), model.layers[2]]
    with pytest.raises(LayeredModelError, match="vector of length 2"):
        LayeredModel(model.d_in, layers, model.input_labels, model.output_labels)
