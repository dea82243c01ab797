"""Property test: on random programs built with the Python builder (sums, scalings, matrices, ReLUs,
gates, slices, concatenations, states with random small rational weights, and the library's
comparisons and large-constant conditionals), every pass, the whole pipeline and linearize keep
the exact outputs on random inputs, the range analysis holds every value it bounds (interval and
lattice), the constants fitted to integer inputs keep the outputs on integer inputs, and a float32
run of the layered model stays within the rounding analysis's stated bound."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lsrl.backends import Options
from lsrl.backends.rounding import rounding_bounds
from lsrl.ir.interpret import run, trace
from lsrl.passes import PIPELINE, lower, prepare, run_pipeline
from lsrl.passes.ranges import analyze

import lsrl

SMALL = st.fractions(min_value=-2, max_value=2, max_denominator=3)
TRANSITION = st.sampled_from([Fraction(0), Fraction(1), Fraction(-1), Fraction(1, 2)])
OPERATIONS = ["add", "scale", "matrix", "relu", "gate", "slice", "concat", "state", "gated", "larger", "eq",
              "ifelse", "ifelse_mul"]


def _fit(v: lsrl.Value, dim: int) -> lsrl.Value:
    """v cut or padded (with its own units) to length dim."""
    while v.dim < dim:
        v = lsrl.concat(v, v)
    return v[:dim]


@st.composite
def programs(draw):
    """(graph, input length, input range): a random program and the box its inputs come from."""
    p = lsrl.Program()
    d_in = draw(st.integers(1, 3))
    values = [p.input(d_in)]

    def pick() -> lsrl.Value:
        return values[draw(st.integers(0, len(values) - 1))]

    for _ in range(draw(st.integers(1, 7))):
        op, a = draw(st.sampled_from(OPERATIONS)), pick()
        if op == "add":
            v = a + _fit(pick(), a.dim) - draw(SMALL)
        elif op == "scale":
            v = a * draw(SMALL) + draw(SMALL)
        elif op == "matrix":
            rows = draw(st.integers(1, 3))
            v = [[draw(SMALL) for _ in range(a.dim)] for _ in range(rows)] @ a
        elif op == "relu":
            v = lsrl.relu(a - draw(SMALL))
        elif op == "gate":
            v = a * _fit(pick(), a.dim)
        elif op == "slice":
            start = draw(st.integers(0, a.dim - 1))
            v = a[start : draw(st.integers(start + 1, a.dim))]
        elif op == "concat":
            v = lsrl.concat(a, pick())
        elif op == "state":
            n = draw(st.integers(1, 3))
            A = [[draw(TRANSITION) for _ in range(n)] for _ in range(n)]
            B = [[draw(SMALL) for _ in range(a.dim)] for _ in range(n)]
            v = p.linear_state(a, A, B, [draw(SMALL) for _ in range(n)])
        elif op == "gated":  # h_t = g_t * h_{t-1} + a_t, the gate a step of another value
            g = lsrl.step(_fit(pick(), a.dim), scale=draw(st.sampled_from([1, 2])))
            v = p.state(draw(SMALL), lambda h, g=g, a=a: g * h + a, dim=a.dim)
        elif op == "larger":
            v = lsrl.larger(a, _fit(pick(), a.dim), scale=draw(st.sampled_from([1, 10, 1000])))
        elif op == "eq":
            v = lsrl.eq(a, _fit(pick(), a.dim))
        elif op == "ifelse":
            v = lsrl.ifelse(lsrl.step(a[0]), a, _fit(pick(), a.dim))
        else:
            v = lsrl.ifelse_mul(a[0], a, _fit(pick(), a.dim))
        values.append(v)
    p.output(values[-1])
    if draw(st.booleans()):
        p.output(pick())
    low = draw(st.fractions(-3, 1, max_denominator=2))
    return p.finish(), d_in, (low, low + draw(st.integers(0, 4)))


@st.composite
def cases(draw, integers: bool = False):
    graph, d_in, (low, high) = draw(programs())
    if integers:
        low, high = math.floor(low), math.floor(high)
    length = draw(st.integers(1, 6))
    inside = st.integers(low, high) if integers else st.fractions(min_value=low, max_value=high, max_denominator=6)
    inputs = [[Fraction(draw(inside)) for _ in range(d_in)] for _ in range(length)]
    return graph, inputs, (low, high)


@settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_passes_and_linearize_keep_the_exact_outputs(case) -> None:
    graph, inputs, input_range = case
    want = run(graph, inputs, exact=True)

    def same(got: np.ndarray, what: str) -> None:
        assert got.shape == want.shape and np.array_equal(got, want), what

    stepped = graph
    for name, run_pass in PIPELINE:
        stepped = run_pass(stepped)
        same(run(stepped, inputs, exact=True), name)
    canonical = run_pipeline(graph)
    same(run(canonical, inputs, exact=True), "the pipeline")
    same(lower(graph).run(inputs, exact=True), "linearize")
    same(lower(graph, input_range=input_range).run(inputs, exact=True), "linearize with an input range")

    for g in (graph, canonical):
        values = trace(g, inputs, exact=True)
        bounds = analyze(g, input_range=input_range, max_len=len(inputs))
        for node_id, box in bounds.items():
            for j, interval in enumerate(box):
                seen = values[node_id][..., j].ravel()
                assert all(interval.lo <= v <= interval.hi for v in seen), (g[node_id], j)
                lattice = bounds.lattice(node_id)[j]
                assert lattice is None or all(lattice.contains(v) for v in seen), (g[node_id], j, lattice)


@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(cases(integers=True))
def test_constants_fitted_to_integer_inputs_keep_the_outputs(case) -> None:
    """On integer inputs the lattices say more, so passes.constants refits comparisons and
    conditionals; the outputs on those inputs stay exactly the same, and so does every lattice."""
    graph, inputs, input_range = case
    want = run(graph, inputs, exact=True)
    for g in (graph, prepare(graph, input_range, integer_inputs=True)):
        values = trace(g, inputs, exact=True)
        bounds = analyze(g, input_range, integer_inputs=True)
        for node_id in bounds:
            for j, lattice in enumerate(bounds.lattice(node_id)):
                assert lattice is None or all(lattice.contains(v) for v in values[node_id][..., j].ravel()), (g[node_id], j)
    got = lower(graph, input_range, integer_inputs=True).run(inputs, exact=True)
    assert got.shape == want.shape and np.array_equal(got, want)


@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), st.booleans())
def test_float32_runs_stay_within_the_stated_rounding_bound(case, integers: bool) -> None:
    graph, inputs, (low, high) = case
    if integers:
        low, high = math.floor(low), math.floor(high)
        inputs = [[Fraction(math.floor(v)) for v in token] for token in inputs]
    options = Options((low, high), integers, max_len=len(inputs))
    model = lower(graph, (low, high), integer_inputs=integers)
    want = model.run(inputs, exact=True)[0].astype(np.float64)
    bound = np.array(rounding_bounds(model, options, "float32"))
    got = model.run_float32([[float(v) for v in token] for token in inputs]).astype(np.float64)
    assert np.all(np.abs(got - want) <= bound + 2.0**-52 * np.abs(want)), (np.abs(got - want), bound)
