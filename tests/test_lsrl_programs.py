"""Focused tests of the LSRL programs of the shared table, beyond the table's own runs.

The table checks a few queries per program; these tests cover every query of the country/capital
table, every cell of the continuous grid, the standard library's formulas on a dense sweep, and
structural properties LSRL's tests assert (the ReLU variant has no multiplicative gates).
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
from lsrl.ir.interpret import run

from lsrl.corpus.cases_lsrl import (
    CELLS_PER_DIM,
    CONDITIONALS,
    HALF,
    _gates_expected,
    continuous_prompt,
    continuous_ua,
    country_capitals,
    gates,
    letters,
    random_table,
    tok2tok,
    tok2tok_prompt,
    ua_target,
)


def as_fractions(values) -> list[Fraction]:
    return [Fraction(int(v.numerator), int(v.denominator)) for v in values]


@pytest.mark.parametrize("conditional", sorted(CONDITIONALS))
def test_every_capital_is_found(conditional: str) -> None:
    """All 25 queries of the notebook's table, as one exact batch: the last 3 outputs spell the capital."""
    table = country_capitals()
    assert len(table) == 25 and table[letters("CAN")] == letters("OTT")
    batch = [[[t] for t in tok2tok_prompt(key, table)] for key in table]
    assert all(len(seq) == 153 for seq in batch)
    outputs = run(tok2tok(3, conditional), batch, exact=True)
    for key, out in zip(table, outputs):
        assert tuple(as_fractions(out[-3:, 0])) == table[key], key


@pytest.mark.parametrize("conditional", sorted(CONDITIONALS))
def test_missing_key_gives_zeros(conditional: str) -> None:
    """A query that matches no key never starts the copy: the registers stay 0."""
    table = random_table(3, seed=3)
    query = next(k for k in itertools.product(range(10), repeat=3) if k not in table)
    prompt = tok2tok_prompt(query, table)
    outputs = run(tok2tok(3, conditional), [[t] for t in prompt], exact=True)[0]
    assert as_fractions(outputs[:, 0]) == [0] * len(prompt)


@pytest.mark.parametrize("seq_len", [2, 5])
def test_random_tables_in_float64(seq_len: int) -> None:
    """Every key of a random table, in float64, for key lengths the table rows do not cover."""
    table = random_table(seq_len, seed=100 + seq_len)
    batch = [[[t] for t in tok2tok_prompt(key, table)] for key in table]
    for conditional in CONDITIONALS:
        outputs = run(tok2tok(seq_len, conditional), batch)
        for key, out in zip(table, outputs):
            assert tuple(out[-seq_len:, 0]) == table[key], (conditional, key)


def test_random_table_is_lsrl_shaped() -> None:
    table = random_table(4, seed=4)
    assert len(table) == 20
    assert all(len(k) == len(v) == 4 and set(k + v) <= set(range(10)) for k, v in table.items())
    assert table == random_table(4, seed=4)


@pytest.mark.parametrize("seq_len", [2, 3])
def test_relu_variant_has_no_gates(seq_len: int) -> None:
    """LSRL's "direct" variant uses only affine maps and ReLUs; the multiplicative one uses gates."""
    kinds = {c: {n.kind for n in tok2tok(seq_len, c)} for c in CONDITIONALS}
    assert "mul" not in kinds["relu"]
    assert "mul" in kinds["mul"]


def test_unknown_conditional_is_refused() -> None:
    with pytest.raises(ValueError, match="conditional"):
        tok2tok(2, "sigmoid")


@pytest.mark.parametrize("conditional", sorted(CONDITIONALS))
@pytest.mark.parametrize("d_out", [1, 2])
def test_every_cell_of_the_continuous_grid(d_out: int, conditional: str) -> None:
    """x at a non-central point of every cell (as one exact batch) finds that cell's value."""
    d_in, n = 2, CELLS_PER_DIM
    cells = list(itertools.product(range(n), repeat=d_in))
    points = [[(i + Fraction(1, 3)) / n for i in cell] for cell in cells]
    batch = [continuous_prompt(x, d_in, d_out, n) for x in points]
    outputs = run(continuous_ua(d_in, d_out, conditional), batch, exact=True)
    for cell, out in zip(cells, outputs):
        center = [(i + HALF) / n for i in cell]
        assert as_fractions(out[-1]) == ua_target(center, d_out), cell


def test_continuous_grid_of_another_size() -> None:
    """N is a property of the prompt, not of the program: 6 cells per dimension (the benchmark's 37 tokens)."""
    x = [Fraction(2, 7), Fraction(11, 13)]
    prompt = continuous_prompt(x, 2, 1, 6)
    assert len(prompt) == 37
    out = run(continuous_ua(2, 1, "relu"), prompt, exact=True)[0]
    assert as_fractions(out[-1]) == ua_target([Fraction(3, 12), Fraction(11, 12)], 1)


# x on a coarse grid over [-4, 4] and finely across every ramp: the step's corners at 0 and 1/1000,
# ifelse_step's switch at 1/2, the bump's edges at 1 and 3, and x - y near 0 for eq, neq, larger and
# smaller; y below, at and off the grid.
SWEEP_X = sorted(
    {Fraction(k, 40) for k in range(-160, 161)}
    | {c + Fraction(k, 8000) for c in (0, HALF, 1, Fraction(1, 3), 3) for k in range(-12, 13)}
)
SWEEP = [(x, y) for x in SWEEP_X for y in (Fraction(0), Fraction(1), Fraction(1, 3))]


def test_gates_sweep_exact() -> None:
    outputs = run(gates(), [list(pt) for pt in SWEEP], exact=True)[0]
    for pt, out in zip(SWEEP, outputs):
        assert as_fractions(out) == _gates_expected(*pt), pt


def test_gates_sweep_float64() -> None:
    """Against the exact function of the float inputs (x = 1.001 is below 1 + 1/1000 in float64, and
    ifeq amplifies that by 1e10): what is left is the program's own rounding."""
    inputs = [[float(v) for v in pt] for pt in SWEEP]
    outputs = run(gates(), inputs)[0]
    want = np.array([[float(v) for v in _gates_expected(Fraction(x), Fraction(y))] for x, y in inputs])
    # ifelse with a condition outside [0, 1] computes through values of size 1e10*|x|: allow for that
    tolerance = 1e-9 + 1e-15 * np.abs(np.array([float(x) for x, _ in SWEEP]))[:, None] * 10**10
    assert np.all(np.abs(outputs - want) <= tolerance)
