"""The float rows (``lsrl/corpus/cases_layers.py``): the real layers of examples/layers/ against
implementations nobody here wrote: flash-linear-attention's naive recurrences (GLA, DeltaNet, Mesa),
transformers' MambaMixer (its PyTorch path) and RecurrentGemma's recurrent block
(docs/references.md says what each computes); and, as the shared table's rows are, through every
pass, the text form and every target (computed, or refused at the source line).

The references cast to float32 inside (``.float()``; RG-LRU's scan accumulates in float32): for the
float64 comparison those casts are made no-ops (``float64_references``) and RG-LRU's scan is asked
for float64, so that both sides compute the same float64 function, to within 1e-10 relative. The
float32 comparison runs the generated models in float32 against the float64 reference. Mesa's
references also allocate their states with ``torch.zeros`` (the default dtype, set to float64 while
they run), and its conjugate-gradient reference adds 1e-5 to its denominators (taken out of a copy
of its source: ``fla_naive_without_epsilon``).
"""

from __future__ import annotations

import functools
import importlib.util
import types
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from lsrl.backends import TARGET_NAMES  # noqa: E402
from lsrl.ir.equality import graph_differences  # noqa: E402
from lsrl.ir.interpret import NotExactError, run  # noqa: E402
from lsrl.ir.text import parse_graph, print_graph  # noqa: E402
from lsrl.passes import PIPELINE, lower, prepare  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

import lsrl  # noqa: E402
from lsrl.corpus.cases_layers import FLOAT_CASES  # noqa: E402
from lsrl.errors import LsrlError  # noqa: E402

LAYERS = Path(__file__).resolve().parents[1] / "examples" / "layers"
ROWS = {row.name: row for row in FLOAT_CASES}
PASSES_RTOL = 1e-12  # a pass may reassociate float64 sums
FLOAT64_RTOL = 1e-10
FLOAT32_RTOL = 1e-5  # measured: at most 3.6e-6, Mesa's (docs/references.md, benchmarks/layer_precision.py)


@functools.lru_cache(maxsize=None)
def program(name: str):
    return ROWS[name].program()


def weights(name: str) -> dict:
    return load_file(str(LAYERS / f"{name}.safetensors"))


def inputs(name: str) -> np.ndarray:
    """The row's runs as one float64 batch ``[runs, time, width]``."""
    return np.array([[[float(v) for v in token] for token in r.inputs] for r in ROWS[name].runs])


@pytest.fixture
def float64_references(monkeypatch):
    """The references' float32 casts (``tensor.float()``) made no-ops while they run."""
    monkeypatch.setattr(torch.Tensor, "float", lambda self, *args, **kwargs: self)


