"""Growth of compiled models (backends/growth*.py, docs/growth.md): the grown model keeps to the
original's stated bound against the exact reference in both dtypes and agrees with the original in
float64 to a few ulps; breaking a constraint changes the outputs; refusals; ``lsrl grow`` and
``lsrl run DIR``. (benchmarks/growth_agreement.py measures the whole table.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from lsrl.backends import get_target
from lsrl.backends.growth import current_sizes, grow_compiled
from lsrl.backends.target import Compiled
from lsrl.ir.errors import LsrlError
from lsrl.ir.free_weights import Initializer

from lsrl.corpus import case as row
from lsrl.targets import run_compiled
from tests.test_cli import run_cli
from tests.test_targets import REFERENCE_ROUNDING, compiled, output_bounds, references

ROWS = ["more_ones", "parity", "dyck1", "shift_register"]
# sizes added per target: every size each target grows in
PLANS = {
    "rnn": {"hidden_size": 5, "num_layers": 2},
    "lstm": {"hidden_size": 4, "num_layers": 2},
    "gru": {"hidden_size": 4, "num_layers": 2},
    "mamba": {"d_model": 3, "d_inner": 5, "d_state": 2, "dt_rank": 2, "n_layer": 2},
}
FLOAT64_ULPS = {"rnn": 0, "lstm": 0, "gru": 0, "mamba": 4}  # measured on ROWS (benchmarks/growth_agreement.py)
INIT = Initializer.parse("normal:0.02")


def grown(target: str, name: str, seed: int = 1, init: Initializer = INIT) -> tuple[Compiled, Compiled]:
    original = compiled(target, name)
    now = current_sizes(original)
    return original, grow_compiled(original, {k: now[k] + v for k, v in PLANS[target].items()}, init, seed)


@pytest.mark.parametrize("name", ROWS)
@pytest.mark.parametrize("target", list(PLANS))
def test_grown_model_computes_what_the_original_does(target: str, name: str) -> None:
    original, bigger = grown(target, name)
    assert all(current_sizes(bigger)[k] == current_sizes(original)[k] + v for k, v in PLANS[target].items())
    assert set(original.tensors) <= set(bigger.tensors)
    for dtype in ("float32", "float64"):
        bound = np.array(output_bounds(get_target(target), original, dtype, original.config["d_out"]))
        for inputs, want in references(name):
            got, before = run_compiled(bigger, inputs, dtype)[0], run_compiled(original, inputs, dtype)[0]
            slack = REFERENCE_ROUNDING * np.maximum(1.0, np.abs(want))
            assert np.all(np.abs(got - want) <= bound + slack), f"{target} {dtype} {name}: beyond the original's bound"
            if dtype == "float64":
                ulps = np.abs(got - before) / (np.maximum(1.0, np.abs(before)) * 2.0**-52)
                assert ulps.max() <= FLOAT64_ULPS[target], f"{target} {name}: {ulps.max()} ulps from the original"


def _inputs(name: str) -> list[list[float]]:
    return references(name)[0][0]


def _changes(original: Compiled, broken: Compiled, name: str) -> bool:
    inputs = _inputs(name)
    return not np.array_equal(run_compiled(original, inputs, "float64"), run_compiled(broken, inputs, "float64"))


def _with(model: Compiled, tensor: str, index: tuple, value: float) -> Compiled:
    tensors = {k: v.copy() for k, v in model.tensors.items()}
    tensors[tensor][index] = value
    return Compiled(model.target, model.config, tensors, model.files)


def test_rnn_constraints_are_needed() -> None:
    original, bigger = grown("rnn", "dyck1")
    hidden = current_sizes(original)["hidden_size"]
    assert not _changes(original, bigger, "dyck1")
    assert _changes(original, _with(bigger, "rnn.weight_hh_l0", (0, hidden), 1.0), "dyck1")  # an old cell reads a new one
    assert _changes(original, _with(bigger, "readout.weight", (0, hidden + 1), 1.0), "dyck1")  # the readout reads a new one
    top = f"rnn.weight_hh_l{current_sizes(bigger)['num_layers'] - 1}"
    copy_cell = int(np.flatnonzero(bigger.tensors["readout.weight"][0])[0])
    assert _changes(original, _with(bigger, top, (copy_cell, copy_cell), 0.5), "dyck1")  # a copy cell recurs


def test_mamba_constraints_are_needed() -> None:
    original, bigger = grown("mamba", "dyck1")
    now, after = current_sizes(original), current_sizes(bigger)
    assert not _changes(original, bigger, "dyck1")
    c, n2, r2 = now["d_inner"], after["d_state"], after["dt_rank"]
    # x_proj's old B row reads a new channel; a new B row (of a new state entry) is not zero
    assert _changes(original, _with(bigger, "layers.0.mixer.x_proj.weight", (r2, c), 1.0), "dyck1")
    assert _changes(original, _with(bigger, "layers.0.mixer.x_proj.weight", (r2 + n2 - 1, 0), 1.0), "dyck1")
    # out_proj reads a new channel into an old unit
    assert _changes(original, _with(bigger, "layers.0.mixer.out_proj.weight", (0, c), 1.0), "dyck1")
    # the identity block on top: a pass channel's skip D must be 1
    top = after["n_layer"] - 1
    assert _changes(original, _with(bigger, f"layers.{top}.mixer.D", (0,), 0.5), "dyck1")


def test_refusals() -> None:
    lstm = compiled("lstm", "more_ones")
    with pytest.raises(LsrlError, match="cannot shrink"):
        grow_compiled(lstm, {"hidden_size": 1}, INIT)
    with pytest.raises(LsrlError, match="has no size d_model"):
        grow_compiled(lstm, {"d_model": 9}, INIT)
    with pytest.raises(LsrlError, match="growing a torch model is not supported"):
        grow_compiled(compiled("torch", "more_ones"), {"width": 9}, INIT)
    rnn = compiled("rnn", "dyck1")
    with pytest.raises(LsrlError, match="overflows"):  # free cells that overflow: 0 * inf = nan, refused
        grow_compiled(rnn, {"hidden_size": 40, "num_layers": 8}, Initializer.parse("uniform:1000"))


def test_growth_is_reproducible_and_recorded() -> None:
    _, a = grown("rnn", "parity", seed=3)
    _, b = grown("rnn", "parity", seed=3)
    _, c = grown("rnn", "parity", seed=4)
    assert all(np.array_equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
    assert any(not np.array_equal(a.tensors[k], c.tensors[k]) for k in a.tensors)
    record = a.config["growth"][-1]
    assert record["init"] == "normal:0.02" and record["seed"] == 3 and record["probe_max_difference"]["float64"] == 0


def test_grow_and_run_directories(tmp_path) -> None:
    source, small, wide = row("more_ones").source_path, tmp_path / "small", tmp_path / "wide"
    assert run_cli("compile", str(source), "--target", "mamba", "-o", str(small))[0] == 0
    sizes = tmp_path / "sizes.json"
    sizes.write_text(json.dumps({"hidden_size": 16, "num_hidden_layers": 5, "state_size": 4, "expand": 2, "vocab_size": 9}))
    status, out, err = run_cli("grow", str(small), "-o", str(wide), "--to", str(sizes), "--seed", "2")
    assert status == 0, err
    assert "d_model 2 -> 16, d_inner 6 -> 32, d_state 1 -> 4, n_layer 3 -> 5" in out
    config = json.loads((wide / "config.json").read_text())
    assert (config["d_model"], config["d_inner"], config["n_layer"]) == (16, 32, 5)
    tokens = "1 0 0 1 1 1 0"
    small_run = run_cli("run", str(small), "--input", tokens, "--json", "--dtype", "float64")
    wide_run = run_cli("run", str(wide), "--input", tokens, "--json", "--dtype", "float64")
    program_run = run_cli("run", str(source), "--input", tokens, "--json")
    assert small_run[0] == wide_run[0] == 0 and json.loads(wide_run[1]) == json.loads(program_run[1]) == json.loads(small_run[1])
    status, _, err = run_cli("run", str(wide), "--input", tokens, "--exact")
    assert status == 1 and "--exact applies to programs" in err
    status, _, err = run_cli("grow", str(small), "-o", str(wide))
    assert status == 1 and "nothing to grow" in err
    status, _, err = run_cli("grow", str(tmp_path), "-o", str(wide), "--width", "3")
    assert status == 1 and "cannot read the compiled model" in err
    status, _, err = run_cli("grow", str(small), "-o", str(wide), "--width", "4", "--init", "gauss:1")
    assert status == 1 and "unknown initializer" in err


def test_compiled_directories_read_back(tmp_path) -> None:
    for target in ("torch", "gru"):
        original = compiled(target, "parity")
        original.write(tmp_path / target)
        again = Compiled.read(tmp_path / target)
        assert again.config == original.config and again.files == original.files
        assert all(np.array_equal(again.tensors[k], v) for k, v in original.tensors.items())


@pytest.mark.parametrize("target", ["rnn", "mamba", "hawk"])
def test_the_example_directories_are_current(target: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/compiled/more_ones_*: what lsrl compile writes today (the docs' examples grow and run them)."""
    monkeypatch.chdir(Path(__file__).parent.parent)
    committed = Compiled.read(Path("examples") / "compiled" / f"more_ones_{target}")
    status, _, err = run_cli("compile", "examples/more_ones.lsrl", "--target", target, "-o", str(tmp_path))
    assert status == 0, err
    fresh = Compiled.read(tmp_path)
    assert committed.config == fresh.config and committed.tensors.keys() == fresh.tensors.keys()
    assert all(np.array_equal(committed.tensors[k], fresh.tensors[k]) for k in fresh.tensors)
