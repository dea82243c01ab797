"""Growth expansions and composition (passes/growth.py, passes/compose.py, docs/growth.md): every
table row keeps its exact outputs after random expansions with random rational free weights; a
property test over random expansion sequences; and per expansion, breaking the constraint its proof
needs changes the outputs (so the positive tests can fail)."""

from __future__ import annotations

import numpy as np
import pytest
from gmpy2 import mpq
from hypothesis import given, settings
from hypothesis import strategies as st
from lsrl.ir.errors import LsrlError
from lsrl.ir.free_weights import Initializer
from lsrl.ir.graph import Label
from lsrl.ir.heads import HEAD_OF_KIND
from lsrl.ir.layered import COPY, FREE, Layer, LayeredModel, UnitLabel
from lsrl.ir.matrix import Matrix
from lsrl.passes.compose import parallel, sequential
from lsrl.passes.growth import (
    IDENTITY_KINDS,
    STATE_KINDS,
    AddState,
    InsertIdentity,
    Split,
    Widen,
    expand,
    grow,
)

from lsrl.corpus import CASES, Case
from tests.test_canonicalize import exact_batches
from tests.test_linearize import model_of

WIDE = Initializer("uniform", 1.0)  # large free weights: a broken constraint shows at once


def random_expansions(model: LayeredModel, rng: np.random.Generator, count: int) -> list:
    """``count`` expansions, each valid for the model the earlier ones give (applied here too)."""
    chosen = []
    for k in range(count):
        inner = [i for i in range(len(model.layers) - 1)]
        splittable = [i for i in inner if model.layers[i].kind not in HEAD_OF_KIND]
        states = [i for i in inner if model.layers[i].kind in STATE_KINDS]
        options = ["identity"] + ["widen"] * bool(inner) + ["split"] * bool(splittable) + ["state"] * bool(states)
        what = options[rng.integers(len(options))]
        if what == "identity":
            position = int(rng.integers(len(model.layers) + 1))
            kinds = [k for k in IDENTITY_KINDS if not (k == "relu" and position == len(model.layers))]
            expansion = InsertIdentity(position, kinds[rng.integers(len(kinds))])
        elif what == "widen":
            expansion = Widen(int(rng.choice(inner)), int(rng.integers(1, 3)))
        elif what == "state":
            expansion = AddState(int(rng.choice(states)), int(rng.integers(1, 3)))
        else:
            layer = int(rng.choice(splittable))
            expansion = Split(layer, int(rng.integers(model.layers[layer].width)), int(rng.integers(2, 4)))
        model = expand(model, expansion, (7, k), WIDE)
        chosen.append(expansion)
    return chosen


def outputs(model: LayeredModel, name: str) -> list[np.ndarray]:
    return [model.run(batch, exact=True) for batch in exact_batches(name, first_run_only=True)]


def assert_same(got: list[np.ndarray], want: list[np.ndarray], what: str) -> None:
    for g, w in zip(got, want):
        assert g.shape == w.shape and np.array_equal(g, w), f"{what} changed the outputs"


@pytest.mark.parametrize("row", CASES, ids=lambda c: c.name)
def test_random_expansions_keep_every_rows_exact_outputs(row: Case) -> None:
    model = model_of(row.name)
    expansions = random_expansions(model, np.random.default_rng(len(row.name)), 4)
    grown = grow(model, expansions, seed=3, init=WIDE)
    assert grown.stats()["dense_params"] > model.stats()["dense_params"]
    assert_same(outputs(grown, row.name), outputs(model, row.name), f"{row.name}: {expansions}")


@pytest.mark.parametrize("row", CASES, ids=lambda c: c.name)
def test_parallel_composition_computes_both_outputs(row: Case) -> None:
    model = model_of(row.name)
    other = grow(model, random_expansions(model, np.random.default_rng(1), 2), seed=5, init=WIDE)
    partner = model_of("more_ones") if model.d_in == 1 else other
    if any(layer.kind in HEAD_OF_KIND for layer in model.layers):
        with pytest.raises(LsrlError, match=r"parallel composition of (matrix|delta|solve)( and (matrix|delta|solve))* layers is not supported"):
            parallel(model, partner)
        return
    both = parallel(model, partner, seed=2, init=WIDE)
    for batch in exact_batches(row.name, first_run_only=True):
        want = np.concatenate([model.run(batch, exact=True), partner.run(batch, exact=True)], axis=-1)
        assert np.array_equal(both.run(batch, exact=True), want)


