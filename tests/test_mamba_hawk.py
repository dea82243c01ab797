"""The diagonalize pass and the ``mamba`` target: exactness, reference parameters, the
cross-check against transformers' MambaMixer, error bounds and the command line.

The ``hawk`` target: its gate constants, reference names, accumulators and the
cross-check against transformers' RecurrentGemma recurrent block and MLP (docs/target-mamba-hawk.md).
"""

from __future__ import annotations

import functools
import json
from fractions import Fraction

import numpy as np
import pytest
from lsrl.backends.target import Options
from lsrl.ir.errors import LsrlError
from lsrl.ir.graph import Label
from lsrl.ir.interpret import run
from lsrl.ir.layered import Layer, UnitLabel
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import ZERO, add, exact, mul
from lsrl.passes import lower
from lsrl.passes.diagonalize import (
    CONV_WIDTH,
    NotDiagonal,
    decompose_all,
    decompose_state,
    diagonalize,
)

import lsrl
from lsrl.corpus import case

torch = pytest.importorskip("torch")
from lsrl.backends.mamba import TARGETS, MambaStack  # noqa: E402  (needs torch)

MAMBA = TARGETS["mamba"]


# --- diagonalize ------------------------------------------------------------------------------------------------
def _evaluate(layer: Layer, inputs: list[list]) -> list[list]:
    """The decomposition of ``layer`` evaluated on exact inputs, step by step (steps from 1)."""
    state = decompose_state(layer)
    total = [ZERO] * layer.attrs["W"].cols
    out = []
    for t in range(1, len(inputs) + 1):
        total = [add(a, b) for a, b in zip(total, inputs[t - 1])]
        value = [add(o, mul(t, s)) for o, s in zip(state.offset, state.slope)]
        for k, tap in enumerate(state.taps):
            if t - k >= 1:
                value = [add(v, w) for v, w in zip(value, tap.apply(inputs[t - k - 1]))]
        for k in range(CONV_WIDTH):
            if t - k >= 1:
                value = [add(v, w) for v, w in zip(value, state.warmup[k])]
        out.append([add(v, w) for v, w in zip(value, state.hold.apply(total))])
    return out


def test_decomposition_is_exact_for_shifts_accumulators_and_constants() -> None:
    # slot 0 accumulates x, slots 1..3 delay it by 1..3 steps, slot 4 delays the accumulator, all
    # with a bias and an init, so offset, slope, warmup, taps and hold are all used
    transition = {(0, 0): 1, (2, 1): 1, (3, 2): 1, (4, 0): 1}
    layer = Layer(
        "state",
        {
            "A": Matrix(5, 5, transition), "W": Matrix(5, 1, {(0, 0): 1, (1, 0): 1}),
            "b": tuple(exact(v) for v in [2, 0, 1, 0, 3]), "init": tuple(exact(v) for v in [1, 5, 0, 7, 0]),
        },
        tuple(UnitLabel(Label("s", i)) for i in range(5)),
    )
    inputs = [[exact(v)] for v in [3, -1, Fraction(1, 2), 4, 0, 2, -5, 1]]
    expected, h = [], list(layer.attrs["init"])
    for x in inputs:
        h = [add(a, add(w, b)) for a, w, b in zip(layer.attrs["A"].apply(h), layer.attrs["W"].apply(x), layer.attrs["b"])]
        expected.append(h)
    assert _evaluate(layer, inputs) == expected
    assert decompose_state(layer).lags == 2  # slot 3 holds x_{t-2}


@pytest.mark.parametrize("name, max_len", [("counters", 60), ("frac_prevs", 20), ("tok2tok_random_2_mul", 90)])
def test_diagonalize_keeps_outputs_exact_up_to_max_len(name: str, max_len: int) -> None:
    row = case(name)
    model = lower(row.graph(), row.input_range, max_len)
    with pytest.raises(NotDiagonal):
        decompose_all(model)
    diagonal = diagonalize(model, max_len)
    decompose_all(diagonal)  # every state layer now holds or forgets
    for r in row.runs:
        inputs = [[Fraction(str(v)) for v in token] for token in r.inputs]
        assert len(inputs) <= max_len
        assert (diagonal.run(inputs, exact=True) == run(row.graph(), inputs, exact=True)).all()


def test_diagonalize_leaves_diagonal_models_alone() -> None:
    model = lower(case("shift_register").graph(), None, 16)
    assert diagonalize(model, 16) is model


def _rotation_of_input() -> lsrl.Program:
    p = lsrl.Program()
    x = p.input(1)
    rotation = p.linear_state(x, [[0, -1], [1, 0]], [[1], [0]], [0, 0], name="spin")
    p.output(rotation)
    return p.finish()