def fla_naive(package: str):
    """``fla/ops/<package>/naive.py``, loaded by path: importing ``fla.ops`` would import triton."""
    spec = importlib.util.find_spec("fla")
    if spec is None:
        pytest.skip("fla-core is not installed (pip install fla-core)")
    path = Path(spec.submodule_search_locations[0]) / "ops" / package / "naive.py"
    module_spec = importlib.util.spec_from_file_location(f"fla_naive_{package}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def fla_naive_without_epsilon(package: str):
    """``fla_naive(package)`` with the ``+ 1e-5`` that guards its conjugate-gradient denominators
    taken out of the source: a float64 check of the same conjugate-gradient steps (the program's
    ``solve`` divides by the exact denominators, and refuses none: a residual of 0 stops)."""
    path = Path(fla_naive(package).__file__)
    source = path.read_text()
    assert source.count(" + 1e-5)") == 4  # (two in the decoding step, two in the chunked CG)
    module = types.ModuleType(f"fla_naive_{package}_without_epsilon")
    exec(compile(source.replace(" + 1e-5)", ")"), str(path), "exec"), module.__dict__)
    return module


def heads_of(x: torch.Tensor, heads: int) -> torch.Tensor:
    return x.reshape(*x.shape[:2], heads, -1)


def gla_reference(x: np.ndarray) -> np.ndarray:
    w = {k: v.double() for k, v in weights("gla").items()}
    h = torch.from_numpy(x)
    q, k, v = (heads_of(h @ w[f"{p}_proj.weight"].T, 2) for p in "qkv")
    gk = heads_of(torch.nn.functional.logsigmoid(h @ w["gk_proj.weight"].T + w["gk_proj.bias"]) / 16, 2)
    o, _ = fla_naive("gla").naive_recurrent_gla(q, k, v, gk)
    return (o.reshape(*x.shape[:2], -1) @ w["o_proj.weight"].T).numpy()


def deltanet_reference(x: np.ndarray) -> np.ndarray:
    w = {k: v.double() for k, v in weights("deltanet").items()}
    h = torch.from_numpy(x)

    def normalized(t: torch.Tensor) -> torch.Tensor:  # fla's l2norm: t / sqrt(sum t^2 + 1e-6)
        return t / torch.sqrt((t * t).sum(-1, keepdim=True) + 1e-6)

    q, k = (normalized(heads_of(h @ w[f"{p}_proj.weight"].T, 2)).transpose(1, 2) for p in "qk")
    v = heads_of(h @ w["v_proj.weight"].T, 2).transpose(1, 2)
    beta = torch.sigmoid(h @ w["b_proj.weight"].T).transpose(1, 2)  # [B, H, T]
    o, _ = fla_naive("delta_rule").delta_rule_recurrence(q, k, v, beta)  # [B, H, T, V]
    return (o.transpose(1, 2).reshape(*x.shape[:2], -1) @ w["o_proj.weight"].T).numpy()


def mamba_reference(x: np.ndarray) -> np.ndarray:
    transformers = pytest.importorskip("transformers")
    from transformers.models.mamba.modeling_mamba import MambaMixer

    w = weights("mamba")
    inner, state = w["A_log"].shape
    config = transformers.MambaConfig(hidden_size=x.shape[-1], state_size=state, expand=inner // x.shape[-1],
                                      conv_kernel=w["conv1d.weight"].shape[1], time_step_rank=w["dt_proj.weight"].shape[1],
                                      use_bias=False, use_conv_bias=True, hidden_act="silu")
    mixer = MambaMixer(config, layer_idx=0).double().eval()
    mixer.load_state_dict({k: (v[:, None, :] if k == "conv1d.weight" else v).double() for k, v in w.items()})
    with torch.no_grad():
        return mixer(torch.from_numpy(x)).numpy()


def rglru_reference(x: np.ndarray) -> np.ndarray:
    transformers = pytest.importorskip("transformers")
    from transformers.models.recurrent_gemma import (
        modeling_recurrent_gemma as reference,
    )

    w = weights("rglru")
    width, heads = w["rg_lru.recurrent_param"].shape[0], 2
    block = width // heads
    config = transformers.RecurrentGemmaConfig(hidden_size=x.shape[-1], lru_width=width, num_attention_heads=heads,
                                               conv1d_width=w["conv_1d.weight"].shape[1], num_hidden_layers=1,
                                               block_types=["recurrent"], hidden_activation="gelu_pytorch_tanh")
    module = reference.RecurrentGemmaRecurrentBlock(config, layer_idx=0).double().eval()
    shaped = {"conv_1d.weight": (width, 1, -1), "rg_lru.input_gate_weight": (heads, block, block),
              "rg_lru.recurrent_gate_weight": (heads, block, block), "rg_lru.input_gate_bias": (heads, block),
              "rg_lru.recurrent_gate_bias": (heads, block)}
    module.load_state_dict({k: v.reshape(shaped[k]).double() if k in shaped else v.double() for k, v in w.items()})
    lru = module.rg_lru
    lru._rnn_scan = functools.partial(type(lru)._rnn_scan, lru, acc_dtype=torch.float64)  # (float32 by default)
    positions = torch.arange(x.shape[1])[None].expand(x.shape[0], -1)
    with torch.no_grad():
        return module(torch.from_numpy(x), positions, None, use_cache=False)[0].numpy()


def mesa_reference(x: np.ndarray, steps: int = 0, chunk: int = 4) -> np.ndarray:
    """fla's ``naive_mesa_net_exact`` (steps 0) or ``naive_mesa_net_CG`` (``steps`` iterations, by
    chunks of ``chunk`` steps, which must divide the length), its epsilons taken out."""
    w = {k: v.double() for k, v in weights("mesa").items()}
    h = torch.from_numpy(x)

    def normalized(t: torch.Tensor) -> torch.Tensor:  # fla's l2norm: t / sqrt(sum t^2 + 1e-6)
        return t / torch.sqrt((t * t).sum(-1, keepdim=True) + 1e-6)

    q, k = (normalized(heads_of(h @ w[f"{p}_proj.weight"].T, 2)) for p in "qk")
    v = heads_of(h @ w["v_proj.weight"].T, 2)
    g = torch.nn.functional.logsigmoid(h @ w["g_proj.weight"].T + w["g_proj.bias"])  # [B, T, H]: a log decay
    beta = torch.sigmoid(h @ w["b_proj.weight"].T)
    lamb = w["lamb"].reshape(2, -1)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # (it allocates its states with torch.zeros)
    try:
        if steps:
            naive = fla_naive_without_epsilon("mesa_net")
            o, _, _ = naive.naive_mesa_net_CG(q, k, v, g, lamb, beta, chunk, max_CG_iteration=steps)
        else:
            o, _, _ = fla_naive("mesa_net").naive_mesa_net_exact(q, k, v, g, lamb, beta)
    finally:
        torch.set_default_dtype(default)
    return (o.reshape(*x.shape[:2], -1) @ w["o_proj.weight"].T).numpy()


REFERENCES = {"gla": gla_reference, "deltanet": deltanet_reference, "mamba": mamba_reference, "rglru": rglru_reference,
              "mesa": mesa_reference}
NAMES = sorted(REFERENCES)
assert set(NAMES) == set(ROWS)


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    assert got.shape == want.shape
    return float(np.abs(got - want).max() / np.abs(want).max())


@functools.lru_cache(maxsize=None)
def compiled(name: str, target: str):
    built = lsrl.compile_to(program(name), target)
    # the rounding analysis proves nothing of float functions: it says so rather than staying silent
    assert built.config["precision"]["float32"] == "unproven" and built.warnings
    return built


@pytest.mark.parametrize("name", NAMES)
def test_the_interpreter_computes_the_reference_layer(name: str, float64_references) -> None:
    x = inputs(name)
    assert relative_error(run(program(name), x), REFERENCES[name](x)) < FLOAT64_RTOL


# (jax's jit and IREE's compiles: seconds a layer)
@pytest.mark.parametrize("target", ["torch", pytest.param("jax", marks=pytest.mark.slow), pytest.param("mlir", marks=pytest.mark.slow)])
@pytest.mark.parametrize("name", NAMES)
def test_generated_code_computes_the_reference_layer(name: str, target: str, float64_references) -> None:
    for package in {"jax": ["jax"], "mlir": ["iree.compiler", "iree.runtime"]}.get(target, []):
        pytest.importorskip(package)
    x = inputs(name)
    want = REFERENCES[name](x)
    built = compiled(name, target)
    assert relative_error(lsrl.run_compiled(built, x, "float64"), want) < FLOAT64_RTOL
    assert relative_error(lsrl.run_compiled(built, x, "float32"), want) < FLOAT32_RTOL


MESA_STEPS = 3  # conjugate-gradient steps: fewer than the keys (4), so not yet the direct solution


@functools.lru_cache(maxsize=None)
def mesa_by_conjugate_gradient():
    from lsrl.load import compile_file

    return compile_file(LAYERS / "mesa.lsrl", params={"steps": MESA_STEPS})


@pytest.mark.parametrize("target", ["interpreter", "torch", pytest.param("jax", marks=pytest.mark.slow)])
def test_mesa_by_conjugate_gradient_steps_computes_the_reference(target: str, float64_references) -> None:
    x = inputs("mesa")
    want = mesa_reference(x, MESA_STEPS)
    assert relative_error(want, mesa_reference(x)) > 1e-6  # the steps are not the direct solve
    if target == "interpreter":
        assert relative_error(run(mesa_by_conjugate_gradient(), x), want) < FLOAT64_RTOL
        return
    pytest.importorskip(target)
    built = lsrl.compile_to(mesa_by_conjugate_gradient(), target)
    assert relative_error(lsrl.run_compiled(built, x, "float64"), want) < FLOAT64_RTOL
    assert relative_error(lsrl.run_compiled(built, x, "float32"), want) < FLOAT32_RTOL


@pytest.mark.parametrize("name", NAMES)
def test_exact_mode_refuses_a_float_layer_at_the_source_line(name: str) -> None:
    with pytest.raises(NotExactError) as e:
        run(program(name), inputs(name)[:1, :2].tolist(), exact=True)
    assert e.value.loc.file.endswith(f"layers/{name}.lsrl")
    assert e.value.loc.line == ROWS[name].exact_refusal


@pytest.mark.parametrize("name", NAMES)
def test_every_pass_keeps_the_float64_outputs(name: str) -> None:
    x = inputs(name)
    want = run(program(name), x)
    graph = program(name)
    for pass_name, run_pass in PIPELINE:
        graph = run_pass(graph)
        assert relative_error(run(graph, x), want) < PASSES_RTOL, pass_name
    for heads in (True, False):  # the structured matrix heads, and the flat form of other targets
        assert relative_error(run(prepare(program(name), matrix_heads=heads), x), want) < PASSES_RTOL
        assert relative_error(lower(program(name), matrix_heads=heads).run(x), want) < PASSES_RTOL


@pytest.mark.parametrize("name", NAMES)
def test_the_text_form_round_trips(name: str) -> None:
    assert graph_differences(parse_graph(print_graph(program(name))), program(name)) == []


@pytest.mark.parametrize("target", [t for t in TARGET_NAMES if t not in ("torch", "jax", "triton", "mlir")])
@pytest.mark.parametrize("name", NAMES)
def test_other_targets_refuse_a_float_layer_at_the_source_line(name: str, target: str) -> None:
    with pytest.raises(LsrlError) as e:
        lsrl.compile_to(program(name), target)
    assert ROWS[name].refused_by[target] in e.value.message
    assert e.value.loc is not None and e.value.loc.file.endswith(f"layers/{name}.lsrl")


def test_the_weight_files_are_the_generator_output(tmp_path, monkeypatch) -> None:
    """The committed weights are what make_weights.py writes (deterministic)."""
    spec = importlib.util.spec_from_file_location("make_weights", LAYERS / "make_weights.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    monkeypatch.setattr(generator, "HERE", tmp_path)
    generator.main()
    for name in NAMES:
        fresh, committed = load_file(str(tmp_path / f"{name}.safetensors")), weights(name)
        assert fresh.keys() == committed.keys()
        assert all(torch.equal(fresh[k], committed[k]) for k in fresh)