def test_sequential_composition_feeds_the_second_model() -> None:
    first, second = model_of("parity"), model_of("more_ones")
    assert first.d_out == second.d_in
    both = sequential(first, second)
    for batch in exact_batches("parity"):
        want = second.run(first.run(batch, exact=True), exact=True)
        assert np.array_equal(both.run(batch, exact=True), want)
    wide = model_of("continuous_ua_2x2_relu")
    with pytest.raises(LsrlError, match=f"1 outputs, the second reads {wide.d_in}"):
        sequential(second, wide)


SMALL_ROWS = ["more_ones", "counters", "gates", "parity", "dyck1", "gated_sum", "shift_register", "hold_register"]


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(SMALL_ROWS), st.integers(0, 2**32 - 1), st.integers(1, 6))
def test_random_expansion_sequences_keep_the_function(name: str, seed: int, count: int) -> None:
    model = model_of(name)
    rng = np.random.default_rng(seed)
    grown = grow(model, random_expansions(model, rng, count), seed=seed, init=WIDE)
    assert_same(outputs(grown, name), outputs(model, name), name)


# --- the constraints are needed: breaking one changes the function --------------------------------
def running_sum() -> LayeredModel:
    """out = x_1 + ... + x_t: a state, carried through a ReLU layer as its two halves, read out."""
    def unit(name: str, **kw) -> UnitLabel:
        return UnitLabel(Label(name, 0), **kw)

    state = Layer("state", {"A": Matrix.eye(1), "W": Matrix.eye(1), "b": (mpq(0),), "init": (mpq(0),)}, (unit("s"),))
    halves = Layer("relu", {"W": Matrix.from_rows([[1], [-1]]), "b": (mpq(0),) * 2},
                   (unit("s", rectified=True), unit("s", sign=-1, rectified=True)))
    readout = Layer("affine", {"W": Matrix.from_rows([[1, -1]]), "b": (mpq(0),)}, (unit("out"),))
    return LayeredModel(1, [state, halves, readout], [Label("x", 0)], [Label("out", 0)])


INPUTS = [[[mpq(v)] for v in (3, -1, -5, 2, mpq(1, 2), 4, -7)]]


def with_weight(model: LayeredModel, layer: int, name: str, position: tuple[int, int], value) -> LayeredModel:
    """``model`` with one weight changed."""
    layers = list(model.layers)
    matrix = layers[layer].attrs[name]
    layers[layer] = Layer(layers[layer].kind, {**layers[layer].attrs, name: Matrix(*matrix.shape, {**matrix.entries, position: value})},
                          layers[layer].units)
    return LayeredModel(model.d_in, layers, model.input_labels, model.output_labels)


def check_needed(grown: LayeredModel, broken: LayeredModel) -> None:
    want = running_sum().run(INPUTS, exact=True)
    assert np.array_equal(grown.run(INPUTS, exact=True), want)
    assert not np.array_equal(broken.run(INPUTS, exact=True), want)


def test_widen_needs_zero_outgoing_weights() -> None:
    grown = expand(running_sum(), Widen(1, 2), 0, WIDE)
    assert [u.role for u in grown.layers[1].units][2:] == [FREE, FREE]
    check_needed(grown, with_weight(with_weight(grown, 2, "W", (0, 2), mpq(1)), 2, "W", (0, 3), mpq(1)))


def test_added_state_units_need_zero_readout_from_the_old_units() -> None:
    grown = expand(running_sum(), AddState(0, 1), 0, WIDE)
    check_needed(grown, with_weight(grown, 0, "A", (0, 1), mpq(1)))
    check_needed(grown, with_weight(grown, 1, "W", (0, 1), mpq(1)))


def test_relu_identity_needs_both_halves() -> None:
    grown = expand(running_sum(), InsertIdentity(1, "relu"), 0, WIDE)
    assert grown.layers[1].width == 2  # the state's sign is unknown: a pair
    check_needed(grown, with_weight(grown, 2, "W", (1, 1), mpq(0)))  # reads relu(s) only
    after_relu = expand(running_sum(), InsertIdentity(2, "relu"), 0, WIDE)
    assert after_relu.layers[2].width == 2  # outputs of a ReLU layer: one unit each


