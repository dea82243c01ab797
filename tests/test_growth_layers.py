"""Growth of linear-rnn models, and layers inserted at every position (backends/growth*.py,
docs/growth.md): the grown model gives the original's outputs to the last bit in float32 and
float64; breaking a constraint changes them."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("torch")

from lsrl.backends.growth import current_sizes, grow_compiled, size_names
from lsrl.backends.target import Compiled
from lsrl.ir.errors import LsrlError
from lsrl.ir.free_weights import Initializer

from lsrl.corpus import case
from lsrl.targets import compile_to, run_compiled
from tests.test_targets import compiled, program, references

ROWS = ["more_ones", "parity", "dyck1", "shift_register"]
INIT = Initializer.parse("normal:0.02")
# sizes added per target, with two new layers
PLANS = {"linear-rnn": {"state_size": 3, "num_blocks": 2}, "rnn": {"hidden_size": 5, "num_layers": 2},
         "lstm": {"hidden_size": 4, "num_layers": 2}, "gru": {"hidden_size": 4, "num_layers": 2}}


def _outputs(model: Compiled, name: str, dtype: str) -> list[np.ndarray]:
    return [run_compiled(model, inputs, dtype) for inputs, _ in references(name)]


def grown(target: str, name: str, at: int | None, seed: int = 1) -> tuple[Compiled, Compiled]:
    original = compiled(target, name)
    now = current_sizes(original)
    return original, grow_compiled(original, {k: now[k] + v for k, v in PLANS[target].items()}, INIT, seed, at)


@pytest.mark.parametrize("name", ROWS)
@pytest.mark.parametrize("target", list(PLANS))
def test_layers_inserted_anywhere_keep_the_outputs(target: str, name: str) -> None:
    original = compiled(target, name)
    depth = current_sizes(original)[list(PLANS[target])[-1]]
    before = {dtype: _outputs(original, name, dtype) for dtype in ("float32", "float64")}
    for at in range(depth + 1):
        _, bigger = grown(target, name, at)
        for dtype, want in before.items():
            for got, expected in zip(_outputs(bigger, name, dtype), want):
                assert np.array_equal(got, expected), f"{target} {name} {dtype}: inserting at {at} changed the outputs"


def _with(model: Compiled, tensor: str, index: tuple, value: float) -> Compiled:
    tensors = {k: v.copy() for k, v in model.tensors.items()}
    tensors[tensor][index] = value
    return Compiled(model.target, model.config, tensors, model.files)


def _changes(original: Compiled, broken: Compiled, name: str = "dyck1") -> bool:
    return any(not np.array_equal(run_compiled(original, inputs, "float64"), run_compiled(broken, inputs, "float64"))
               for inputs, _ in references(name))


def test_linear_rnn_constraints_are_needed() -> None:
    original = compiled("linear-rnn", "dyck1")
    bigger = grow_compiled(original, {"state_size": 12, "num_blocks": 4}, INIT, 1, at=1)  # free units in new blocks
    size = original.config["model"]["blocks"][1]["state_size"]
    assert not _changes(original, bigger)
    # block 1 of the original is block 3 once two blocks go before it
    assert _changes(original, _with(bigger, "blocks.3.recurrence.A", (0, size), 1e6))  # an old unit reads a new one
    assert _changes(original, _with(bigger, "blocks.3.mlp.0.weight", (0, size), 1e6))  # the MLP reads a new unit
    # the inserted block 1 copies its input: each copy recurring, each copy doubled (not a change
    # common to all units: the next block reads differences of units)
    copies = np.arange(original.config["model"]["blocks"][0]["mlp_sizes"][-1])
    assert _changes(original, _with(bigger, "blocks.1.recurrence.A", (copies, copies), 0.5))
    assert _changes(original, _with(bigger, "blocks.1.recurrence.B", (copies, copies), 2.0))
    # the block after the inserted ones reads a free unit
    free_unit = bigger.tensors["blocks.3.recurrence.B"].shape[1] - 1
    assert _changes(original, _with(bigger, "blocks.3.recurrence.B", (slice(None), free_unit), 1e6))


@lru_cache(maxsize=None)
def relu_variant(target: str, name: str) -> Compiled:
    return compile_to(program(name), target, case(name).options(variant="relu"))


@pytest.mark.parametrize("name", ["dyck1", "shift_register"])
@pytest.mark.parametrize("target", ["lstm", "gru"])
def test_relu_cells_inserted_anywhere_keep_the_outputs(target: str, name: str) -> None:
    """The ReLU variants copy exactly: one cell per value (LSTM cells are non-negative) or a pair
    (a GRU cell's sign is not known); signed inputs below the first layer as a pair."""
    original = relu_variant(target, name)
    now = current_sizes(original)
    before = _outputs(original, name, "float64")
    for at in range(now["num_layers"] + 1):
        hidden = 2 * now["hidden_size"] if target == "gru" else now["hidden_size"] + 4  # a GRU copies in pairs
        bigger = grow_compiled(original, {"hidden_size": hidden, "num_layers": now["num_layers"] + 2}, INIT, 1, at)
        assert all(np.array_equal(got, want) for got, want in zip(_outputs(bigger, name, "float64"), before)), at


def test_cell_copies_are_needed() -> None:
    for target, cell_gate in (("rnn", 0), ("lstm", 2), ("gru", 2)):  # the gate that carries the value
        original = compiled(target, "dyck1")
        now = current_sizes(original)
        bigger = grow_compiled(original, {"hidden_size": now["hidden_size"] + 4, "num_layers": now["num_layers"] + 1},
                               INIT, 1, at=2)
        hidden = current_sizes(bigger)["hidden_size"]
        assert not _changes(original, bigger), target
        cells = np.array([c for c, label in enumerate(bigger.config[f"{target}_units"][2]) if label.startswith("copy")])
        rows = cell_gate * hidden + cells  # the copy cells of the new layer 2, each broken
        assert _changes(original, _with(bigger, f"{target}.weight_hh_l2", (rows, cells), 1.0)), target  # they recur
        assert _changes(original, _with(bigger, f"{target}.weight_ih_l2", (rows, slice(None)), 0.0)), target  # read 0
    lstm = compiled("lstm", "dyck1")
    bigger = grow_compiled(lstm, {"num_layers": current_sizes(lstm)["num_layers"] + 1}, INIT, 1, at=2)
    hidden = current_sizes(bigger)["hidden_size"]
    assert _changes(lstm, _with(bigger, "lstm.bias_hh_l2", (slice(hidden, 2 * hidden),), 1024.0))  # forget gate open


def test_too_few_cells_for_the_copies() -> None:
    gru = relu_variant("gru", "dyck1")  # a pair of cells per copied value
    with pytest.raises(LsrlError, match="needs hidden_size >="):
        grow_compiled(gru, {"num_layers": current_sizes(gru)["num_layers"] + 1}, INIT, at=2)


TWICE = {  # a growth, then another of the grown model, layers at different positions
    "hawk": ({"lru_width": 16, "num_attention_heads": 1, "num_hidden_layers": 7, "intermediate_size": 24},
             {"lru_width": 32, "hidden_size": 12, "num_hidden_layers": 9, "intermediate_size": 40}),
    "linear-rnn": ({"state_size": 8, "num_blocks": 3}, {"state_size": 10, "num_blocks": 5}),
    "lstm": ({"hidden_size": 12, "num_layers": 8}, {"hidden_size": 20, "num_layers": 10}),
    "gru": ({"hidden_size": 16, "num_layers": 8}, {"hidden_size": 20, "num_layers": 10}),
    "mamba": ({"d_inner": 40, "n_layer": 10}, {"d_model": 12, "n_layer": 12, "d_state": 3}),
}


@pytest.mark.parametrize("target", list(TWICE))
def test_growths_compose(target: str) -> None:
    original = compiled(target, "dyck1", "float64")
    first, second = TWICE[target]
    twice = grow_compiled(grow_compiled(original, first, INIT, 1, 2), second, INIT, 2, 1)
    assert [len(twice.config["growth"])] + [current_sizes(twice)[k] for k in second] == [2] + list(second.values())
    for got, want in zip(_outputs(twice, "dyck1", "float64"), _outputs(original, "dyck1", "float64")):
        assert np.array_equal(got, want)


@settings(max_examples=12, deadline=None)
@given(target=st.sampled_from(["rnn", "lstm", "gru", "linear-rnn", "mamba", "hawk"]),
       steps=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 2), st.floats(0, 1)), min_size=1, max_size=3),
       seed=st.integers(0, 2**16))
