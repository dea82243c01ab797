"""The float32 warnings (passes/precision.py): where they point, when they stay quiet, how the
command line shows them, and that they predict float32 failure on the shared table.

The prediction is checked with a float32 run of the layered model written here with numpy
(every weight, input and intermediate value rounded to float32, as a float32 target computes),
so the check does not depend on which targets are installed. Its reference is the float64
interpreter, which agrees with the exact one to far better than 1e-3 on every row (the exact
comparison, per target, is benchmarks/float32_error.py).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from lsrl.ir.interpret import run
from lsrl.passes import lower
from lsrl.passes.precision import float32_warnings

import lsrl
from lsrl.corpus import CASES, Case, as_fraction
from lsrl.load import compile_source
from tests.test_cli import run_cli

FLOAT32_RTOL = 1e-3  # as in tests/test_targets.py: an unwarned row must be this accurate

# An ifelse whose condition is an input: nothing keeps it in [0, 1].
CONDITION_FROM_INPUT = """\
input x[2]
t = x[1] + 5
output y = ifelse(x[0], t, 2 - x[1])
"""

# Comparisons (scale 1000) and conditionals of small integer counts.
SMALL_COUNTS = """\
input x[1]
ones = accumulate(x)
zeros = accumulate(1 - x)
output more = larger(ones, zeros)
output picked = ifelse(smaller(ones, 3), ones, zeros)
"""


@lru_cache(maxsize=None)
def float32_error(name: str) -> float:
    """The largest error of the row's float32 run, relative to max(1, |float64 interpreter|)."""
    case = next(c for c in CASES if c.name == name)
    graph = case.graph()
    model = lower(graph, case.input_range)
    worst = 0.0
    for r in case.runs:
        inputs = [[float(as_fraction(v)) for v in token] for token in r.inputs]
        want = run(graph, inputs)[0]
        got = model.run_float32(inputs)
        worst = max(worst, float(np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want)))))
    return worst


def test_an_ifelse_with_an_unbounded_condition_warns_at_the_call() -> None:
    warnings = float32_warnings(compile_source(CONDITION_FROM_INPUT, "cond.lsrl"))
    assert len(warnings) == 1
    (warning,) = warnings
    assert (warning.loc.file, warning.loc.line, warning.loc.col) == ("cond.lsrl", 3, 12)
    assert "1e+10" in warning.message and "[0, 1]" in warning.message
    assert "--dtype float64" in warning.message and "smaller big" in warning.message


def test_a_condition_kept_in_range_does_not_warn() -> None:
    graph = compile_source(CONDITION_FROM_INPUT, "cond.lsrl")
    assert float32_warnings(graph, input_range=[(0, 1), (-100, 100)], integer_inputs=True) == []


def test_small_integer_comparisons_do_not_warn() -> None:
    assert float32_warnings(compile_source(SMALL_COUNTS, "counts.lsrl")) == []
    assert float32_warnings(compile_source(SMALL_COUNTS, "counts.lsrl"), (0, 1), integer_inputs=True) == []


def test_nested_comparisons_of_a_counter_warn_where_their_scales_multiply() -> None:
    """dyck1's balanced(): eq of a count, inside and(); folding the three scales of 1000 into
    one weight of 1e9 leaves float32 unable to tell 1e9 * 2 from 1e9 * 2 - 1e6."""
    p = lsrl.Program()
    x = p.input(1)
    dips = lsrl.accumulate(lsrl.smaller(x, 0))
    p.output(lsrl.and_(lsrl.eq(dips, 0), lsrl.larger(x, 0)), name="balanced")
    warnings = float32_warnings(p.finish(), (-1, 1), integer_inputs=True)
    assert len(warnings) == 1 and "'eq/step/relu'" in warnings[0].message
    assert "weight 1e+09" in warnings[0].message and "output 'balanced'" in warnings[0].message


def test_one_warning_per_source_location() -> None:
    source = "input x[1]\n" + "".join(f"output o{i} = ifelse(x[0], x[0] + {i}, 0)\n" for i in range(3))
    locations = [(w.loc.line, w.loc.col) for w in float32_warnings(compile_source(source, "many.lsrl"))]
    assert sorted(locations) == [(2, 13), (3, 13), (4, 13)]


@pytest.fixture
def condition_program(tmp_path: Path) -> str:
    pytest.importorskip("lsrl.backends.torch_code")
    program = tmp_path / "cond.lsrl"
    program.write_text(CONDITION_FROM_INPUT)
    return str(program)


def test_compile_prints_the_warning_with_a_caret(condition_program: str, tmp_path: Path) -> None:
    status, out, err = run_cli("compile", condition_program, "--target", "torch", "-o", str(tmp_path / "out"))
    assert status == 0 and "wrote" in out
    first, line, caret = err.splitlines()[:3]
    assert first.startswith(f"{condition_program}:3:12: warning: float32 is not precise enough")
    assert line == "output y = ifelse(x[0], t, 2 - x[1])"
    assert caret == " " * 11 + "^"


def test_run_warns_in_float32_only(condition_program: str) -> None:
    run = ("run", condition_program, "--input", "1,2 0,3", "--backend", "torch")
    status, _, err = run_cli(*run)
    assert status == 0 and f"{condition_program}:3:12: warning:" in err
    status, out, err = run_cli(*run, "--dtype", "float64")
    assert status == 0 and err == "" and [float(v) for v in out.split()] == [7.0, -1.0]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_row_that_float32_fails_is_warned(case: Case) -> None:
    """The warnings predict float32 failure: a row whose float32 run is off by more than
    FLOAT32_RTOL is warned about, both as compiled today (nothing stated about the inputs) and
    with what the row states about its inputs."""
    if float32_error(case.name) <= FLOAT32_RTOL:
        return
    graph = case.graph()
    assert float32_warnings(graph), f"{case.name}: float32 error {float32_error(case.name):.3g}, no warning"
    assert float32_warnings(graph, case.input_range, case.integer_inputs), case.name


def test_the_table_has_rows_on_both_sides() -> None:
    """The property above is not vacuous: some rows fail in float32 and most do not."""
    failing = [c.name for c in CASES if float32_error(c.name) > FLOAT32_RTOL]
    assert {"gates", "dyck1"} <= set(failing) and len(failing) < len(CASES) // 2