def test_a_rotation_of_the_input_is_refused_with_the_reason() -> None:
    model = lower(_rotation_of_input(), None, 32)
    with pytest.raises(NotDiagonal, match="eigenvalue other than 0 and 1"):
        diagonalize(model, 32)
    with pytest.raises(LsrlError, match="mamba target cannot hold"):
        MAMBA.build(model, Options(max_len=32))


# --- the mamba target -------------------------------------------------------------------------------------------
def _compiled(name: str, max_len: int = 1024):
    row = case(name)
    options = row.options(max_len=max_len)
    return row, MAMBA.build(lower(row.graph(), row.input_range, max_len), options)


def _reference_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    d_model, d_inner, n, r, w = config["d_model"], config["d_inner"], config["d_state"], config["dt_rank"], config["d_conv"]
    return {
        "in_proj.weight": (2 * d_inner, d_model), "in_proj.bias": (2 * d_inner,),
        "conv1d.weight": (d_inner, 1, w), "conv1d.bias": (d_inner,), "x_proj.weight": (r + 2 * n, d_inner),
        "dt_proj.weight": (d_inner, r), "dt_proj.bias": (d_inner,), "A_log": (d_inner, n), "D": (d_inner,),
        "out_proj.weight": (d_model, d_inner), "out_proj.bias": (d_model,),
    }


def test_parameters_have_the_reference_names_and_shapes() -> None:
    _, compiled = _compiled("shift_register_5")
    config = compiled.config
    assert config["d_conv"] == 4 and config["d_inner"] == config["expand"] * config["d_model"]
    expected = {
        f"layers.{i}.mixer.{name}": shape
        for i in range(config["n_layer"]) for name, shape in _reference_shapes(config).items()
    }
    assert {k: v.shape for k, v in compiled.tensors.items()} == expected
    stack = MambaStack(config)
    assert {k: tuple(v.shape) for k, v in stack.state_dict().items()} == expected


def _measured_error(row, compiled, dtype: str) -> float:
    worst = 0.0
    for r in row.runs:
        inputs = [[Fraction(str(v)) for v in token] for token in r.inputs]
        want = run(row.graph(), inputs, exact=True)[0].astype(float)
        got = MAMBA.run(compiled, np.array([[[float(v) for v in t] for t in inputs]]), dtype)[0]
        worst = max(worst, float(np.max(np.abs(got - want))))
    return worst


@pytest.mark.parametrize("name", ["more_ones", "parity", "majority", "tok2tok_random_2_mul"])
def test_integer_programs_are_proved_exact_in_float64(name: str) -> None:
    row, compiled = _compiled(name)
    assert MAMBA.error_bound(compiled, "float64") == 0
    assert _measured_error(row, compiled, "float64") == 0
    assert not compiled.warnings


def test_a_real_valued_program_stays_within_its_bound() -> None:
    row, compiled = _compiled("shift_register_5")
    bound = MAMBA.error_bound(compiled, "float64")
    assert 0 < bound < 1e-9
    assert _measured_error(row, compiled, "float64") <= bound
    assert _measured_error(row, compiled, "float32") <= MAMBA.error_bound(compiled, "float32")


def test_a_counter_lookup_runs_to_max_len() -> None:
    row, compiled = _compiled("counters", max_len=200)
    inputs = np.zeros((1, 200, 1))
    got = MAMBA.run(compiled, inputs, "float64")[0]
    want = [[t] + [t % n for n in (1, 2, 3, 5, 20)] for t in range(200)]
    assert np.abs(got - np.array(want)).max() < 1e-9


# --- cross-check against transformers ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["shift_register_5", "gates"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_block_matches_transformers_mamba_mixer(name: str, dtype: str) -> None:
    transformers = pytest.importorskip("transformers")
    from transformers.models.mamba.modeling_mamba import MambaMixer as ReferenceMixer

    row, compiled = _compiled(name, max_len=64)
    config = compiled.config
    reference_config = transformers.MambaConfig(
        hidden_size=config["d_model"], state_size=config["d_state"], expand=config["expand"],
        conv_kernel=config["d_conv"], time_step_rank=config["dt_rank"], use_bias=True, use_conv_bias=True,
        hidden_act="silu", num_hidden_layers=config["n_layer"],
    )
    torch_dtype = getattr(torch, dtype)
    stack = MambaStack.from_compiled(config, compiled.tensors, torch_dtype)
    inputs = np.array([[[float(Fraction(str(v))) for v in t] for t in row.runs[0].inputs]])
    hidden = torch.nn.functional.pad(torch.as_tensor(inputs, dtype=torch_dtype), (0, config["d_model"] - config["d_in"]))
    with torch.no_grad():
        for i, layer in enumerate(stack.layers):
            reference = ReferenceMixer(reference_config, layer_idx=i).to(torch_dtype).eval()
            prefix = f"layers.{i}.mixer."
            reference.load_state_dict({k[len(prefix):]: torch.as_tensor(v, dtype=torch_dtype) for k, v in compiled.tensors.items() if k.startswith(prefix)})
            ours, theirs = layer["mixer"](hidden), reference(hidden)
            # transformers computes the scan's input in float32 even for float64 modules
            scale = 1.0 + hidden.abs().max().item() + ours.abs().max().item()
            assert (ours - theirs).abs().max().item() <= 1e-6 * scale, f"block {i}"
            hidden = ours


