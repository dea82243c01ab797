"""The shared table on every compiled target, in float64 and float32, against the exact interpreter.

Every target states a bound on each output's error per dtype (``config["error_bound"]``) and a
verdict of what the bound proves (``config["precision"]``: exact, bounded or unproven,
``backends.verdict``). Here every run of every row keeps to the stated bound in both dtypes,
whatever the verdict (the bound is sound: a run outside it is a bug of the analysis), an exact
verdict means outputs equal to the exact ones, and the row's stated float32 verdict per target
(``Case.float32``) is what the compiler promises. A target whose weights depend on the dtype
(hawk) is compiled for each; mamba and hawk must compute the rows of integer tokens and outputs
exactly in float64.
A row may list targets that must refuse it, and the message they must refuse it with. Rows with a
.lsrl source compile from it, so refusals must point at the program line.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
from lsrl.backends import DTYPES, TARGET_NAMES, Compiled, get_target
from lsrl.backends.verdict import output_bounds
from lsrl.ir.errors import LsrlError
from lsrl.ir.graph import Graph

from lsrl.corpus import CASES, Case
from lsrl.corpus.rows import has_float_weights
from lsrl.targets import compile_to, run_compiled

# The reference is the exact result converted to float64, itself within half an ulp; and rows with
# irrational weights (no exact reference) are checked against the float64 interpreter, which no
# stated bound covers, to this tolerance.
REFERENCE_ROUNDING = 2.0**-52
FLOAT64_INTERPRETER_RTOL = 1e-9

# the packages a target needs to build and run: torch, except where named here
REQUIRES = {"jax": ("jax",), "mlir": ("iree.compiler", "iree.runtime"), "triton": ("triton",)}
# Triton's interpreter (no GPU here) is slow: by default the triton target runs the rows whose
# state layers call its kernels, and one without (more_ones); the others are marked slow
TRITON_DEFAULT_ROWS = ("more_ones", "hold_register", "moving_average", "mqar", "mqar_delta", "induction", "mesa",
                       "decay_and_turn")
# the target whose stated bounds, and so the row's float32 verdicts, a target shares (the same model.py)
SAME_VERDICTS_AS = {"triton": "torch"}
# targets that compute every row of integer tokens and integer outputs exactly in float64
EXACT_ON_INTEGERS = ("mamba", "hawk")


# IREE compiles each row's module for each dtype, a few seconds each: by default the mlir target
# runs these rows (every kind of layer and of state-layer stage, and its refusals), the rest of the
# table with the slow tests (pytest -m slow)
MLIR_DEFAULT_ROWS = ("more_ones", "counters", "frac_prevs", "shift_register", "parity", "hold_register", "moving_average",
                     "mqar_delta", "induction", "mesa")


def target_rows() -> list:
    """Every (target, row) pair, the mlir and triton targets' rows outside their default rows
    marked slow."""
    default_rows = {"mlir": MLIR_DEFAULT_ROWS, "triton": TRITON_DEFAULT_ROWS}
    return [
        pytest.param(target, case, id=f"{target}-{case.name}",
                     marks=pytest.mark.slow if target in default_rows and case.name not in default_rows[target] else ())
        for target in TARGET_NAMES for case in CASES
    ]


def skip_without_packages(target: str) -> None:
    for package in REQUIRES.get(target, ("torch",)):
        pytest.importorskip(package)


@lru_cache(maxsize=None)
def program(name: str) -> Graph:
    return next(c for c in CASES if c.name == name).program()


def compiled(target: str, name: str, dtype: str = "float32") -> Compiled | LsrlError:
    """The row compiled for ``dtype`` where the target's weights depend on it, else once for both."""
    return _compiled(target, name, dtype if get_target(target).dtype_specific else "float32")


@lru_cache(maxsize=None)
def _compiled(target: str, name: str, dtype: str) -> Compiled | LsrlError:
    case = next(c for c in CASES if c.name == name)
    try:
        return compile_to(program(name), target, case.options(dtype=dtype))
    except LsrlError as e:
        return e


@lru_cache(maxsize=None)
def references(name: str) -> list[tuple[list[list[float]], np.ndarray]]:
    return next(c for c in CASES if c.name == name).references(program(name))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target, case", target_rows())
def test_target_keeps_to_its_stated_bound(target: str, case: Case, dtype: str) -> None:
    skip_without_packages(target)
    result = compiled(target, case.name, dtype)
    refusal = case.refused_by.get(target)
    if isinstance(result, LsrlError):
        assert refusal is not None, f"{target} refused {case.name}: {result}"
        assert refusal in result.message and result.loc is not None, str(result)
        return
    assert refusal is None, f"{target} compiled {case.name}, which it should refuse ({refusal})"
    bound = np.array(output_bounds(get_target(target), result, dtype, result.config["d_out"]))
    verdict = result.config["precision"][dtype]
    float_weights = has_float_weights(program(case.name))
    for inputs, want in references(case.name):
        got = run_compiled(result, inputs, dtype)[0]
        assert got.shape == want.shape
        slack = (FLOAT64_INTERPRETER_RTOL if float_weights else REFERENCE_ROUNDING) * np.maximum(1.0, np.abs(want))
        error = np.abs(got - want)
        worst = np.unravel_index(np.argmax(error - bound - slack), error.shape)
        assert np.all(error <= bound + slack), (
            f"{target} {dtype} {case.name}: step {worst[0]} unit {worst[1]}: got {got[worst]}, expected "
            f"{want[worst]}, stated bound {bound[worst[1]]} ({verdict})"
        )
        if verdict == "exact" and not float_weights:
            assert np.array_equal(got, want), f"{target} {dtype} {case.name}: stated exact, but is not"
        if target in EXACT_ON_INTEGERS and dtype == "float64" and _integer_row(case, want):
            assert np.array_equal(got, want), f"{target} float64 {case.name}: not exact on integer tokens"


def _integer_row(case: Case, want: np.ndarray) -> bool:
    """A row whose tokens and outputs are integers (all of them within float64's exact integers)."""
    return case.integer_inputs and bool(np.all(want == np.round(want)))


@pytest.mark.parametrize("target, case", target_rows())
def test_the_float32_verdict_is_the_one_the_row_states(target: str, case: Case) -> None:
    skip_without_packages(target)
    result = compiled(target, case.name)
    got = "refused" if isinstance(result, LsrlError) else result.config["precision"]["float32"]
    assert got == case.float32_verdict(SAME_VERDICTS_AS.get(target, target)), f"{target} {case.name}"
    if got == "unproven":
        assert any(w.dtype == "float32" for w in result.warnings)


@pytest.mark.parametrize("target", TARGET_NAMES)
def test_weights_depend_on_the_dtype_only_where_the_target_says_so(target: str) -> None:
    skip_without_packages(target)
    name = "more_ones"
    built = {dtype: _compiled(target, name, dtype) for dtype in DTYPES}
    assert [c.config["dtype"] for c in built.values()] == list(DTYPES)
    same = all(np.array_equal(built["float32"].tensors[k], built["float64"].tensors[k]) for k in built["float32"].tensors)
    assert same != get_target(target).dtype_specific
    assert get_target(target).dtypes("float64") == (("float64",) if get_target(target).dtype_specific else DTYPES)
