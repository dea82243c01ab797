"""Range analysis: sound on every table row (each traced value lies in its interval), exact where
the rules are exact, and bounded where the documented state rules say it can be."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from lsrl.ir.interpret import trace
from lsrl.passes.ranges import INF, Interval, analyze

import lsrl
from lsrl.corpus import CASES, Case
from tests.test_canonicalize import canonical_graph, exact_batches


def assert_sound(graph, bounds, batch) -> None:
    values = trace(graph, batch, exact=True)
    for node_id, box in bounds.items():
        for j, interval in enumerate(box):
            column = values[node_id][..., j]
            assert all(interval.lo <= v <= interval.hi for v in column.ravel()), (graph[node_id], j, interval)


@pytest.mark.parametrize("row", CASES, ids=lambda c: c.name)
def test_every_value_lies_in_its_interval(row: Case) -> None:
    graph = canonical_graph(row.name)
    assert_sound(graph, analyze(graph), exact_batches(row.name, first_run_only=True)[0])


def _bounds_of(build, **assumptions) -> list[Interval]:
    p = lsrl.Program()
    x = p.input(1)
    p.output(build(p, x))
    graph = p.finish()
    return list(analyze(graph, **assumptions)[graph.outputs[0].node])


def _pairs(intervals: list[Interval]) -> list[tuple]:
    return [(i.lo, i.hi) for i in intervals]


def test_comparisons_and_logic_are_bounded_exactly() -> None:
    assert _pairs(_bounds_of(lambda p, x: lsrl.step(x))) == [(0, 1)]
    assert _pairs(_bounds_of(lambda p, x: lsrl.bump(x, 1, 3))) == [(0, 1)]
    assert _pairs(_bounds_of(lambda p, x: lsrl.eq(x, 2 * x + 1))) == [(0, 1)]
    assert _pairs(_bounds_of(lambda p, x: lsrl.and_(lsrl.step(x), lsrl.larger(x, 3)))) == [(0, 1)]
    assert _pairs(_bounds_of(lambda p, x: lsrl.relu(x) - lsrl.relu(x - 2))) == [(0, 2)]
    assert _pairs(_bounds_of(lambda p, x: lsrl.relu(x) + lsrl.relu(-x))) == [(0, INF)]


def test_input_ranges_propagate_through_arithmetic() -> None:
    assert _pairs(_bounds_of(lambda p, x: 3 * x - 1, input_range=(Fraction(-1, 3), 2))) == [(-2, 5)]
    assert _pairs(_bounds_of(lambda p, x: x * x, input_range=(-2, 1))) == [(-2, 4)]
    assert _pairs(_bounds_of(lambda p, x: x * p.const(0) + 1, input_range=None)) == [(1, 1)]
    p = lsrl.Program()
    xy = p.input(2)
    p.output(xy[0] - xy[1])
    graph = p.finish()
    assert _pairs(analyze(graph, input_range=[(0, 1), (None, 5)])[graph.outputs[0].node]) == [(-5, INF)]
    with pytest.raises(ValueError, match="empty input range"):
        analyze(graph, input_range=(2, 1))


def test_counters_and_accumulators() -> None:
    assert _pairs(_bounds_of(lambda p, x: lsrl.counter(p))) == [(0, INF)]
    assert _pairs(_bounds_of(lambda p, x: lsrl.counter(p), max_len=10)) == [(0, 9)]
    assert _pairs(_bounds_of(lambda p, x: lsrl.accumulate(x), input_range=(0, 1))) == [(0, INF)]
    assert _pairs(_bounds_of(lambda p, x: lsrl.accumulate(x), input_range=(-1, 2), max_len=4)) == [(-4, 8)]
    assert _pairs(_bounds_of(lambda p, x: lsrl.accumulate(x), input_range=(-1, 2))) == [(-INF, INF)]


def test_cycles_and_shift_registers_are_bounded() -> None:
    one_hot = _bounds_of(lambda p, x: p.linear_state([], [[0, 0, 1], [1, 0, 0], [0, 1, 0]], [], [0, 0, 1]))
    assert _pairs(one_hot) == [(0, 1)] * 3
    # units are bounded one by one: mod_counter's readout 0*h0 + ... + 4*h4 gets [0, 10], not [0, 4]
    assert _pairs(_bounds_of(lambda p, x: lsrl.mod_counter(p, 5))) == [(0, 10)]
    assert _pairs(_bounds_of(lambda p, x: lsrl.delay(x, 3), input_range=(-1, 2))) == [(-1, 2)]
    rotation = [[0, -1], [1, 0]]
    quarter_turns = _bounds_of(lambda p, x: p.linear_state([], rotation, [], [1, 0]))
    assert _pairs(quarter_turns) == [(-1, 1), (-1, 1)]


def test_what_it_cannot_bound() -> None:
    """A contraction driven by a bounded input converges, but its intervals never repeat: bounded
    by its norm (|h| <= |x| / (1 - 1/2)), and exactly over a given length; growth is unbounded."""
    halve = lambda p, x: p.linear_state(x, [[Fraction(1, 2)]], [[1]], [0])  # noqa: E731
    assert _pairs(_bounds_of(halve, input_range=(0, 1))) == [(-2, 2)]
    lo, hi = _pairs(_bounds_of(halve, input_range=(0, 1), max_len=3))[0]
    assert (lo, hi) == (0, Fraction(7, 4))
    double = lambda p, x: p.linear_state(x, [[2]], [[1]], [0])  # noqa: E731
    assert _pairs(_bounds_of(double, input_range=(0, 1))) == [(-INF, INF)]


def test_interval_products_treat_zero_times_infinity_as_zero() -> None:
    assert Interval(0, 0) * Interval(-INF, INF) == Interval(0, 0)
    assert Interval(-1, 2) * Interval(3, INF) == Interval(-INF, INF)
    assert Interval(1, 2) * Interval(3, INF) == Interval(3, INF)
    assert np.isinf(float(Interval.unbounded().scaled(-2).lo))


# --- integrality ----------------------------------------------------------------------------------
@pytest.mark.parametrize("row", CASES, ids=lambda c: c.name)
def test_every_integer_unit_takes_integer_values(row: Case) -> None:
    graph = canonical_graph(row.name)
    bounds = analyze(graph, row.input_range, integer_inputs=row.integer_inputs)
    values = trace(graph, exact_batches(row.name, first_run_only=True)[0], exact=True)
    for node_id in bounds:
        for j, integer in enumerate(bounds.integer(node_id)):
            if integer:
                assert all(v.denominator == 1 for v in values[node_id][..., j].ravel()), (graph[node_id], j)


def _integer_of(build, integer_inputs: bool = True, **assumptions) -> list[bool]:
    p = lsrl.Program()
    x = p.input(1)
    p.output(build(p, x))
    graph = p.finish()
    return list(analyze(graph, integer_inputs=integer_inputs, **assumptions).integer(graph.outputs[0].node))


def test_integer_inputs_make_steps_and_counts_integers() -> None:
    assert _integer_of(lambda p, x: lsrl.step(x)) == [True]
    assert _integer_of(lambda p, x: lsrl.step(x), integer_inputs=False) == [False]
    assert _integer_of(lambda p, x: lsrl.larger(x, Fraction(1, 2))) == [True]  # 1000 (x - 1/2) is an integer
    assert _integer_of(lambda p, x: lsrl.step(x, Fraction(1, 3))) == [False]  # x / 3 is not
    assert _integer_of(lambda p, x: lsrl.accumulate(lsrl.eq(x, 3))) == [True]
    assert _integer_of(lambda p, x: 2 * x * x - 1) == [True]
    assert _integer_of(lambda p, x: x * Fraction(1, 2)) == [False]
    assert _integer_of(lambda p, x: lsrl.counter(p), integer_inputs=False) == [True]
    assert _integer_of(lambda p, x: lsrl.mod_counter(p, 5), integer_inputs=False) == [True]


def test_a_state_unit_is_an_integer_only_if_everything_it_reads_is() -> None:
    """The transition's rows: unit 0 reads itself (integer), unit 1 reads unit 2, which halves."""
    state = lambda p, x: p.linear_state(  # noqa: E731
        x, [[1, 0, 0], [0, 0, 1], [0, 0, Fraction(1, 2)]], [[1], [0], [0]], [0, 0, 1]
    )
    assert _integer_of(state) == [True, False, False]
    assert _integer_of(state, integer_inputs=False) == [False, False, False]


def test_conditions_are_integer_units_within_zero_and_one() -> None:
    p = lsrl.Program()
    x = p.input(1)
    p.output(lsrl.concat([lsrl.step(x), x, lsrl.step(x, Fraction(1, 3))]))
    graph = p.finish()
    node = graph.outputs[0].node
    assert [analyze(graph, (-5, 5), integer_inputs=True).is_condition(node, j) for j in range(3)] == [True, False, False]
    assert not analyze(graph, (-5, 5)).is_condition(node, 0)