# --- command line -----------------------------------------------------------------------------------------------
def test_compile_and_run_from_the_command_line(tmp_path, capsys) -> None:
    from lsrl.cli import main

    source = "examples/more_ones.lsrl"
    assert main(["compile", source, "--target", "mamba", "-o", str(tmp_path)]) == 0
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["target"] == "mamba" and config["d_conv"] == 4 and (tmp_path / "model.safetensors").exists()
    capsys.readouterr()
    assert main(["run", source, "--input", "1 0 0 1 1", "--backend", "mamba", "--dtype", "float64", "--json"]) == 0
    outputs = json.loads(capsys.readouterr().out)["outputs"]
    assert np.allclose(outputs, [[1], [0], [0], [0], [1]])


def test_hawk_float64_from_the_command_line(tmp_path, capsys) -> None:
    """The report's command: 1000 zero tokens of counters.lsrl on hawk in float64."""
    from lsrl.cli import main

    zeros = tmp_path / "zeros1000.json"
    zeros.write_text(json.dumps([[0]] * 1000))
    source = "examples/counters.lsrl"
    assert main(["run", source, "--input", f"@{zeros}", "--backend", "hawk", "--dtype", "float64"]) == 0
    assert [float(v) for v in capsys.readouterr().out.splitlines()[-1].split()] == [999, 0, 1, 0, 4, 19]
    assert main(["compile", source, "--target", "hawk", "--dtype", "float64", "-o", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "config.json").read_text())["dtype"] == "float64"


# --- the hawk target --------------------------------------------------------------------------------------------
from lsrl.backends import hawk as hawk_module  # noqa: E402
from lsrl.backends.hawk import HawkStack  # noqa: E402

HAWK = hawk_module.TARGETS["hawk"]


def _hawk(name: str, max_len: int = 1024, dtype: str = "float32"):
    row = case(name)
    options = row.options(max_len=max_len, dtype=dtype)
    return row, HAWK.build(lower(row.graph(), row.input_range, max_len), options)


@pytest.mark.parametrize("size", [1, 67])  # torch's scalar and vectorized kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hawk_gate_constants_are_exact(dtype, size: int) -> None:
    def log_a(gate: float, param: float) -> torch.Tensor:  # the reference's order of operations
        g, p = torch.full((size,), gate, dtype=dtype), torch.full((size,), param, dtype=dtype)
        return -8.0 * torch.sigmoid(g) * torch.nn.functional.softplus(p)

    def only(values: torch.Tensor) -> float:
        assert torch.all(values == values[0])
        return values[0].item()

    if dtype == torch.float32:  # the accumulating channel: a = 1, multiplier 2^-12
        accumulate = log_a(hawk_module.GATE_OPEN, hawk_module.ACCUMULATE_PARAM)
        assert only(torch.exp(accumulate)) == 1
        assert only(torch.sqrt(1 - torch.exp(2 * accumulate))) == 2.0**-12 == 1 / hawk_module.ACCUMULATE_SCALE
    else:  # the offset channel: a = 1 - 2^-53, multiplier 2^-26, and a h = h - 1 for h in (2^52, 2^53)
        offset = log_a(hawk_module.GATE_OPEN, hawk_module.OFFSET_PARAM)
        a = only(torch.exp(offset))
        assert a == 1 - 2.0**-53
        assert only(torch.sqrt(1 - torch.exp(2 * offset))) == 2.0**-26 == 1 / hawk_module.OFFSET_GAIN
        h = torch.tensor([2**52 + 1, 2**52 + 2**51 + 12345, 2**53 - 1] * size, dtype=dtype)[:size]
        assert torch.equal(torch.full_like(h, a) * h, h - 1)
    forget = log_a(hawk_module.GATE_OPEN, hawk_module.FORGET_PARAM)
    assert only(torch.exp(forget)) == 0 and only(torch.sqrt(1 - torch.exp(2 * forget))) == 1
    assert only(torch.exp(log_a(hawk_module.GATE_OPEN, hawk_module.HOLD_PARAM))) == 1
    y = torch.tensor([hawk_module.Y_CONSTANT], dtype=dtype)
    assert torch.nn.functional.gelu(y, approximate="tanh").item() == hawk_module.Y_CONSTANT


