"""The shared test programs, written with the Python builder (the table in tests/table.py runs them)."""

from __future__ import annotations

import lsrl
from ir.graph import Graph


def more_ones() -> Graph:
    """LSRL's first example: 1 while the prefix holds more ones than zeros."""
    p = lsrl.Program()
    x = p.input(1)
    ones = p.state(0, lambda prev: prev + x, name="ones")
    zeros = p.state(0, lambda prev: prev + (1 - x), name="zeros")
    p.output(lsrl.larger(ones, zeros))
    return p.finish()
