"""Layered models of one state layer, for the code targets' tests (tests/test_codegen.py,
tests/test_mlir.py): one whose transition needs every method of ``plan_state_layer``, and random
sparse ones."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from lsrl.ir.graph import Label
from lsrl.ir.layered import Layer, LayeredModel, UnitLabel
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import number

RANDOM_WEIGHTS = [1, 1, 2, -1, Fraction(1, 2)]  # of random transitions: cycles, chains, self-loops, decays


def state_model(transition: Matrix, weights: Matrix, bias: tuple, init: tuple) -> LayeredModel:
    """A model of one state layer reading a token of two numbers; its output is the state."""
    units = tuple(UnitLabel(Label("s", i)) for i in range(transition.rows))
    layer = Layer("state", {"A": transition, "W": weights, "b": bias, "init": init}, units)
    return LayeredModel(2, [layer], [Label("x", 0), Label("x", 1)], [u.source for u in units])


def every_stage_kind() -> LayeredModel:
    """One state layer of 10 units whose transition needs every method of the plan, with reads
    between stages: a delay line (1 <- 0), a running sum reading it (2), a 3-cycle (3, 4, 5), a
    decay reading the cycle (6), a 2x2 rotation-and-decay block reading the sum (7, 8) and a copy
    reading that block (9)."""
    half, quarter = Fraction(1, 2), Fraction(1, 4)
    transition = Matrix(10, 10, {
        (1, 0): 1,
        (2, 2): 1, (2, 1): 1,
        (3, 4): 1, (4, 5): 1, (5, 3): 1,
        (6, 6): half, (6, 3): 1,
        (7, 7): half, (7, 8): quarter, (8, 7): -quarter, (8, 8): half, (7, 2): 1,
        (9, 7): 2,
    })
    rng = np.random.default_rng(0)
    weights = Matrix.from_rows([[int(v) for v in row] for row in rng.integers(-2, 3, (10, 2))])
    bias = tuple(number(Fraction(int(v), 3)) for v in rng.integers(-3, 4, 10))
    init = tuple(number(int(v)) for v in rng.integers(-2, 3, 10))
    return state_model(transition, weights, bias, init)


def random_transition(rng: np.random.Generator, n: int, offset: int = 0) -> dict:
    """The entries of a random sparse ``n x n`` transition, at rows and columns ``offset`` on."""
    return {
        (offset + i, offset + j): RANDOM_WEIGHTS[int(rng.integers(len(RANDOM_WEIGHTS)))]
        for i in range(n) for j in range(n) if rng.random() < 0.15
    }


def random_state_model(rng: np.random.Generator, n: int, entries: dict) -> LayeredModel:
    """A state layer of ``n`` units with transition ``entries`` and random small integer weights."""
    weights = Matrix.from_rows([[int(v) for v in row] for row in rng.integers(-1, 2, (n, 2))])
    bias = tuple(number(int(v)) for v in rng.integers(-1, 2, n))
    init = tuple(number(int(v)) for v in rng.integers(-1, 2, n))
    return state_model(Matrix(n, n, entries), weights, bias, init)
