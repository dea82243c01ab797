"""Float precision: constants fitted to the lattices the range analysis proves (passes.constants),
the rounding analysis of what a target computes (backends.rounding), the verdict and warnings per
dtype (backends.verdict), and how the command line uses them.

Every table row's float32 verdict on every target, and that every run keeps to its stated bound,
is tested in tests/test_targets.py; here are the mechanisms, on small programs.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from lsrl.backends import Options
from lsrl.backends.rounding import rounding_bounds
from lsrl.passes import lower

import lsrl
from lsrl.corpus import cases_precision
from lsrl.load import compile_file
from lsrl.targets import compile_to
from tests.test_cli import run_cli

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
REPRODUCTIONS = [c for c in cases_precision.CASES]


def largest_weight(model) -> float:
    return max(float(np.max(np.abs(t))) for t in model.tensors().values() if t.size)


def test_fitting_turns_nested_comparisons_into_small_integer_weights() -> None:
    graph = cases_precision.nested_eq_count()
    assert largest_weight(lower(graph)) >= 1e9  # LSRL's scales, multiplied: float32 cannot hold them
    fitted = lower(graph, (0, 1), integer_inputs=True)
    assert largest_weight(fitted) <= 3
    for layer in fitted.layers:  # every weight and bias an integer: float32 computes it exactly
        assert all(v.denominator == 1 for v in layer.attrs["W"].entries.values())
        assert all(v.denominator == 1 for v in layer.attrs["b"])


def test_a_conditional_gets_the_smallest_power_of_two_big_its_value_needs() -> None:
    p = lsrl.Program()
    x = p.input(1)
    p.output(lsrl.ifelse(lsrl.larger(x, Fraction(9, 2)), x, 0))  # x where x >= 5, for x in 0..9
    model = lower(p.finish(), (0, 9), integer_inputs=True)
    assert largest_weight(model) == 32  # 2 * 9 rounded up to a power of two, not 1e10
    assert model.run([[v] for v in range(10)], exact=True)[0, :, 0].tolist() == [0] * 5 + list(range(5, 10))


@pytest.mark.parametrize("row", REPRODUCTIONS, ids=lambda c: c.name)
def test_without_facts_about_the_inputs_float32_is_warned(row) -> None:
    graph = compile_file(EXAMPLES / row.source)
    compiled = compile_to(graph, "torch")
    assert compiled.config["precision"]["float32"] == "unproven"
    (warning,) = [w for w in compiled.warnings if w.dtype == "float32"]
    assert warning.message.startswith("float32 is not proven to compute output ")
    assert "--integer-inputs" in warning.message and "--dtype float64" in warning.message
    assert warning.loc is not None and warning.loc.file.endswith(row.source)


@pytest.mark.parametrize("row", REPRODUCTIONS, ids=lambda c: c.name)
def test_with_the_rows_facts_float32_is_proven(row) -> None:
    compiled = compile_to(compile_file(EXAMPLES / row.source), "torch", row.options())
    assert compiled.config["precision"]["float32"] in ("exact", "bounded")
    assert not [w for w in compiled.warnings if w.dtype == "float32"]


def _accumulator():
    p = lsrl.Program()
    p.output(lsrl.accumulate(p.input(1)))
    return p.finish()


def test_integer_sums_are_exact_while_they_stay_below_2_to_the_24() -> None:
    """Integers up to 2^14 summed over n steps: exact in float32 while n 2^14 < 2^24."""
    model = lower(_accumulator(), (0, 2**14), integer_inputs=True)
    assert rounding_bounds(model, Options((0, 2**14), True, max_len=1023), "float32") == [0.0]
    assert rounding_bounds(model, Options((0, 2**14), True, max_len=1025), "float32")[0] > 0
    assert rounding_bounds(model, Options((0, 2**14), True, max_len=1025), "float64") == [0.0]


def test_an_integer_sum_float32_rounds_is_bounded_not_called_exact() -> None:
    """3 (2^23 + 1) needs 25 significant bits: float32 rounds it, and the bound covers the error."""
    big = 2**23 + 1
    model = lower(_accumulator(), (0, big), integer_inputs=True)
    (bound,) = rounding_bounds(model, Options((0, big), True, max_len=3), "float32")
    got = model.run_float32([[big]] * 3)[:, 0].astype(np.float64)
    error = np.abs(got - np.array([big, 2 * big, 3 * big], dtype=np.float64))
    assert 0 < error.max() <= bound


def test_thirds_are_bounded_not_exact() -> None:
    p = lsrl.Program()
    p.output(p.input(1) * Fraction(1, 3))
    model = lower(p.finish(), (0, 3), integer_inputs=True)
    (bound,) = rounding_bounds(model, Options((0, 3), True), "float32")
    assert 0 < bound < 1e-6


NESTED = str(EXAMPLES / "precision" / "nested_eq_count.lsrl")


def test_run_falls_back_to_float64_where_float32_is_not_proven() -> None:
    status, out, err = run_cli("run", NESTED, "--backend", "torch", "--input", "1 1")
    assert status == 0 and out.split() == ["0.0", "0.0"]
    assert "note: float32 is not proven" in err and "running in float64" in err


def test_run_in_float32_when_asked_warns_and_names_the_dtype() -> None:
    status, _, err = run_cli("run", NESTED, "--backend", "torch", "--input", "1 1", "--dtype", "float32")
    assert status == 0 and "warning: float32 is not proven to compute output balanced[0]" in err
    assert "note:" not in err


def test_run_with_facts_is_float32_and_quiet() -> None:
    status, out, err = run_cli("run", NESTED, "--backend", "rnn", "--input", "1 1", "--integer-inputs",
                               "--input-range", "0,1")
    assert status == 0 and out.split() == ["0.0", "0.0"] and err == ""
