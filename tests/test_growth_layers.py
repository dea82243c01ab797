"""Growth of linear-rnn models, and layers inserted at every position (backends/growth*.py,
docs/growth.md): the grown model gives the original's outputs to the last bit in float32 and
float64; breaking a constraint changes them."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from lsrl.backends.growth import current_sizes, grow_compiled
from lsrl.backends.target import Compiled
from lsrl.ir.free_weights import Initializer

from lsrl.targets import run_compiled
from tests.test_targets import compiled, references

ROWS = ["more_ones", "parity", "dyck1", "shift_register"]
INIT = Initializer.parse("normal:0.02")
# sizes added per target, with two new layers
PLANS = {"linear-rnn": {"state_size": 3, "num_blocks": 2}}


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
