"""The ``rnn`` (stock torch.nn.RNN) and ``linear-rnn`` targets: what they write is what users load.

The shared table checks every row on both targets (tests/test_targets.py); here: the stacking
keeps the function exactly, the weights carry the stock modules' names and shapes, a fresh
``nn.RNN`` built from config.json (or the written model.py) reproduces the outputs, and the
command line writes the files and refuses what cannot be rebuilt.
"""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from lsrl.backends import Options, get_target
from lsrl.backends.stacking import stack
from lsrl.ir.interpret import run
from lsrl.passes import lower

import lsrl
from lsrl.corpus import as_fraction, case
from tests.test_cli import ROOT, run_cli

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

MAX_LEN = 1024


def _inputs(name: str) -> list[list[float]]:
    return [[float(as_fraction(v)) for v in token] for token in case(name).runs[0].inputs]


def _compiled(name: str, target: str):
    row = case(name)
    return lsrl.compile_to(row.program(), target, row.options())


def _expected(name: str) -> np.ndarray:
    return run(case(name).program(), _inputs(name))[0]


@pytest.mark.parametrize("name", ["counters", "gated_sum", "continuous_ua_2x1_relu", "majority"])
def test_stacking_keeps_the_function_exactly(name: str) -> None:
    """continuous_ua_2x1_relu has an affine layer between others (held as ReLU pairs), majority
    begins with ReLU layers, gated_sum has a rebuilt product."""
    row = case(name)
    model = lower(row.graph(), row.input_range, MAX_LEN, rebuild_gates=True, integer_inputs=row.integer_inputs)
    stacked = stack(model, "rnn")
    kinds = [layer.kind for layer in model.layers]
    hidden = kinds[:-1] if kinds[-1] == "affine" else kinds  # the affine readout, or an identity one
    assert [layer.kind for layer in stacked.layers] == ["relu" if k == "affine" else k for k in hidden] + ["affine"]
    inputs = [[as_fraction(v) for v in token] for token in row.runs[0].inputs]
    assert np.array_equal(stacked.run(inputs, exact=True), model.run(inputs, exact=True))


def _stock_modules(config: dict):
    return torch.nn.ModuleDict(
        {"rnn": torch.nn.RNN(**config["rnn"]), "readout": torch.nn.Linear(**config["readout"])}
    ).double()


def test_the_rnn_weights_have_the_stock_names_and_shapes() -> None:
    compiled = _compiled("dyck1", "rnn")
    config = compiled.config["rnn"]
    assert config["nonlinearity"] == "relu" and config["batch_first"] and config["num_layers"] == 7
    stock = _stock_modules(compiled.config).state_dict()
    assert {name: tuple(t.shape) for name, t in stock.items()} == {
        name: t.shape for name, t in compiled.tensors.items()
    }
    assert compiled.figures["parameters"] == sum(t.numel() for t in stock.values())
    assert compiled.figures["layers"] == 7 and compiled.figures["hidden_size"] == config["hidden_size"]
    assert len(compiled.config["rnn_units"]) == 7


@pytest.mark.parametrize("name", ["counters", "gated_sum", "tok2tok_random_2_mul"])
def test_fresh_stock_modules_reproduce_the_outputs(name: str, tmp_path: Path) -> None:
    """counters starts states away from 0; gated_sum and tok2tok have rebuilt products."""
    _compiled(name, "rnn").write(tmp_path)
    modules = _stock_modules(json.loads((tmp_path / "config.json").read_text()))
    modules.load_state_dict(safetensors_torch.load_file(str(tmp_path / "model.safetensors")))
    with torch.no_grad():
        hidden, _ = modules["rnn"](torch.tensor([_inputs(name)], dtype=torch.float64))
        got = modules["readout"](hidden)[0].numpy()
    np.testing.assert_allclose(got, _expected(name), rtol=1e-9, atol=1e-9)


def _import_written(path: Path):
    spec = importlib.util.spec_from_file_location(f"written_linear_rnn_{path.parent.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["majority", "gated_sum"])
def test_the_written_linear_rnn_runs_without_lsrl(name: str, tmp_path: Path) -> None:
    written = _compiled(name, "linear-rnn").write(tmp_path)
    assert set(written) == {"model.safetensors", "config.json", "model.py"}
    source = (tmp_path / "model.py").read_text()
    imported = {
        alias.name.split(".")[0] for node in ast.walk(ast.parse(source)) if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module)])
    }
    assert imported <= {"json", "pathlib", "torch", "safetensors"}
    model = _import_written(tmp_path / "model.py").load(tmp_path, torch.float64)
    with torch.no_grad():
        got = model(torch.tensor([_inputs(name)], dtype=torch.float64))[0].numpy()
    np.testing.assert_allclose(got, _expected(name), rtol=1e-9, atol=1e-9)


def test_the_linear_rnn_blocks_and_their_names() -> None:
    """majority's model begins with two ReLU layers (a first block without a recurrence), then a
    state layer and two more ReLU layers."""
    compiled = _compiled("majority", "linear-rnn")
    blocks = compiled.config["model"]["blocks"]
    assert [b["state_size"] is None for b in blocks] == [True, False]
    assert [len(b["mlp_sizes"]) for b in blocks] == [2, 2]
    assert {"blocks.0.mlp.1.weight", "blocks.1.recurrence.A", "blocks.1.recurrence.init", "readout.bias"} <= set(
        compiled.tensors
    )
    assert "blocks.0.recurrence.A" not in compiled.tensors


@pytest.mark.parametrize("target", ["rnn", "linear-rnn"])
def test_an_affine_program_gets_a_layer_before_the_readout(target: str) -> None:
    p = lsrl.Program()
    x = p.input(1)
    p.output(2 * x - 1)
    compiled = lsrl.compile_to(p.finish(), target)
    got = lsrl.run_compiled(compiled, [[3.0], [-0.5]], "float64")[0]
    assert got.tolist() == [[5.0], [-2.0]]


@pytest.mark.parametrize("target", ["rnn", "linear-rnn"])
def test_a_model_with_a_gate_layer_is_refused(target: str) -> None:
    p = lsrl.Program()
    x = p.input(1)
    p.output(x * x)
    with pytest.raises(ValueError, match="gate layer"):
        get_target(target).build(lower(p.finish()), Options())


def test_lsrl_compile_writes_the_stock_files_and_run_uses_them(tmp_path: Path) -> None:
    program = str(ROOT / "examples" / "more_ones.lsrl")
    status, out, err = run_cli("compile", program, "--target", "rnn", "--integer-inputs", "--input-range", "0,1",
                               "-o", str(tmp_path))
    assert (status, err) == (0, "")
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["target"] == "rnn" and config["max_len"] == MAX_LEN
    assert set(safetensors_torch.load_file(str(tmp_path / "model.safetensors"))) == set(
        _stock_modules(config).state_dict()
    )
    status, out, err = run_cli("run", program, "--input", "1 0 0 1 1 1 0", "--backend", "rnn", "--dtype", "float64", "--json")
    assert status == 0
    assert json.loads(out)["outputs"] == [[1.0], [0.0], [0.0], [0.0], [1.0], [1.0], [1.0]]


def test_lsrl_compile_refuses_a_product_it_cannot_rebuild(tmp_path: Path) -> None:
    program = str(ROOT / "examples" / "frac_prevs.lsrl")
    status, out, err = run_cli("compile", program, "--target", "linear-rnn", "--integer-inputs", "-o", str(tmp_path))
    assert status == 1
    assert "frac_prevs.lsrl:18:1: error: cannot rebuild this product from ReLUs" in err
    assert "neither factor is proven to be 0 or 1" in err
