"""Canonicalization: every pass keeps the exact outputs of every table row, and does its own job.

``exact_batches`` and ``reference_outputs`` are shared with the linearize and range tests: the
interpreter's exact outputs on the original graph, computed once per row, sequences of one length
batched together. A row's first run alone checks the graph after each single pass (exact mode is
slow on the long prompts); all its runs check the canonical graph.
"""

from __future__ import annotations

import functools
from fractions import Fraction

import numpy as np
import pytest
from lsrl.ir.graph import Graph
from lsrl.ir.interpret import run
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import exact
from lsrl.ir.verify import verify
from lsrl.passes import PASS_NAMES, PIPELINE, prepare, run_pipeline
from lsrl.passes.canonicalize import (
    balance_relus,
    eliminate_common_subexpressions,
    eliminate_dead_code,
    fold_affine,
    fold_constants,
    fold_state_inputs,
)

import lsrl
from lsrl.corpus import CASES, Case, as_fraction, case


@functools.lru_cache(maxsize=None)
def exact_batches(name: str, first_run_only: bool = False) -> tuple[list, ...]:
    """The row's input sequences as exact numbers, grouped into batches of one length."""
    groups: dict[int, list] = {}
    for r in case(name).runs[:1] if first_run_only else case(name).runs:
        groups.setdefault(len(r.inputs), []).append([[as_fraction(v) for v in tok] for tok in r.inputs])
    return tuple(groups.values())


@functools.lru_cache(maxsize=None)
def reference_outputs(name: str, first_run_only: bool = False) -> tuple[np.ndarray, ...]:
    graph = case(name).graph()
    return tuple(run(graph, batch, exact=True) for batch in exact_batches(name, first_run_only))


@functools.lru_cache(maxsize=None)
def canonical_graph(name: str) -> Graph:
    return run_pipeline(case(name).graph())


def prepared_graph(name: str) -> Graph:
    """The row's graph as ``linearize`` receives it (``passes.prepare``, assuming nothing)."""
    return prepare(case(name).graph())


def assert_same_outputs(run_batch, name: str, what: str, first_run_only: bool = False) -> None:
    for batch, want in zip(exact_batches(name, first_run_only), reference_outputs(name, first_run_only)):
        got = run_batch(batch)
        assert got.shape == want.shape and np.array_equal(got, want), f"{name}: {what} changed the outputs"


def structure(graph: Graph) -> list:
    return [(n.id, n.kind, n.operands, n.dim, n.attrs, n.name, n.labels) for n in graph.topological_order()]


@pytest.mark.parametrize("row", CASES, ids=lambda c: c.name)
def test_every_pass_keeps_the_exact_outputs(row: Case) -> None:
    graph = row.graph()
    for name, run_pass in PIPELINE:
        graph = run_pass(graph)
        verify(graph)
        assert_same_outputs(lambda batch: run(graph, batch, exact=True), row.name, name, first_run_only=True)
    canonical = canonical_graph(row.name)
    verify(canonical)
    assert_same_outputs(lambda batch: run(canonical, batch, exact=True), row.name, "canonicalize")


@pytest.mark.parametrize("row", CASES, ids=lambda c: c.name)
def test_survivors_keep_names_labels_and_locations(row: Case) -> None:
    original = row.graph()
    canonical = canonical_graph(row.name)
    assert len(canonical) <= len(original)
    for node in canonical:
        before = original[node.id]
        assert (node.name, node.labels, node.loc) == (before.name, before.labels, before.loc)
    assert structure(run_pipeline(canonical)) == structure(canonical), "the pipeline is not idempotent"


def test_run_pipeline_stops_after_the_named_pass() -> None:
    graph = case("more_ones").graph()
    assert structure(run_pipeline(graph, until=PASS_NAMES[0])) == structure(PIPELINE[0][1](graph))
    with pytest.raises(ValueError, match="unknown pass 'linearise'"):
        run_pipeline(graph, until="linearise")


# --- each pass on a small program ------------------------------------------------------------------
def _program(body) -> Graph:
    p = lsrl.Program()
    x = p.input(2)
    p.output(body(p, x))
    return p.graph


