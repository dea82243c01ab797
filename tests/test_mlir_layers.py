"""The mlir target's map, delta and solve layers (backends/mlir_functions.py, mlir_heads.py) on
focused programs: every float function against long-double values of its formula, delta heads
with and without a query over lengths around the blocks of steps, direct solves that need
pivoting and conjugate-gradient steps, each against the float64 interpreter, and ``step``
against ``forward``. The table rows that use these layers run in tests/test_targets.py, the
layers of examples/layers/ in tests/test_layers.py."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
from lsrl.backends import Options, get_target
from lsrl.backends.mlir_code import runner
from lsrl.backends.mlir_heads import DELTA_BLOCK
from lsrl.backends.rounding import FUNCTION_ROUNDING
from lsrl.ir.graph import FLOAT_FUNCTIONS, Label
from lsrl.ir.interpret import run as interpret
from lsrl.ir.layered import Layer, LayeredModel, UnitLabel
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import number
from lsrl.passes.schedule import schedule

import lsrl
from lsrl.builder import read, solve
from lsrl.targets import compile_to

pytest.importorskip("iree.compiler")
pytest.importorskip("iree.runtime")

UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24}
LONG = np.longdouble


def forward_and_step(compiled, dtype: str, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    model = runner(compiled, dtype)
    state, steps = model.init_state(inputs.shape[0]), []
    for t in range(inputs.shape[1]):
        y, state = model.step(inputs[:, t], state)
        steps.append(y)
    return model.forward(inputs).astype(np.float64), np.stack(steps, axis=1).astype(np.float64)


def assert_close(got: np.ndarray, want: np.ndarray, rtol: float) -> None:
    assert got.shape == want.shape
    np.testing.assert_array_less(np.abs(got - want), rtol * np.maximum(1.0, np.abs(want)))


# --- float functions ----------------------------------------------------------------------------------------
def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


# each function from its formula, in long double (64 bits of mantissa: exact enough for both dtypes)
FORMULAS = {
    "exp": np.exp, "log": np.log, "sigmoid": _sigmoid, "softplus": lambda x: np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0),
    "silu": lambda x: x * _sigmoid(x), "tanh": np.tanh, "sqrt": np.sqrt, "rsqrt": lambda x: 1 / np.sqrt(x),
}
POSITIVE_ONLY = ("log", "sqrt", "rsqrt")


@lru_cache(maxsize=None)
def every_function_compiled():
    """One map layer of one unit per float function, each reading its own input."""
    n = len(FLOAT_FUNCTIONS)
    labels = [Label("x", i) for i in range(n)]
    identity = Matrix(n, n, {(i, i): 1 for i in range(n)})
    layer = Layer("map", {"W": identity, "b": tuple(number(0) for _ in range(n)), "functions": FLOAT_FUNCTIONS},
                  tuple(UnitLabel(label) for label in labels))
    model = LayeredModel(n, [layer], labels, labels)
    return get_target("mlir").build(model, Options(dtype="float64", plan=schedule(model)))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_float_function_is_within_a_few_unit_roundoffs(dtype: str) -> None:
    """Within the FUNCTION_ROUNDING unit roundoffs of the value that the rounding analysis assumes
    (as it does for torch and XLA), over the range where the values are normal numbers: tiny and
    huge arguments, and around 0, where IREE's own float64 log1p and expm1 are off by 1e-4."""
    if np.finfo(LONG).nmant < 63:
        pytest.skip("no 80-bit long double here")
    rng = np.random.default_rng(0)
    size = 3000
    x = np.concatenate([rng.uniform(-40, 40, size), rng.normal(0, 1, size),
                        10.0 ** rng.uniform(-15, 1.5, size) * rng.choice([-1, 1], size)]).astype(dtype)
    inputs = np.repeat(x.astype(np.float64)[None, :, None], len(FLOAT_FUNCTIONS), axis=2)
    for j, name in enumerate(FLOAT_FUNCTIONS):
        if name in POSITIVE_ONLY:
            inputs[0, :, j] = np.abs(inputs[0, :, j])
    got = runner(every_function_compiled(), dtype).forward(inputs)[0].astype(LONG)
    for j, name in enumerate(FLOAT_FUNCTIONS):
        want = FORMULAS[name](inputs[0, :, j].astype(LONG))
        normal = (np.abs(want) > np.finfo(dtype).tiny) & (np.abs(want) < np.finfo(dtype).max)
        error = np.abs(got[normal, j] - want[normal]) / np.abs(want[normal])
        assert float(error.max()) <= FUNCTION_ROUNDING * UNIT_ROUNDOFF[dtype], (name, float(error.max()) / UNIT_ROUNDOFF[dtype])


