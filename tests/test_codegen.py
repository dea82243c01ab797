"""The torch and jax code targets (backends/codegen.py, torch_code.py, jax_code.py) on focused cases.

The whole shared table runs on both targets in tests/test_targets.py. Here: the plan of a state
layer, every way ``forward`` computes one, ``step`` against ``forward``, both dtypes, the Python
API, the files ``lsrl compile`` writes, and the generated model.py imported alone in a fresh
Python process that cannot import the compiler. JAX compiles are slow, so the jax cases are few
and each jitted function is compiled once.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import io
import json
from collections import Counter
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from lsrl.backends import Compiled, Options, get_target
from lsrl.ir.interpret import run as interpret
from lsrl.ir.layered import LayeredModel
from lsrl.ir.schedule import (
    COPY,
    FORMS,
    MATRIX_LOOP,
    ROTATION,
    RUNNING_SUM,
    SCALED_LOOP,
    Stage,
)
from lsrl.passes import lower
from lsrl.passes.schedule import plan_state_layer, schedule

from lsrl.cli import main
from lsrl.corpus import Case, as_fraction, case
from tests.standalone import run_alone
from tests.state_layers import every_stage_kind, random_state_model, random_transition

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

from lsrl.backends.jax_code import JaxModel, functions  # noqa: E402
from lsrl.backends.torch_code import module  # noqa: E402

RTOL = {"float64": 1e-9, "float32": 1e-4}


# --- a state layer with every kind of stage ----------------------------------------------------------------
def test_the_plan_uses_every_method_in_dependency_order() -> None:
    assert plan_state_layer(every_stage_kind().layers[0].attrs["A"]) == [
        Stage(COPY, (0, 1), depth=1),
        Stage(ROTATION, (3, 4, 5), cycles=((0, 1, 2),)),
        Stage(RUNNING_SUM, (2,), reads=(1,)),
        Stage(SCALED_LOOP, (6,), reads=(3,)),
        Stage(MATRIX_LOOP, (7, 8), reads=(2,)),
        Stage(COPY, (9,), reads=(7,)),
    ]


def test_the_table_programs_need_no_loop_over_time() -> None:
    """Counters, accumulators, mod counters and delay lines: every state layer of tok2tok and of
    the counters is computed without a loop over time."""
    for name in ("tok2tok_capitals_mul", "counters", "frac_prevs"):
        assert built("torch", name).figures["sequential_loops"] == 0, name
    plans = [plan_state_layer(layer.attrs["A"]) for layer in lower(case("tok2tok_capitals_mul").graph()).layers
             if layer.kind == "state"]
    assert {ROTATION, RUNNING_SUM, COPY} <= {stage.method for plan in plans for stage in plan}
    assert any(stage.depth == 3 for plan in plans for stage in plan)  # the key's shift register


def build(target: str, model: LayeredModel, options: Options = Options(), form: str = "recurrent",
          chunk: int = 4) -> Compiled:
    """The target's build with the model's schedule plan, as the driver hands it over."""
    return get_target(target).build(model, dataclasses.replace(options, plan=schedule(model, form, chunk)))


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("target", ["torch", "jax"])
def test_forward_and_step_compute_every_kind_of_stage(target: str, dtype: str, form: str) -> None:
    model = every_stage_kind()
    inputs = np.random.default_rng(1).integers(-3, 4, (3, 20, 2)).astype(float)
    want = model.run(inputs)
    compiled = build(target, model, form=form, chunk=6)
    forward, stepped = forward_and_step(compiled, dtype, inputs)
    assert_close(forward, want, RTOL[dtype])
    assert_close(stepped, forward, RTOL[dtype])


@pytest.mark.parametrize("form", FORMS)
def test_forward_computes_random_transitions(form: str) -> None:
    """Random sparse transitions (weights 1, 2, -1, 1/2; cycles, chains, self-loops, mixed) against
    the layered model's interpreter: whatever the plan, forward computes the recurrence."""
    rng = np.random.default_rng(5)
    for trial in range(40):
        n = int(rng.integers(1, 12))
        model = random_state_model(rng, n, random_transition(rng, n))
        inputs = rng.integers(-1, 2, (2, 6, 2)).astype(float)
        got = get_target("torch").run(build("torch", model, form=form, chunk=int(rng.integers(1, 8))), inputs, "float64")
        assert_close(got, model.run(inputs), RTOL["float64"])


# --- table programs ------------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def built(target: str, name: str) -> Compiled:
    row = case(name)
    return build(target, lower(row.graph(), row.input_range), row.options())


def table_inputs(row: Case, runs: int = 2) -> np.ndarray:
    """The first runs of a row (cut to the shortest) as one float batch."""
    length = min(len(r.inputs) for r in row.runs[:runs])
    return np.array([[[float(as_fraction(v)) for v in token] for token in r.inputs[:length]] for r in row.runs[:runs]])


