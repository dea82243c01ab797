"""The shared table on every compiled target, in float64 and float32, against the exact interpreter.

float64: an exact construction must agree with the exact interpreter to 1e-9 (relative to the
value's size, at least 1), an approximate one to its stated float64 ``error_bound`` on top of that.
float32: a program the compiler did not warn about for float32 must agree to its float32 bound plus
``FLOAT32_RTOL``; a program it warned about is measured in ``benchmarks/float32_error.py`` and
documented in docs/targets.md. A target whose weights depend on the dtype (hawk) is compiled for
each; mamba and hawk must compute the rows of integer tokens and outputs exactly in float64.
A row may list targets that must refuse it, and the message they must refuse it with. Rows with a
.lsrl source compile from it, so refusals must point at the program line.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
from lsrl.backends import DTYPES, TARGET_NAMES, Compiled, Options, get_target
from lsrl.ir.errors import LsrlError
from lsrl.ir.graph import Graph

from lsrl.corpus import CASES, Case
from lsrl.targets import compile_to, run_compiled

FLOAT64_RTOL = 1e-9
FLOAT32_RTOL = 1e-3

# the package a target needs at run time: torch, except where named here
REQUIRES = {"jax": "jax"}
# targets that compute every row of integer tokens and integer outputs exactly in float64
EXACT_ON_INTEGERS = ("mamba", "hawk")


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
        return compile_to(program(name), target, Options(case.input_range, case.integer_inputs, dtype=dtype))
    except LsrlError as e:
        return e


@lru_cache(maxsize=None)
def references(name: str) -> list[tuple[list[list[float]], np.ndarray]]:
    return next(c for c in CASES if c.name == name).references(program(name))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("target", TARGET_NAMES)
def test_target_computes_the_program(target: str, case: Case, dtype: str) -> None:
    pytest.importorskip(REQUIRES.get(target, "torch"))
    result = compiled(target, case.name, dtype)
    refusal = case.refused_by.get(target)
    if isinstance(result, LsrlError):
        assert refusal is not None, f"{target} refused {case.name}: {result}"
        assert refusal in result.message and result.loc is not None, str(result)
        return
    assert refusal is None, f"{target} compiled {case.name}, which it should refuse ({refusal})"
    if dtype == "float32" and any(w.dtype in (None, "float32") for w in result.warnings):
        return  # the compiler said float32 is not enough for this program
    bound = get_target(target).error_bound(result, dtype)
    rtol = FLOAT64_RTOL if dtype == "float64" else FLOAT32_RTOL
    for inputs, want in references(case.name):
        got = run_compiled(result, inputs, dtype)[0]
        assert got.shape == want.shape
        allowed = bound + rtol * np.maximum(1.0, np.abs(want))
        error = np.abs(got - want)
        worst = np.unravel_index(np.argmax(error - allowed), error.shape)
        assert np.all(error <= allowed), (
            f"{target} {dtype} {case.name}: step {worst[0]} unit {worst[1]}: got {got[worst]}, expected {want[worst]}"
        )
        if target in EXACT_ON_INTEGERS and dtype == "float64" and _integer_row(case, want):
            assert np.array_equal(got, want), f"{target} float64 {case.name}: not exact on integer tokens"


def _integer_row(case: Case, want: np.ndarray) -> bool:
    """A row whose tokens and outputs are integers (all of them within float64's exact integers)."""
    return case.integer_inputs and bool(np.all(want == np.round(want)))


@pytest.mark.parametrize("target", TARGET_NAMES)
def test_weights_depend_on_the_dtype_only_where_the_target_says_so(target: str) -> None:
    pytest.importorskip(REQUIRES.get(target, "torch"))
    name = "more_ones"
    built = {dtype: _compiled(target, name, dtype) for dtype in DTYPES}
    assert [c.config["dtype"] for c in built.values()] == list(DTYPES)
    same = all(np.array_equal(built["float32"].tensors[k], built["float64"].tensors[k]) for k in built["float32"].tensors)
    assert same != get_target(target).dtype_specific
    assert get_target(target).dtypes("float64") == (("float64",) if get_target(target).dtype_specific else DTYPES)