def test_fold_constants_evaluates_and_scales() -> None:
    def body(p, x):
        c = lsrl.relu(p.const([-2, 3]))  # (0, 3)
        return x * c + (x - x) * x  # a product with a constant, and one with zero

    graph = fold_constants(_program(body))
    kinds = [n.kind for n in graph]
    assert "mul" not in kinds and "relu" not in kinds
    assert run(graph, [[1, 2], [5, 7]], exact=True)[0].tolist() == [[0, 6], [0, 21]]


def test_fold_affine_collapses_chains_into_one_node() -> None:
    p = lsrl.Program()
    x = p.input(2)
    z = lsrl.concat((2 * (x + 1))[1:], x[0:1]).named("z")
    p.output(lsrl.relu(z - 3), name="out")
    graph = eliminate_dead_code(fold_affine(p.graph))
    assert sorted(n.kind for n in graph) == ["affine", "input", "relu"]
    affine = next(n for n in graph if n.kind == "affine")
    assert affine.operands == (graph.input.id,)
    assert affine.attrs["weights"][0] == Matrix.from_rows([[0, 2], [1, 0]])
    assert affine.attrs["bias"] == (-1, -3)
    assert run(graph, [[1, 2]], exact=True)[0].tolist() == [[3, 0]]


def test_fold_affine_replaces_a_mere_copy_by_its_value() -> None:
    p = lsrl.Program()
    x = p.input(1)
    r = lsrl.relu(x)
    p.output(lsrl.relu(lsrl.concat(r[0:1]) + 0))
    graph = eliminate_dead_code(fold_affine(p.graph))
    assert sorted(n.kind for n in graph) == ["input", "relu", "relu"]


def test_fold_state_inputs_moves_affine_maps_into_B() -> None:
    p = lsrl.Program()
    x = p.input(1)
    s = p.state(0, lambda prev: prev + 3 * (x + 1) + p.const(2), name="s")
    p.output(s)
    graph = eliminate_dead_code(fold_state_inputs(p.graph))
    state = graph[s.id]
    assert state.operands == (graph.input.id,)
    assert state.attrs["B"] == (Matrix.from_rows([[3]]),) and state.attrs["bias"] == (5,)
    assert len(graph) == 2


def test_balance_relus_moves_the_readers_scale_into_the_relu() -> None:
    p = lsrl.Program()
    x = p.input(1)
    p.output(lsrl.relu(1000 * x) - 1000 * lsrl.relu(x - Fraction(1, 1000)))  # LSRL's step
    graph = balance_relus(fold_affine(p.graph))
    step = graph[graph.outputs[0].node]
    assert [w.to_rows() for w in step.attrs["weights"]] == [[[1]], [[-1]]]
    pre_activations = [graph[graph[r].operands[0]] for r in step.operands]
    assert [(a.attrs["weights"][0].to_rows(), a.attrs["bias"]) for a in pre_activations] == [
        ([[1000]], (0,)), ([[1000]], (-1,))
    ]
    assert run(graph, [["1/3"], ["1/2000"], [-1]], exact=True)[0].ravel().tolist() == [1, Fraction(1, 2), 0]


def test_cse_merges_equal_states_and_commuted_products() -> None:
    p = lsrl.Program()
    x = p.input(1)
    a, b = lsrl.counter(p), lsrl.counter(p)
    p.output(a * x + x * b - 2 * (b * x))
    graph = eliminate_dead_code(eliminate_common_subexpressions(p.graph))
    assert sum(n.kind == "state" for n in graph) == 1
    assert sum(n.kind == "mul" for n in graph) == 1
    assert run(graph, [1, 2, 3], exact=True)[0].ravel().tolist() == [0, 0, 0]


def test_cse_tells_exact_and_float_weights_apart() -> None:
    p = lsrl.Program()
    x = p.input(1)
    p.output(lsrl.relu(x * 0.5) + lsrl.relu(x * exact("1/2")))
    graph = eliminate_common_subexpressions(fold_affine(p.graph))
    assert sum(n.kind == "relu" for n in graph) == 2


def test_dce_keeps_the_input_and_what_outputs_read() -> None:
    p = lsrl.Program()
    x = p.input(1)
    lsrl.relu(x)  # unused
    p.output(p.const(1))
    graph = eliminate_dead_code(p.graph)
    assert sorted(n.kind for n in graph) == ["const", "input"]