def test_hawk_parameters_have_the_reference_names() -> None:
    _, compiled = _hawk("shift_register_5")
    stack = HawkStack(compiled.config)
    assert {k: tuple(v.shape) for k, v in stack.state_dict().items()} == {k: v.shape for k, v in compiled.tensors.items()}
    assert "layers.0.temporal_block.rg_lru.recurrent_param" in compiled.tensors
    assert "layers.0.mlp_block.gate_proj.weight" in compiled.tensors


def _accumulator() -> lsrl.Program:
    p = lsrl.Program()
    x = p.input(1)
    total = p.linear_state(x, [[1]], [[1]], [0], name="total")
    p.output(total)
    return p.finish()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_hawk_accumulates_exactly_in_the_dtype_it_was_built_for(dtype: str) -> None:
    max_len = 256
    model = lower(_accumulator(), (exact(-3), exact(3)), max_len)
    compiled = HAWK.build(model, Options((exact(-3), exact(3)), True, max_len, dtype=dtype))
    inputs = np.random.default_rng(0).integers(-3, 4, (2, max_len, 1)).astype(float)
    assert HAWK.error_bound(compiled, dtype) == 0
    assert np.array_equal(HAWK.run(compiled, inputs, dtype), np.cumsum(inputs, axis=1))


def test_hawk_states_a_bound_for_real_valued_accumulators_in_float64() -> None:
    max_len = 256
    model = lower(_accumulator(), (exact(-1), exact(1)), max_len)
    compiled = HAWK.build(model, Options((exact(-1), exact(1)), False, max_len, dtype="float64"))
    inputs = np.random.default_rng(1).uniform(-1, 1, (2, max_len, 1))
    error = np.abs(HAWK.run(compiled, inputs, "float64") - np.cumsum(inputs, axis=1)).max()
    bound = HAWK.error_bound(compiled, "float64")
    # fixed point: h's spacing is 1 and an increment |v| <= 1 is scaled by lam = 2^22 (module docstring)
    assert 0 < error <= bound < max_len * 2.0**-22


def test_hawk_counts_1000_steps_exactly_in_float64() -> None:
    """The report: 1000 zero tokens of counters.lsrl ended with 998.985 0 0.985 0.074 3.985 18.985
    in float64, where float32 was exact."""
    from lsrl.targets import compile_to, run_compiled

    row = case("counters")
    compiled = compile_to(row.program(), "hawk", row.options(dtype="float64"))
    outputs = run_compiled(compiled, np.zeros((1000, 1)), "float64")[0]
    assert HAWK.error_bound(compiled, "float64") == 0 and not compiled.warnings
    assert outputs[-1].tolist() == [999, 999 % 1, 999 % 2, 999 % 3, 999 % 5, 999 % 20]
    assert outputs.tolist() == [[t, t % 1, t % 2, t % 3, t % 5, t % 20] for t in range(1000)]


