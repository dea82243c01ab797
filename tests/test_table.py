"""The shared table on the reference interpreter, in exact and in float64 mode."""

from __future__ import annotations

from fractions import Fraction

import pytest
from lsrl.ir.interpret import run
from lsrl.ir.verify import verify

from lsrl.corpus import CASES, Case, as_fraction


def check_outputs(case: Case, outputs, expected, exact: bool) -> None:
    """Compare one run's outputs ([time, d_out]) with the expected rows, step by step."""
    assert len(outputs) == len(expected)
    for t, want in enumerate(expected):
        if want is None:
            continue
        got = outputs[t]
        assert len(got) == len(want), f"{case.name} step {t}: {len(got)} outputs, expected {len(want)}"
        for g, w in zip(got, want):
            w = as_fraction(w)
            if exact:
                diff = abs(Fraction(int(g.numerator), int(g.denominator)) - w)
            else:
                diff = abs(float(g) - float(w))
            allowed = case.tolerance if exact else case.tolerance + 1e-9 * max(1.0, abs(float(w)))
            assert diff <= allowed, f"{case.name} step {t}: got {g}, expected {w}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_graph_verifies(case: Case) -> None:
    verify(case.graph())


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "float64"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_interpreter(case: Case, exact: bool) -> None:
    graph = case.graph()
    for r in case.runs:
        inputs = [[as_fraction(v) for v in tok] for tok in r.inputs]
        outputs = run(graph, inputs if exact else [[float(v) for v in tok] for tok in inputs], exact=exact)
        assert outputs.shape[0] == 1
        check_outputs(case, outputs[0], r.expected, exact)
