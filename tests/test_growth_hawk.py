"""Growth of hawk models (backends/growth_hawk.py, docs/growth.md): every size and layers inserted
anywhere keep the outputs of the model in the dtype it was built for, to the last bit; breaking a
constraint changes them; refusals; ``lsrl grow --to`` a recurrentgemma-like shape."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from lsrl.backends.growth import current_sizes, grow_compiled
from lsrl.backends.target import Compiled
from lsrl.ir.errors import LsrlError
from lsrl.ir.free_weights import Initializer

from lsrl.corpus import case as row
from lsrl.targets import run_compiled
from tests.test_cli import run_cli
from tests.test_targets import compiled, references

ROWS = ["more_ones", "parity", "dyck1", "shift_register"]
ADDED = {"hidden_size": 3, "lru_width": 8, "intermediate_size": 24, "num_hidden_layers": 2}
INIT = Initializer.parse("normal:0.02")


def grown(name: str, dtype: str, at: int | None = None, **settings: int) -> tuple[Compiled, Compiled]:
    original = compiled("hawk", name, dtype)
    now = current_sizes(original)
    return original, grow_compiled(original, {**{k: now[k] + v for k, v in ADDED.items()}, **settings}, INIT, 1, at)


def _outputs(model: Compiled, name: str, dtype: str) -> list[np.ndarray]:
    return [run_compiled(model, inputs, dtype) for inputs, _ in references(name)]


@pytest.mark.parametrize("name", ROWS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_grown_hawk_computes_what_the_original_does(name: str, dtype: str) -> None:
    original = compiled("hawk", name, dtype)
    layers = current_sizes(original)["num_hidden_layers"]
    before = _outputs(original, name, dtype)
    for at in (0, layers // 2, layers):
        _, bigger = grown(name, dtype, at)
        after = current_sizes(bigger)
        assert all(after[k] == current_sizes(original)[k] + v for k, v in ADDED.items())
        for got, want in zip(_outputs(bigger, name, dtype), before):
            assert np.array_equal(got, want), f"{name} {dtype}: inserting at {at} changed the outputs"
        # the new weights are drawn, not left zero
        assert np.count_nonzero(bigger.tensors["layers.0.temporal_block.linear_x.weight"]) > \
            np.count_nonzero(original.tensors["layers.0.temporal_block.linear_x.weight"])


def test_wider_gate_blocks_keep_the_function() -> None:
    original, bigger = grown("dyck1", "float64", None, lru_width=16, num_attention_heads=2)
    assert bigger.config["num_attention_heads"] == 2
    assert bigger.tensors["layers.0.temporal_block.rg_lru.input_gate_weight"].shape == (2, 8, 8)
    assert all(np.array_equal(a, b) for a, b in zip(_outputs(bigger, "dyck1", "float64"),
                                                     _outputs(original, "dyck1", "float64")))


def _with(model: Compiled, tensor: str, index: tuple, value: float) -> Compiled:
    tensors = {k: v.copy() for k, v in model.tensors.items()}
    tensors[tensor][index] = value
    return Compiled(model.target, model.config, tensors, model.files)


def _changes(original: Compiled, broken: Compiled) -> bool:
    inputs = references("dyck1")[0][0]
    return not np.array_equal(run_compiled(original, inputs, "float64"), run_compiled(broken, inputs, "float64"))


def test_hawk_constraints_are_needed() -> None:
    original, bigger = grown("dyck1", "float64", 1, lru_width=16, num_attention_heads=1)
    now = current_sizes(original)
    lru, d, inter = now["lru_width"], now["hidden_size"], now["intermediate_size"] // 2
    assert not _changes(original, bigger)
    old = "layers.0.temporal_block."  # an old layer below the inserted ones
    used = int(np.flatnonzero(original.tensors[old + "linear_out.weight"][0])[0])  # a channel unit 0 reads
    assert _changes(original, _with(bigger, old + "linear_out.weight", (0, lru), 1.0))  # old unit reads a new channel
    # an old channel's gate reads a new channel of its (wider) block: weight [head, read, gate's channel]
    assert _changes(original, _with(bigger, old + "rg_lru.input_gate_weight", (0, lru + 1, used), -1e6))
    assert _changes(original, _with(bigger, "layers.0.mlp_block.down_proj.weight", (0, inter), 1.0))
    top = f"layers.{current_sizes(bigger)['num_hidden_layers'] - 1}."
    reader = int(np.flatnonzero(np.any(bigger.tensors[top + "temporal_block.linear_x.weight"][:lru, :d] != 0, 1))[0])
    assert _changes(original, _with(bigger, top + "temporal_block.linear_x.weight", (reader, d), 1.0))  # reads a new unit
    # the inserted layer (layer 1) copies unit copied[k] through channel k: its decay, its y branch,
    # its input gate, its MLP scale, each broken in every copy channel
    copied = range(len(_read_units(bigger, 2, lru, d)))
    copy = "layers.1.temporal_block."
    assert _changes(original, _with(bigger, copy + "rg_lru.recurrent_param", (list(copied),), -100.0))  # a = 1: holds
    assert _changes(original, _with(bigger, copy + "linear_y.bias", (list(copied),), 1.0))
    assert _changes(original, _with(bigger, copy + "rg_lru.input_gate_bias", (0, list(copied)), 0.0))
    assert _changes(original, _with(bigger, "layers.1.mlp_block.gate_proj.bias", (list(copied),), 8.0))


def _read_units(model: Compiled, layer: int, lru: int, d: int) -> np.ndarray:
    weight = model.tensors[f"layers.{layer}.temporal_block.linear_x.weight"][:lru, :d]
    return np.flatnonzero(np.any(weight != 0, axis=0))


def test_hawk_refusals() -> None:
    model = compiled("hawk", "more_ones", "float32")
    with pytest.raises(LsrlError, match="intermediate_size 7 is odd"):
        grow_compiled(model, {"intermediate_size": 7}, INIT)
    with pytest.raises(LsrlError, match="must divide lru_width"):
        grow_compiled(model, {"lru_width": 12, "num_attention_heads": 5}, INIT)
    with pytest.raises(LsrlError, match="cannot insert layers before layer 5"):
        grow_compiled(model, {"num_hidden_layers": 4}, INIT, at=5)


def test_grow_hawk_to_a_recurrentgemma_like_shape(tmp_path) -> None:
    source, small, big = row("more_ones").source_path, tmp_path / "small", tmp_path / "big"
    assert run_cli("compile", str(source), "--target", "hawk", "-o", str(small))[0] == 0
    shape = Path(__file__).parent.parent / "examples" / "data" / "hawk_small.json"
    status, out, err = run_cli("grow", str(small), "-o", str(big), "--to", str(shape), "--at", "1")
    assert status == 0, err
    assert "hidden_size 2 -> 64, lru_width 8 -> 64, intermediate_size 4 -> 384, num_hidden_layers 2 -> 6" in out
    config = json.loads((big / "config.json").read_text())
    assert (config["hidden_size"], config["lru_width"], config["num_attention_heads"]) == (64, 64, 4)
    tokens = "1 0 0 1 1 1 0"
    assert run_cli("run", str(big), "--input", tokens, "--json")[1] == run_cli("run", str(source), "--input", tokens,
                                                                              "--json")[1]
    status, _, err = run_cli("grow", str(small), "-o", str(big), "--width", "4", "--at", "1")
    assert status == 1 and "--at places new layers" in err
    status, _, err = run_cli("grow", str(small), "-o", str(big), "--layers", "4", "--at", "3")
    assert status == 1 and "cannot insert layers before layer 3" in err
    griffin = tmp_path / "griffin.json"
    griffin.write_text(json.dumps({"hidden_size": 64, "block_types": ["recurrent", "recurrent", "attention"]}))
    status, _, err = run_cli("grow", str(small), "-o", str(big), "--to", str(griffin))
    assert status == 1 and "asks for attention blocks" in err
