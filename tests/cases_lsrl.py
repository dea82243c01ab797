"""Table rows for the programs of the LSRL paper and its notebooks, with independent expectations."""

from __future__ import annotations

from typing import Sequence

import lsrl
from ir.graph import Graph
from tests.table import Case, Run, tokens


def more_ones() -> Graph:
    """LSRL's first example: 1 while the prefix holds more ones than zeros."""
    p = lsrl.Program()
    x = p.input(1)
    ones = p.state(0, lambda prev: prev + x, name="ones")
    zeros = p.state(0, lambda prev: prev + (1 - x), name="zeros")
    p.output(lsrl.larger(ones, zeros))
    return p.finish()


def _more_ones_run(bits: Sequence[int]) -> Run:
    ones = zeros = 0
    expected = []
    for b in bits:
        ones += b
        zeros += 1 - b
        expected.append([1 if ones > zeros else 0])
    return Run(tokens(bits), expected)


CASES: list[Case] = [
    Case(
        "more_ones",
        more_ones,
        [_more_ones_run([1, 0, 0, 1, 1, 1, 0]), _more_ones_run([0, 0, 0, 1, 1, 1, 1, 1, 0, 1])],
        source="more_ones.lsrl",
    ),
]
