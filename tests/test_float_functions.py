"""The float functions (exp, log, sigmoid, softplus, silu, tanh, sqrt, rsqrt): their values, exact
mode's refusal at the call, their bounds, the map layers that compute them, the targets that run
them (torch, jax, triton, mlir: within their stated bounds) and those that refuse them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from lsrl.backends import TARGET_NAMES, Options, get_target
from lsrl.backends.verdict import output_bounds
from lsrl.ir.graph import FLOAT_FUNCTIONS
from lsrl.ir.interpret import NotExactError, run, trace
from lsrl.ir.layered import LayeredModel
from lsrl.passes import lower
from lsrl.passes.ranges import analyze

from lsrl.errors import LsrlError
from lsrl.load import compile_source
from lsrl.targets import compile_to, run_compiled

# each function's definition, written here from the formulas (not from the implementation)
DEFINITIONS = {
    "exp": math.exp, "log": math.log, "sigmoid": lambda v: 1 / (1 + math.exp(-v)),
    "softplus": lambda v: math.log(1 + math.exp(v)), "silu": lambda v: v / (1 + math.exp(-v)),
    "tanh": math.tanh, "sqrt": math.sqrt, "rsqrt": lambda v: 1 / math.sqrt(v),
}
POINTS = [0.25, 1.0, 2.5, 7.0]  # in every function's domain

PROGRAM = """\
input x[2]
h = sigmoid(x[0]) * tanh(x[1]) + softplus(x[0] - 1)
late = silu(h) + exp(x[1] / 4)
output y = concat(late, log(x[0] + 2), sqrt(x[0] + 2) + rsqrt(x[1] + 2), x[1])
"""
INPUT_RANGE = (-1, 1)
INPUTS = [[0.5, -0.25], [-1.0, 1.0], [0.0, 0.0], [0.75, 0.5]]


def test_every_float_function_has_its_definition() -> None:
    assert set(DEFINITIONS) == set(FLOAT_FUNCTIONS)
    for name, definition in DEFINITIONS.items():
        graph = compile_source(f"input x[1]\noutput {name}(x)\n", "f.lsrl")
        got = run(graph, [[v] for v in POINTS])[0, :, 0]
        assert np.allclose(got, [definition(v) for v in POINTS], rtol=1e-14, atol=0), name


def test_exact_mode_refuses_a_float_function_at_its_call() -> None:
    graph = compile_source("input x[1]\ny = x + 1\noutput sigmoid(y)\n", "f.lsrl")
    with pytest.raises(NotExactError) as e:
        run(graph, [[1]], exact=True)
    assert (e.value.loc.line, e.value.loc.col) == (3, 8) and "sigmoid" in e.value.message


def test_a_compile_time_argument_gives_the_float_value() -> None:
    graph = compile_source("input x[1]\noutput x * exp(1) + sigmoid(0)\n", "f.lsrl")
    assert run(graph, [[2.0]])[0, 0, 0] == pytest.approx(2 * math.e + 0.5, rel=1e-15)


@pytest.mark.parametrize("name", FLOAT_FUNCTIONS)
def test_the_range_analysis_holds_every_value(name: str) -> None:
    graph = compile_source(f"input x[1]\noutput {name}(x * 3 + 4)\n", "f.lsrl")  # x in [-1, 1]: 1..7
    values = trace(graph, [[v] for v in np.linspace(-1, 1, 41)])
    for node_id, box in analyze(graph, (-1, 1)).items():
        for j, interval in enumerate(box):
            seen = values[node_id][..., j].ravel()
            assert np.all((interval.lo <= seen) & (seen <= interval.hi)), (graph[node_id], interval)


def test_map_layers_compute_the_functions_and_carry_values_past_them() -> None:
    graph = compile_source(PROGRAM, "f.lsrl")
    model = lower(graph, INPUT_RANGE)
    assert "map" in [layer.kind for layer in model.layers]
    want = run(graph, INPUTS)[0]
    assert np.allclose(model.run(INPUTS)[0], want, rtol=1e-13, atol=1e-13)  # x[1] is carried to the end
    again = LayeredModel.from_json(model.to_json())  # the functions survive serialization
    assert [layer.attrs.get("functions") for layer in again.layers] == [layer.attrs.get("functions") for layer in model.layers]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("target", ["torch", "jax", "triton", "mlir"])
def test_code_targets_run_them_within_their_stated_bounds(target: str, dtype: str) -> None:
    for package in {"mlir": ["iree.compiler", "iree.runtime"]}.get(target, [target]):
        pytest.importorskip(package)
    graph = compile_source(PROGRAM, "f.lsrl")
    compiled = compile_to(graph, target, Options(INPUT_RANGE))
    bound = np.array(output_bounds(get_target(target), compiled, dtype, compiled.config["d_out"]))
    want = run(graph, INPUTS)[0]
    got = run_compiled(compiled, INPUTS, dtype)[0]
    assert np.all(np.abs(got - want) <= bound + 1e-15), (np.abs(got - want), bound)
    assert compiled.config["precision"][dtype] == "bounded"  # every output proven within 1e-3 of its size
    if dtype == "float64":
        assert np.all(bound < 1e-12)


@pytest.mark.parametrize("target", [t for t in TARGET_NAMES if t not in ("torch", "jax", "triton", "mlir")])
def test_other_targets_refuse_them_at_the_call(target: str) -> None:
    pytest.importorskip("torch")
    graph = compile_source("input x[1]\ny = x + 1\noutput tanh(y) * 2\n", "f.lsrl")
    with pytest.raises(LsrlError) as e:
        compile_to(graph, target, Options((-1, 1)))
    assert f"the {target} target cannot compute tanh (a map layer); torch, jax, mlir and triton can" in e.value.message
    assert (e.value.loc.line, e.value.loc.col) == (3, 8)