def test_state_identity_needs_a_zero_transition_and_has_a_free_initial_value() -> None:
    grown = expand(running_sum(), InsertIdentity(1, "state"), 0, WIDE)
    other = expand(running_sum(), InsertIdentity(1, "state"), 1, WIDE)
    assert grown.layers[1].attrs["init"] != other.layers[1].attrs["init"]  # free, and unread
    check_needed(grown, with_weight(grown, 1, "A", (0, 0), mpq(1, 2)))


def test_gate_identity_needs_a_gate_of_one() -> None:
    grown = expand(running_sum(), InsertIdentity(1, "gate"), 0, WIDE)
    check_needed(grown, with_weight(grown, 1, "W2", (0, 0), mpq(1, 3)))


def test_split_needs_shares_that_sum_to_one() -> None:
    grown = expand(running_sum(), Split(1, 0, 3), 0, WIDE)
    shares = [grown.layers[2].attrs["W"].entries.get((0, j), 0) for j in (0, 2, 3)]
    assert sum(shares) == 1 and all(s != 0 for s in shares)
    assert [u.role for u in grown.layers[1].units][2:] == [COPY, COPY]
    check_needed(grown, with_weight(grown, 2, "W", (0, 2), shares[1] * 2))


def test_split_state_unit_needs_the_split_transition() -> None:
    grown = expand(running_sum(), Split(0, 0, 2), 0, WIDE)
    assert grown.layers[0].attrs["A"].entries[(0, 1)] != 0  # D A P: copies read each other
    check_needed(grown, with_weight(grown, 0, "A", (1, 1), mpq(1)))


def test_parallel_composition_needs_zero_cross_blocks() -> None:
    both = parallel(running_sum(), model_of("more_ones"), 0, WIDE)
    want = np.concatenate([running_sum().run(INPUTS, exact=True), model_of("more_ones").run(INPUTS, exact=True)], -1)
    assert np.array_equal(both.run(INPUTS, exact=True), want)
    last = len(both.layers) - 1
    broken = with_weight(both, last, "W", (0, both.layers[last - 1].width - 1), mpq(1))
    assert not np.array_equal(broken.run(INPUTS, exact=True), want)


# --- refusals --------------------------------------------------------------------------------------
@pytest.mark.parametrize("expansion, message", [
    (Widen(2, 1), "output layer"),
    (Split(2, 0), "output layer"),
    (AddState(1, 1), "state units go in a state or gated layer"),
    (InsertIdentity(3, "relu"), "proven non-negative"),
    (InsertIdentity(0, "delta"), "no identity layer of kind 'delta'"),
    (Widen(5, 1), "no layer 5"),
])
def test_expansions_that_would_change_the_function_are_refused(expansion, message) -> None:
    with pytest.raises(LsrlError, match=message):
        expand(running_sum(), expansion)


def test_free_weights_come_from_the_seeded_initializer() -> None:
    a, b = (expand(running_sum(), Widen(1, 3), 4, Initializer.parse("normal:0.5")) for _ in range(2))
    assert a.layers[1].attrs["W"] == b.layers[1].attrs["W"]
    free = [v for (i, _), v in a.layers[1].attrs["W"].entries.items() if i >= 2]
    assert len(free) == 3 and all(v.denominator <= 2**20 for v in free)
    zeros = expand(running_sum(), Widen(1, 3), 4, Initializer.parse("zeros"))
    assert zeros.layers[1].attrs["W"].nnz == 2
    for text in ("gauss:1", "normal", "zeros:1", "normal:-1"):
        with pytest.raises(LsrlError):
            Initializer.parse(text)


def test_labels_of_grown_units() -> None:
    grown = grow(running_sum(), [InsertIdentity(0, "affine"), Widen(0, 1)])
    assert [str(u) for u in grown.layers[0].units] == ["carry x[0]", "free"]
    split_model = expand(running_sum(), Split(1, 1))
    assert str(split_model.layers[1].units[2]) == "copy of relu(-s[0])"
