"""Table rows for float32: integer programs that LSRL's constants put beyond float32.

Each program nests the library's comparisons or multiplies them by a count, so that with LSRL's
``scale = 1000`` their weights multiply to 1e6 and 1e9 and float32, with 24 significant bits, gets
them wrong. The rows state that their tokens are integers in a range; the compiler then fits the
comparisons to the integers (``passes.constants``) and float32 computes every row exactly, or,
where a value is a fraction, within its stated bound. Each program is also an
``examples/precision/*.lsrl`` file. Expected outputs are plain Python on the task's definition.
"""

from __future__ import annotations

import functools
import operator
import random
from fractions import Fraction
from typing import Sequence

import lsrl
from lsrl.corpus.cases_lsrl import NOT_A_CONDITION, refused_without_gates
from lsrl.corpus.rows import Case, Run, tokens
from lsrl.ir.graph import Graph

HALF = Fraction(1, 2)
THRESHOLDS = 200


def nested_eq_count() -> Graph:
    p = lsrl.Program()
    x = p.input(1)
    depth = lsrl.accumulate(x).named("depth")
    p.output(lsrl.and_(lsrl.eq(depth, 0), lsrl.eq(depth, 0)), name="balanced")
    return p.finish()


def _nested_eq_count_run(bits: Sequence[int]) -> Run:
    counts = [sum(bits[: t + 1]) for t in range(len(bits))]
    return Run(tokens(bits), [[1 if c == 0 else 0] for c in counts])


def accumulated_condition() -> Graph:
    p = lsrl.Program()
    x = p.input(1)
    p.output(lsrl.accumulate(lsrl.and_(lsrl.eq(x, 1), lsrl.eq(x, 1))), name="n")
    return p.finish()


def _accumulated_condition_run(values: Sequence[int]) -> Run:
    return Run(tokens(values), [[sum(1 for v in values[: t + 1] if v == 1)] for t in range(len(values))])


def folded_threshold_sum() -> Graph:
    p = lsrl.Program()
    x = p.input(1)
    c = lsrl.accumulate(x).named("c")
    larger = [lsrl.larger(c, m - HALF) for m in range(1, THRESHOLDS + 1)]
    p.output(functools.reduce(operator.add, larger), name="n")
    return p.finish()


def _folded_threshold_sum_run(bits: Sequence[int]) -> Run:
    return Run(tokens(bits), [[min(sum(bits[: t + 1]), THRESHOLDS)] for t in range(len(bits))])


def third_of_eq() -> Graph:
    p = lsrl.Program()
    x = p.input(1)
    p.output(lsrl.counter(p) * (Fraction(1, 3) * lsrl.eq(x, 3)), name="v")
    return p.finish()


def _third_of_eq_run(values: Sequence[int]) -> Run:
    return Run(tokens(values), [[Fraction(t, 3) if v == 3 else 0] for t, v in enumerate(values)])


def dyck1_nested() -> Graph:
    p = lsrl.Program()
    x = p.input(1)
    depth = lsrl.accumulate(3 - 2 * x).named("depth")
    errors = lsrl.accumulate(lsrl.smaller(depth, 0)).named("errors")
    p.output(lsrl.eq(errors, 0), name="valid")
    p.output(lsrl.and_(lsrl.eq(errors, 0), lsrl.eq(depth, 0)), name="balanced")
    return p.finish()


def _dyck1_nested_run(brackets: str) -> Run:
    depth = dips = 0
    expected = []
    for b in brackets:
        depth += 1 if b == "(" else -1
        dips += depth < 0
        expected.append([int(dips == 0), int(dips == 0 and depth == 0)])
    return Run(tokens([1 if b == "(" else 2 for b in brackets]), expected)


_random = random.Random(13)
CASES: list[Case] = [
    Case("nested_eq_count", nested_eq_count,
         [_nested_eq_count_run([1, 1]), _nested_eq_count_run([0, 0, 1, 0, 1]),
          _nested_eq_count_run([0] * 30 + [1] + [0] * 20)],
         source="precision/nested_eq_count.lsrl", input_range=(0, 1), integer_inputs=True),
    Case("accumulated_condition", accumulated_condition,
         [_accumulated_condition_run([3, 7, 1, 9, 5, 2]),
          _accumulated_condition_run([_random.randint(0, 20) for _ in range(60)])],
         source="precision/accumulated_condition.lsrl", input_range=(0, 20), integer_inputs=True),
    Case("folded_threshold_sum", folded_threshold_sum,
         [_folded_threshold_sum_run([1] * 200), _folded_threshold_sum_run([1, 0] * 150)],
         source="precision/folded_threshold_sum.lsrl", input_range=(0, 1), integer_inputs=True),
    Case("third_of_eq", third_of_eq,
         [_third_of_eq_run([1, 2, 3, 2, 1]), _third_of_eq_run([_random.randint(1, 3) for _ in range(40)])],
         source="precision/third_of_eq.lsrl", input_range=(1, 3), integer_inputs=True,
         refused_by=refused_without_gates(NOT_A_CONDITION), float32_default="bounded"),  # thirds
    Case("dyck1_nested", dyck1_nested,
         [_dyck1_nested_run("((("), _dyck1_nested_run("(()())"), _dyck1_nested_run("())(()"),
          _dyck1_nested_run("".join(_random.choice("()") for _ in range(80)))],
         source="precision/dyck1_nested.lsrl", input_range=(1, 2), integer_inputs=True),
]
