"""lsrl bench: interchange interventions inside the stock modules of the rnn, lstm, gru, mamba and
hawk targets (lsrl/bench/module_runner.py), checked against outcomes computed by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from lsrl.bench.case import build_case  # noqa: E402
from lsrl.bench.cases import case_specs, example_programs  # noqa: E402
from lsrl.bench.verify import load_truth, verify_case  # noqa: E402

MODULE_TARGETS = ["rnn", "lstm", "gru", "mamba", "hawk"]
X = np.array([[1, 1, 1, 0, 1, 1, 0, 1], [0, 0, 1, 0, 0, 0, 1, 0]], dtype=np.float64)[..., None]


def _more_ones_expected(base: np.ndarray, source: np.ndarray) -> np.ndarray:
    """more_ones with the count `ones` taken from the source sequence: 1 where the source's count
    of ones is larger than the base's count of zeros (computed by hand)."""
    return (np.cumsum(source == 1) > np.cumsum(base == 0)).astype(float)


def _case(tmp_path, target: str, obfuscation: str):
    from lsrl.bench.module_runner import ModuleRunner

    spec = case_specs(example_programs("more_ones.lsrl"), [target], [obfuscation], 4, 0)[0]
    folder = tmp_path / spec["id"]
    assert build_case(spec, str(folder))["error"] is None
    found, forward, inverse = load_truth(folder)
    names = {n["id"]: n["name"] for n in json.loads((folder / "graph.json").read_text())["nodes"]}
    return folder, found, names, ModuleRunner(folder, target, forward, inverse), forward


def _patch(runner, forward, units: dict[int, list[int]]) -> np.ndarray:
    """The module's outputs on sequence 1 with ``units`` (layer -> labelled units) from sequence 0."""
    masks = {}
    for i, chosen in units.items():
        masks[i] = np.zeros((1, forward[i].shape[0]))
        masks[i][0, chosen] = 1
    source = runner.trace(X)
    return runner.trace(X[1:2], masks, [None if s is None else s[0:1] for s in source])[-1][0, :, 0]


@pytest.mark.parametrize("target", MODULE_TARGETS)
def test_module_interventions_match_a_hand_computation(tmp_path, target):
    folder, found, names, runner, forward = _case(tmp_path, target, "mix")
    from safetensors.numpy import load_file

    # unpatched, the module's readings of every layer are the layered model's activations
    data = load_file(str(folder / "data.safetensors"))
    trace = runner.trace(data["inputs"])
    for i, layer in enumerate(trace[:-1]):
        assert np.allclose(layer, data[f"layers.{i}"], rtol=1e-9, atol=1e-9)
    base, source = X[1, :, 0], X[0, :, 0]
    ones = next(s for s in found if names[s.node] == "ones")
    expected = _more_ones_expected(base, source)
    assert np.abs(_patch(runner, forward, ones.units) - expected).max() < 1e-6
    assert np.abs(runner.trace(X[1:2])[-1][0, :, 0] - expected).max() > 0.5  # the patch changed the outputs
    # `zeros` from the source: the base's count of ones against the source's count of zeros
    zeros = next(s for s in found if names[s.node] == "zeros")
    expected = (np.cumsum(base == 1) > np.cumsum(source == 0)).astype(float)
    assert np.abs(_patch(runner, forward, zeros.units) - expected).max() < 1e-6


@pytest.mark.parametrize("target", ["rnn", "mamba"])
def test_verify_runs_interventions_inside_the_module(tmp_path, target):
    folder, found, *_ = _case(tmp_path, target, "distract")
    result = verify_case(folder)
    assert result["module"]["interventions"] == result["interventions"] > 0
    assert result["module"]["iia"] == 1.0 and result["module"]["sites_not_held"] == 0


@pytest.mark.parametrize("target", ["lstm", "mamba"])
def test_a_mixed_model_beyond_float64_is_refused_with_a_message(tmp_path, target):
    # mixing tok2tok's state layers leaves the range analysis bounds beyond float64's range
    program = next(p for p in example_programs("tok2tok*.lsrl") if p["name"] == "tok2tok_capitals_mul")
    spec = case_specs([program], [target], ["mix"], 2, 0)[0]
    error = build_case(spec, str(tmp_path / "case"))["error"]
    assert "beyond float64's range" in error and "Error" not in error


def test_a_layer_no_mamba_block_holds_alone_is_left_out_inside_the_module(tmp_path):
    # mqar's modulo counter is a state diagonalize looks up over the step: no block holds it
    program = next(p for p in example_programs("mqar.lsrl") if p["name"] == "mqar")
    spec = case_specs([program], ["mamba"], ["none"], 4, 0)[0]
    folder = tmp_path / "case"
    assert build_case(spec, str(folder))["error"] is None
    layers = json.loads((folder / "module.json").read_text())["layers"]
    assert None in layers and any(layer is not None for layer in layers)
    result = verify_case(folder)
    assert result["module"]["sites_not_held"] > 0 and result["module"]["interventions"] > 0
    assert result["iia"] == result["module"]["iia"] == 1.0