def test_random_growth_sequences_keep_the_outputs(target: str, steps: list, seed: int) -> None:
    """Random sequences of growths (how much wider, how many layers, where) keep the outputs."""
    original = compiled(target, "dyck1", "float64")
    model = original
    width, depth = (size_names(target)[0], size_names(target)[-1])
    for wider, deeper, where in steps:
        now = current_sizes(model)
        plan = {width: now[width] + wider, depth: now[depth] + deeper}
        if deeper:  # room for the copies, whatever the position
            plan.update(ROOM[target](now))
        model = grow_compiled(model, plan, INIT, seed, at=round(where * now[depth]))
    for got, want in zip(_outputs(model, "dyck1", "float64"), _outputs(original, "dyck1", "float64")):
        assert np.array_equal(got, want)


ROOM = {  # sizes that leave a new layer a channel or cell for every value it copies (dyck1)
    "rnn": lambda now: {"hidden_size": max(now["hidden_size"], 16)},
    "lstm": lambda now: {"hidden_size": max(now["hidden_size"], 16)},
    "gru": lambda now: {"hidden_size": max(now["hidden_size"], 24)},
    "linear-rnn": lambda now: {},
    "mamba": lambda now: {"d_inner": max(now["d_inner"], 48)},
    "hawk": lambda now: {"lru_width": max(now["lru_width"], 24), "intermediate_size": max(now["intermediate_size"], 48)},
}