# --- delta heads ------------------------------------------------------------------------------------------------
def delta_program():
    """Two delta heads in one layer: one of 3 keys and 2 values read with a query, with runtime
    alpha and beta; one of 2 keys and 3 values with alpha 1, emitting its state."""
    p = lsrl.Program()
    x = p.input(10)
    read_head = read(p.delta_state(x[0], x[1], x[2:5], x[5:7]), x[7:10])
    state_head = p.delta_state(1, x[1], x[2:4], x[5:8])
    p.output(lsrl.concat([read_head, state_head]), name="y")
    return p.finish()


def delta_inputs(rng, batch: int, length: int) -> np.ndarray:
    x = rng.uniform(-0.5, 0.5, (batch, length, 10))
    x[..., 0] = rng.uniform(0.5, 1, (batch, length))  # alpha
    x[..., 1] = rng.uniform(0, 1, (batch, length))  # beta
    return x


@lru_cache(maxsize=None)
def delta_compiled():
    graph = delta_program()
    compiled = compile_to(graph, "mlir", Options(input_range=(-1, 1), dtype="float64"))
    return graph, compiled


def test_delta_heads_give_the_interpreter_outputs_at_every_length() -> None:
    graph, compiled = delta_compiled()
    kinds = [layer["kind"] for layer in compiled.config["layers"]]
    delta_layer = kinds.index("delta")
    assert len(compiled.config["code_attributes"][str(delta_layer)]["heads"]) == 2 * 8  # two heads of 8 numbers
    rng = np.random.default_rng(5)
    for length in (1, DELTA_BLOCK - 1, DELTA_BLOCK, 2 * DELTA_BLOCK + 5):
        inputs = delta_inputs(rng, 3, length)
        want = interpret(graph, inputs)
        forward, stepped = forward_and_step(compiled, "float64", inputs)
        assert_close(forward, want, 1e-9)
        assert_close(stepped, want, 1e-9)
        forward32, stepped32 = forward_and_step(compiled, "float32", inputs)
        assert_close(forward32, want, 1e-4)
        assert_close(stepped32, forward32, 1e-5)


# --- solve heads ------------------------------------------------------------------------------------------------
def solve_program(steps: int, shift: float):
    p = lsrl.Program()
    x = p.input(12)
    p.output(solve(x[0:9], x[9:12], shift, steps), name="x")
    return p.finish()


@lru_cache(maxsize=None)
def solve_compiled(steps: int, shift: float):
    graph = solve_program(steps, shift)
    return graph, compile_to(graph, "mlir", Options(input_range=(-4, 4), dtype="float64"))


def test_a_direct_solve_pivots() -> None:
    """Matrices whose first pivot is 0 or tiny (rows permuted from a well-conditioned matrix): the
    interpreter's solution (LAPACK's), within float64's 1e-9, where elimination without pivoting
    divides by zero."""
    graph, compiled = solve_compiled(0, 0.0)
    rng = np.random.default_rng(6)
    matrices = []
    for _ in range(12):
        well = np.eye(3) + 0.3 * rng.uniform(-1, 1, (3, 3))
        permuted = well[rng.permutation(3)]
        permuted[0, 0] = 0.0 if rng.random() < 0.5 else 1e-12
        matrices.append(permuted)
    queries = rng.uniform(-1, 1, (12, 3))
    inputs = np.concatenate([np.array(matrices).reshape(12, 9), queries], axis=1)[None]
    want = interpret(graph, inputs)
    assert np.all(np.isfinite(want))
    forward, stepped = forward_and_step(compiled, "float64", inputs)
    assert_close(forward, want, 1e-9)
    assert_close(stepped, want, 1e-9)


def test_conjugate_gradient_takes_the_programs_steps() -> None:
    """Two steps of conjugate gradient on symmetric positive definite 3x3 systems (not yet the
    solution: the steps are what is computed) with a shift, against the interpreter's."""
    graph, compiled = solve_compiled(2, 0.5)
    rng = np.random.default_rng(7)
    roots = rng.uniform(-1, 1, (10, 3, 3))
    matrices = roots @ roots.transpose(0, 2, 1)
    inputs = np.concatenate([matrices.reshape(10, 9), rng.uniform(-1, 1, (10, 3))], axis=1)[None]
    want = interpret(graph, inputs)
    exact = np.linalg.solve(matrices + 0.5 * np.eye(3), inputs[0, :, 9:, None])[..., 0]
    assert not np.allclose(want[0], exact, rtol=1e-6)  # two steps of three: not the solution yet
    forward, stepped = forward_and_step(compiled, "float64", inputs)
    assert_close(forward, want, 1e-9)
    assert_close(stepped, want, 1e-9)