@pytest.mark.parametrize("name", ["more_ones", "counters", "parity"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_hawk_computes_integer_programs_exactly(name: str, dtype: str) -> None:
    row, compiled = _hawk(name, dtype=dtype)
    assert HAWK.error_bound(compiled, dtype) == 0
    for r in row.runs:
        want = run(row.graph(), [[Fraction(str(v)) for v in t] for t in r.inputs], exact=True)[0].astype(float)
        got = HAWK.run(compiled, np.array([[[float(v) for v in t] for t in r.inputs]]), dtype)[0]
        assert np.array_equal(got, want)


def test_a_hawk_model_runs_only_in_the_dtype_it_was_built_for() -> None:
    from lsrl.diagnostics import render
    from lsrl.errors import UsageError
    from lsrl.targets import run_compiled

    _, compiled = _hawk("more_ones")
    assert compiled.config["dtype"] == "float32" and set(compiled.config["error_bound"]) & {"float32", "float64"} == {"float32"}
    assert HAWK.error_bound(compiled, "float64") == float("inf")
    with pytest.raises(UsageError) as refused:
        run_compiled(compiled, [[1], [0]], "float64")
    message = render(refused.value, {})
    assert message.startswith("lsrl: error: this hawk model was compiled for float32 and is not run in float64")
    assert "--dtype float64" in message
    _, mamba = _compiled("more_ones")  # mamba's weights are the same in both dtypes
    assert mamba.config["dtype"] == "float32"
    assert run_compiled(mamba, [[1], [0]], "float64").tolist() == [[[1], [0]]]


def test_hawk_float64_accumulators_count_at_most_offset_max_len_steps() -> None:
    limit = hawk_module.OFFSET_MAX_LEN
    assert hawk_module.OFFSET_BASE + (limit - 1) * hawk_module.OFFSET_DRIFT + hawk_module.VALUE_ROOM < 2**53
    assert hawk_module.OFFSET_BASE + limit * hawk_module.OFFSET_DRIFT + hawk_module.VALUE_ROOM >= 2**53
    model = lower(_accumulator(), (ZERO, exact(1)), limit + 1)
    with pytest.raises(LsrlError, match=rf"--max-len {limit + 1} needs the hawk target's float64 accumulators.*"
                       rf"\(limit {limit}\)") as refused:
        HAWK.build(model, Options((ZERO, exact(1)), True, limit + 1, dtype="float64"))
    assert refused.value.node is not None
    HAWK.build(model, Options((ZERO, exact(1)), True, limit + 1))  # float32 has no such limit
    HAWK.build(lower(_accumulator(), (ZERO, exact(1)), limit), Options((ZERO, exact(1)), True, limit, dtype="float64"))


def test_hawk_refuses_a_rotation_with_a_location() -> None:
    model = lower(_rotation_of_input(), None, 32)
    with pytest.raises(LsrlError, match="hawk target cannot hold") as caught:
        HAWK.build(model, Options(max_len=32))
    assert caught.value.node is not None


@pytest.mark.parametrize("name", ["counters", "gates"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_block_matches_transformers_recurrent_gemma(name: str, dtype: str, monkeypatch) -> None:
    transformers = pytest.importorskip("transformers")
    from transformers.models.recurrent_gemma import (
        modeling_recurrent_gemma as reference,
    )

    # transformers runs the RG-LRU's scan in float32 even for float64 modules (its ``acc_dtype``),
    # where the float64 weights' offset channels (h near 2^52) lose everything: scan in the dtype
    scan = reference.RecurrentGemmaRglru._rnn_scan
    monkeypatch.setattr(reference.RecurrentGemmaRglru, "_rnn_scan", functools.partialmethod(scan, acc_dtype=getattr(torch, dtype)))
    row, compiled = _hawk(name, max_len=64, dtype=dtype)
    config = compiled.config
    reference_config = transformers.RecurrentGemmaConfig(
        hidden_size=config["hidden_size"], lru_width=config["lru_width"], intermediate_size=config["intermediate_size"],
        num_attention_heads=config["num_attention_heads"], conv1d_width=config["conv1d_width"],
        hidden_activation=config["hidden_activation"], num_hidden_layers=config["num_hidden_layers"],
        block_types=["recurrent"],
    )
    torch_dtype = getattr(torch, dtype)
    stack = HawkStack.from_compiled(config, compiled.tensors, torch_dtype)
    inputs = np.array([[[float(Fraction(str(v))) for v in t] for t in r.inputs] for r in row.runs[:1]])
    hidden = torch.nn.functional.pad(torch.as_tensor(inputs, dtype=torch_dtype), (0, config["hidden_size"] - config["d_in"]))
    positions = torch.arange(hidden.shape[1])[None]
    torch.set_flush_denormal(True)
    try:
        with torch.no_grad():
            for i, layer in enumerate(stack.layers):
                block = reference.RecurrentGemmaRecurrentBlock(reference_config, layer_idx=i).to(torch_dtype).eval()
                mlp = reference.RecurrentGemmaMlp(reference_config).to(torch_dtype).eval()
                for module, part in ((block, "temporal_block"), (mlp, "mlp_block")):
                    prefix = f"layers.{i}.{part}."
                    module.load_state_dict({k[len(prefix):]: torch.as_tensor(v, dtype=torch_dtype)
                                            for k, v in compiled.tensors.items() if k.startswith(prefix)})
                ours = layer["temporal_block"](hidden)
                theirs = block(hidden, positions, None, use_cache=False)[0]
                assert torch.equal(ours, theirs), f"recurrent block {i}"
                hidden = layer["mlp_block"](ours)
                assert torch.equal(hidden, mlp(ours)), f"mlp block {i}"
    finally:
        torch.set_flush_denormal(False)