def forward_and_step(compiled: Compiled, dtype: str, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outputs of the generated ``forward`` on the whole batch, and of ``step`` token by token."""
    if compiled.target == "torch":
        net = module(compiled, dtype)
        x = torch.tensor(inputs, dtype=getattr(torch, dtype))
        with torch.no_grad():
            full = net(x)
            state, steps = net.init_state(x.shape[0]), []
            for t in range(x.shape[1]):
                y, state = net.step(x[:, t], state)
                steps.append(y)
        assert full.dtype == steps[0].dtype == getattr(torch, dtype)
        return full.double().numpy(), torch.stack(steps, dim=1).double().numpy()
    model = functions(compiled, dtype)

    def stream(params, x):  # step over time inside one jit, as a user streaming tokens would
        def one_token(state, x_t):
            y, state = model.step(params, x_t, state)
            return state, y

        _, ys = jax.lax.scan(one_token, model.init_state(params, x.shape[0]), jnp.swapaxes(x, 0, 1))
        return jnp.swapaxes(ys, 0, 1)

    full, steps = jax.jit(lambda p, x: (model.forward(p, x), stream(p, x)))(model.params, inputs)
    assert full.dtype == steps.dtype == jnp.dtype(dtype)
    return np.asarray(full, dtype=np.float64), np.asarray(steps, dtype=np.float64)


def assert_close(got: np.ndarray, want: np.ndarray, rtol: float) -> None:
    assert got.shape == want.shape
    np.testing.assert_array_less(np.abs(got - want), rtol * np.maximum(1.0, np.abs(want)) + 1e-300)


TORCH_ROWS = ["tok2tok_capitals_mul", "counters", "frac_prevs", "shift_register_5", "continuous_ua_2x1_mul", "dyck1",
              "majority", "hold_register", "moving_average", "mqar", "mqar_delta", "mesa"]
JAX_ROWS = ["counters", "frac_prevs", "dyck1", "moving_average", "mqar", "induction"]  # few and small: each compiles forward and a scan of step


@pytest.mark.parametrize("name", TORCH_ROWS)
def test_torch_step_gives_the_outputs_of_forward(name: str) -> None:
    inputs = table_inputs(case(name))
    for dtype in ("float64", "float32"):
        forward, stepped = forward_and_step(built("torch", name), dtype, inputs)
        assert_close(stepped, forward, RTOL[dtype])


@pytest.mark.parametrize("name", JAX_ROWS)
def test_jax_step_gives_the_outputs_of_forward(name: str) -> None:
    inputs = table_inputs(case(name))
    forward, stepped = forward_and_step(built("jax", name), "float64", inputs)
    assert_close(stepped, forward, RTOL["float64"])
    assert_close(forward, get_target("torch").run(built("torch", name), inputs, "float64"), RTOL["float64"])


def test_dtypes_reach_the_weights() -> None:
    compiled = built("torch", "more_ones")
    for dtype in ("float32", "float64"):
        net = module(compiled, dtype)
        assert isinstance(net, torch.nn.Module)
        assert {p.dtype for p in net.parameters()} == {getattr(torch, dtype)}
        assert not any(p.requires_grad for p in net.parameters())
        assert sum(p.numel() for p in net.parameters()) == compiled.figures["parameters"]
    model = functions(built("jax", "more_ones"), "float32")
    assert isinstance(model, JaxModel)
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(model.params)} == {jnp.dtype("float32")}
    model = functions(built("jax", "more_ones"), "float64")  # turns on jax_enable_x64
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(model.params)} == {jnp.dtype("float64")}


@pytest.mark.parametrize("target", ["torch", "jax"])
def test_run_goes_through_the_generated_source(target: str) -> None:
    """Target.run executes model.py: a change to the source changes what it computes."""
    compiled = built(target, "more_ones")
    source = compiled.files["model.py"]
    ending = "\n    return x\n" if target == "jax" else "\n        return x\n"
    assert source.count(ending) == (1 if target == "jax" else 2)  # torch: forward and forward_tapped
    edited = dataclasses.replace(compiled, files={"model.py": source.replace(ending, ending.replace("x", "x + 1000"))})
    inputs = np.array([[[1.0], [0.0], [1.0]]])
    plain = get_target(target).run(compiled, inputs, "float64")
    np.testing.assert_array_equal(get_target(target).run(edited, inputs, "float64"), plain + 1000)


@pytest.mark.parametrize("target", ["torch", "jax"])
def test_generated_source_is_readable_and_imports_only_its_framework(target: str) -> None:
    compiled = built(target, "tok2tok_capitals_mul")
    source = compiled.files["model.py"]
    tree = ast.parse(source)
    docstring = ast.get_docstring(tree)
    assert f"target {target}" in docstring and "Usage" in docstring and "value[0]" in docstring
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    allowed = {"torch": {"torch", "safetensors", "pathlib"}, "jax": {"jax", "numpy", "safetensors", "pathlib"}}[target]
    assert imported <= allowed, imported
    for i, layer in enumerate(compiled.config["layers"]):
        assert f"# --- layer {i}: {layer['kind']}, {layer['width']} unit" in source
    assert "# mod_counter/state[0..5], query[0..2]" in source  # labels, runs of indices abbreviated
    assert "rotation(" in source and "running_sum(" in source and "delay_lines(" in source
    layers = compiled.config["layers"]
    assert compiled.figures == {
        "layers": len(layers),
        "layer_kinds": Counter(layer["kind"] for layer in layers),
        "max_width": max(layer["width"] for layer in layers),
        "state_units": sum(layer["width"] for layer in layers if layer["kind"] == "state"),
        "parameters": sum(w.size for w in compiled.tensors.values()),
        "sequential_loops": 0,
    }


# --- the command line and the generated files on their own -------------------------------------------------------
def defines(row: Case) -> list[str]:
    return [arg for name, value in row.params.items() for arg in ("-D", f"{name}={value}")]


def run_cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        status = main(list(argv))
    return status, out.getvalue()


STANDALONE = ["counters", "frac_prevs"]  # rotations and running sums; delay lines, gates and relus
TOKENS = 12

# Run in a fresh interpreter (tests/standalone.py), in each output directory: import model.py, then
# print the outputs of forward and of step on the given tokens (float64).
STANDALONE_SCRIPT = '''
results = {{}}
for directory, tokens in json.loads(sys.argv[1]).items():
    os.chdir(directory)
    sys.path.insert(0, directory)
    sys.modules.pop("model", None)
    import model
    sys.path.pop(0)
    if {target!r} == "torch":
        import torch
        net = model.load(".", dtype=torch.float64)
        x = torch.tensor([tokens], dtype=torch.float64)
        with torch.no_grad():
            forward = net(x)[0].tolist()
            state, steps = net.init_state(1), []
            for t in range(len(tokens)):
                y, state = net.step(x[:, t], state)
                steps.append(y[0].tolist())
    else:
        import jax, numpy as np
        params = model.load_params(".", "float64")
        forward = np.asarray(jax.jit(model.forward)(params, np.array([tokens])))[0].tolist()
        state, steps, step = model.init_state(params, 1), [], jax.jit(model.step)
        for token in tokens:
            y, state = step(params, np.array([token]), state)
            steps.append(np.asarray(y)[0].tolist())
    results[directory] = {{"forward": forward, "step": steps}}
print(json.dumps(results))
'''


@pytest.fixture(scope="module")
def compiled_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """``lsrl compile ROW.lsrl --target T -o DIR`` for the standalone rows and both targets."""
    dirs = {}
    for target in ("torch", "jax"):
        for name in STANDALONE:
            row = case(name)
            directory = tmp_path_factory.mktemp(f"{target}-{name}")
            argv = ["compile", str(row.source_path), *defines(row), "--target", target, "-o", str(directory)]
            status, out = run_cli(*argv)
            assert status == 0, out
            dirs[target, name] = directory
    return dirs


@pytest.mark.parametrize("target", ["torch", "jax"])
def test_lsrl_compile_writes_the_model_files(target: str, compiled_dirs: dict) -> None:
    from safetensors.numpy import load_file

    directory = compiled_dirs[target, "counters"]
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "model.py", "model.safetensors"]
    config = json.loads((directory / "config.json").read_text())
    assert config["target"] == target and sorted(config["files"]) == ["config.json", "model.py", "model.safetensors"]
    assert [layer["kind"] for layer in config["layers"]] == ["state", "affine"]
    assert [stage["method"] for stage in config["state_plans"]["0"]] == [RUNNING_SUM, ROTATION]
    weights = load_file(str(directory / "model.safetensors"))
    assert sorted(weights) == ["layers.0.A", "layers.0.W", "layers.0.b", "layers.0.init", "layers.1.W", "layers.1.b"]
    assert {w.dtype for w in weights.values()} == {np.dtype("float64")}


@pytest.mark.parametrize("target", ["torch", "jax"])
def test_generated_model_runs_alone_in_a_fresh_process(target: str, compiled_dirs: dict) -> None:
    jobs, expected = {}, {}
    for name in STANDALONE:
        row = case(name)
        tokens = [[as_fraction(v) for v in token] for token in row.runs[0].inputs[:TOKENS]]
        jobs[str(compiled_dirs[target, name])] = [[float(v) for v in token] for token in tokens]
        expected[str(compiled_dirs[target, name])] = interpret(row.program(), [tokens], exact=True)[0].astype(float)
    outputs_by_directory = run_alone(STANDALONE_SCRIPT.format(target=target), jobs, next(iter(jobs)))
    for directory, outputs in outputs_by_directory.items():
        assert_close(np.array(outputs["forward"]), expected[directory], RTOL["float64"])
        assert_close(np.array(outputs["step"]), expected[directory], RTOL["float64"])


def test_stats_prints_the_target_figures() -> None:
    row = case("counters")
    status, out = run_cli("stats", str(row.source_path), "--target", "torch", "--json")
    assert status == 0
    figures = json.loads(out)
    assert figures["target"] == "torch"
    assert {key: figures[key] for key in ("layers", "max_width", "state_units", "sequential_loops")} == {
        "layers": 2, "max_width": 31, "state_units": 31, "sequential_loops": 0,
    }
    assert figures["parameters"] == sum(w.size for w in built("torch", "counters").tensors.values())
