"""The mlir target (backends/mlir_module.py, backends/mlir_code.py) on focused cases.

The whole shared table runs through IREE in tests/test_targets.py. Here: every method of the plan
of a state layer and random transitions against the layered model's interpreter, ``step`` against
``forward``, long sequences and batches of several calls, the module's text (what it holds,
and that it parses back with the bindings to the same module), both dtypes, ``lsrl compile``,
``lsrl ir --emit mlir``, the runner in a fresh process that cannot import lsrl, and a machine
without IREE. IREE compiles take a second or more each, so the models here are few and each is
compiled once per dtype.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from lsrl.backends import Compiled, Options, get_target
from lsrl.backends.codegen import figures, import_generated
from lsrl.backends.mlir_code import module_source, runner
from lsrl.backends.mlir_module import build_module
from lsrl.backends.mlir_spec import ModelSpec
from lsrl.ir.interpret import run as interpret
from lsrl.ir.layered import Layer, LayeredModel, UnitLabel
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import number
from lsrl.passes import lower
from lsrl.passes.schedule import schedule

from lsrl.cli import main
from lsrl.corpus import as_fraction, case
from lsrl.targets import compile_to, lower_for_target
from tests.standalone import run_alone
from tests.state_layers import every_stage_kind, random_state_model, random_transition

pytest.importorskip("iree.compiler")
pytest.importorskip("iree.runtime")
from iree.compiler import ir  # noqa: E402

RTOL = {"float64": 1e-9, "float32": 1e-4}
ROOT = Path(__file__).resolve().parent.parent


def assert_close(got: np.ndarray, want: np.ndarray, rtol: float) -> None:
    assert got.shape == want.shape
    np.testing.assert_array_less(np.abs(got - want), rtol * np.maximum(1.0, np.abs(want)) + 1e-300)


def forward_and_step(compiled: Compiled, dtype: str, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The generated runner's ``forward`` on the whole batch, and its ``step`` token by token."""
    model = runner(compiled, dtype)
    full = model.forward(inputs)
    state, steps = model.init_state(inputs.shape[0]), []
    for t in range(inputs.shape[1]):
        y, state = model.step(inputs[:, t], state)
        steps.append(y)
    assert full.dtype == steps[0].dtype == np.dtype(dtype)
    return full.astype(np.float64), np.stack(steps, axis=1).astype(np.float64)


def with_readout(model: LayeredModel) -> LayeredModel:
    """The model with an affine layer that copies its output, so that the state layer is not the
    last one and is padded to a multiple of 8 units in the module."""
    width = model.d_out
    identity = Matrix(width, width, {(i, i): 1 for i in range(width)})
    units = tuple(UnitLabel(label) for label in model.output_labels)
    readout = Layer("affine", {"W": identity, "b": tuple(number(0) for _ in range(width))}, units)
    return LayeredModel(model.d_in, [*model.layers, readout], model.input_labels, model.output_labels)


# --- state layers ---------------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def every_stage_compiled() -> tuple[LayeredModel, Compiled]:
    model = with_readout(every_stage_kind())
    return model, get_target("mlir").build(model, Options(plan=schedule(model)))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_forward_and_step_compute_every_kind_of_stage(dtype: str) -> None:
    """A delay line, a running sum and a decay reading earlier stages, a rotation, a matrix loop:
    the stage-by-stage path, its loops over time (scf.for) and step, against the interpreter."""
    model, compiled = every_stage_compiled()
    assert "scf.for" in compiled.files["model.mlir"]
    inputs = np.random.default_rng(1).integers(-3, 4, (3, 20, 2)).astype(float)
    forward, stepped = forward_and_step(compiled, dtype, inputs)
    assert_close(forward, model.run(inputs), RTOL[dtype])
    assert_close(stepped, forward, RTOL[dtype])


@pytest.mark.slow
def test_forward_computes_random_transitions() -> None:
    """40 random sparse transitions (weights 1, 2, -1, 1/2: cycles, chains, self-loops, mixed) as the
    blocks of one state layer, against the layered model's interpreter in float64: whatever the
    plan, the module computes the recurrence."""
    rng = np.random.default_rng(5)
    entries, units = {}, 0
    for _ in range(40):
        n = int(rng.integers(1, 12))
        entries.update(random_transition(rng, n, units))
        units += n
    model = with_readout(random_state_model(rng, units, entries))
    inputs = rng.integers(-1, 2, (2, 6, 2)).astype(float)
    got = get_target("mlir").run(get_target("mlir").build(model, Options(dtype="float64", plan=schedule(model))), inputs, "float64")
    assert_close(got, model.run(inputs), RTOL["float64"])


def test_long_sequences_and_batches_of_several_calls() -> None:
    """A running sum and a 3-cycle over 3077 steps, and more sequences than one call of the module
    takes (the runner's chunks), each sequence a workgroup of the loop over time, against the
    interpreter."""
    transition = Matrix(3, 3, {(0, 0): 1, (1, 2): 1, (2, 1): 1})
    rng = np.random.default_rng(2)
    model = with_readout(random_state_model(rng, 3, transition.entries))
    steps = 3077
    inputs = rng.integers(-2, 3, (4, steps, 2)).astype(float)
    compiled = get_target("mlir").build(model, Options(dtype="float64", plan=schedule(model)))
    chunk = import_generated(compiled.files["model.py"]).CHUNK_STEPS
    assert inputs.shape[0] > chunk // steps  # more than one call
    assert_close(get_target("mlir").run(compiled, inputs, "float64"), model.run(inputs), RTOL["float64"])


# --- table programs ----------------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def built(name: str, dtype: str = "float32") -> Compiled:
    """The row compiled as tests/test_targets.py compiles it: the same module text, so that IREE
    compiles it once per process (``compile_vmfb``)."""
    row = case(name)
    return compile_to(row.program(), "mlir", row.options(dtype=dtype))


def table_inputs(name: str) -> np.ndarray:
    """The first two runs of a row (cut to the shorter) as one float batch."""
    runs = case(name).runs[:2]
    length = min(len(r.inputs) for r in runs)
    return np.array([[[float(as_fraction(v)) for v in token] for token in r.inputs[:length]] for r in runs])


@pytest.mark.parametrize("name", [pytest.param("tok2tok_capitals_mul", marks=pytest.mark.slow), "frac_prevs",
                                  pytest.param("continuous_ua_2x1_mul", marks=pytest.mark.slow), "moving_average",
                                  "mqar_delta", pytest.param("mesa", marks=pytest.mark.slow)])
def test_step_gives_the_outputs_of_forward(name: str) -> None:
    inputs = table_inputs(name)
    for dtype in ("float64", "float32"):
        forward, stepped = forward_and_step(built(name), dtype, inputs)
        assert_close(stepped, forward, RTOL[dtype])


def test_the_module_is_built_for_its_dtype_and_run_in_both() -> None:
    """The weights are the same for both dtypes; the module and vmfb are the dtype's, and running
    in the other dtype compiles that dtype's module from the config and the weights."""
    for32, for64 = built("counters"), built("counters", "float64")
    assert for32.config["dtype"] == "float32" and "xf32>" in for32.files["model.mlir"]
    assert for64.config["dtype"] == "float64" and "xf64>" in for64.files["model.mlir"] and "xf32>" not in for64.files["model.mlir"]
    assert for32.tensors.keys() == for64.tensors.keys()
    assert all(np.array_equal(for32.tensors[k], for64.tensors[k]) for k in for32.tensors)
    inputs = table_inputs("counters")
    want = interpret(case("counters").program(), inputs)
    for dtype in ("float32", "float64"):
        assert_close(get_target("mlir").run(for32, inputs, dtype), want, RTOL[dtype])
    assert runner(for32, "float64").forward(inputs).dtype == np.float64


def test_run_goes_through_the_generated_runner() -> None:
    """Target.run executes model.py: a change to the runner changes what it computes."""
    compiled = built("more_ones")
    source = compiled.files["model.py"]
    ending = "return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]\n"
    assert source.count(ending) == 1
    edited_source = source.replace(ending, "return 1000 + (np.concatenate(chunks) if len(chunks) > 1 else chunks[0])\n")
    edited = dataclasses.replace(compiled, files={**compiled.files, "model.py": edited_source})
    inputs = np.array([[[1.0], [0.0], [1.0]]])
    plain = get_target("mlir").run(compiled, inputs, "float32")
    np.testing.assert_array_equal(get_target("mlir").run(edited, inputs, "float32"), plain + 1000)


def test_an_empty_sequence_gives_no_outputs() -> None:
    model = runner(built("more_ones"), "float32")
    assert model.forward(np.zeros((2, 0, 1))).shape == (2, 0, 1)


# --- the module's text -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["tok2tok_capitals_mul", "frac_prevs", "mqar_delta", "mesa", "every stage"])
def test_the_printed_module_parses_back_to_the_same_module(name: str, dtype: str) -> None:
    """model.mlir (its comment header, SSA names from the layers and stages, the weights as
    dense_resource blobs) parses with the bindings, in a fresh context, into a module the verifier
    accepts and that prints as the module built (delta and solve heads too)."""
    if name == "every stage":
        model = every_stage_kind()
    else:
        model = lower_for_target(case(name).program(), get_target("mlir"), case(name).options())[0]
    spec = ModelSpec.of_model(model, schedule(model))
    text = module_source(spec, dtype)
    built_module = build_module(spec, dtype)
    with ir.Context():
        parsed = ir.Module.parse(text)
        assert parsed.operation.verify()
        assert parsed.operation.get_asm() == built_module.operation.get_asm()


def test_the_module_holds_the_functions_and_the_layers() -> None:
    """tok2tok's module as lsrl ir --emit mlir prints it (the text compile writes, without IREE)."""
    row = case("tok2tok_capitals_mul")
    status, text, _ = run_cli("ir", str(row.source_path), "--emit", "mlir",
                              *(f"-D{key}={value}" for key, value in row.params.items()))
    model, _, _ = lower_for_target(row.program(), get_target("mlir"), row.options())
    assert status == 0
    assert text.startswith("// A program compiled by lsrl (target mlir), in float32")
    assert f"func.func public @forward(%arg0: tensor<?x?x1xf32>) -> tensor<?x?x{model.d_out}xf32>" in text
    assert "func.func public @step(%arg0: tensor<?x1xf32>" in text and "func.func public @init_state(%arg0: index)" in text
    for i, layer in enumerate(model.layers):
        assert f"// layer {i}: {layer.kind}, {layer.width} unit" in text
        assert f"dense_resource<layers.{i}.W" in text
    assert text.count("linalg.matmul") >= len(model.layers)
    assert "linalg.generic" in text and "%layer0" in text
    # tok2tok's running sums: loops over time, each inside one dispatch (none on IREE's host side)
    assert text.count("scf.for %") == text.count("flow.dispatch.region") >= 1
    assert figures(model, schedule(model))["sequential_loops"] == 0


def test_the_weights_are_blobs_of_the_float64_weights_cast_to_the_dtype() -> None:
    """What the rounding analysis assumes: each weight rounded once, from float64 to the dtype."""
    compiled = built("frac_prevs")
    spec = ModelSpec.of_config(compiled.config, compiled.tensors)
    weight = compiled.tensors["layers.1.W"]  # [width, the padded input of the layer]: pad it too
    padded = spec.padded(8).tensors["layers.1.W"]
    assert np.array_equal(padded[: weight.shape[0], : weight.shape[1]], weight) and not padded[weight.shape[0]:].any()
    for dtype, numpy_dtype in (("float32", np.float32), ("float64", np.float64)):
        blob = re.search(r"^ *layers\.1\.W: \"0x([0-9A-F]+)\"", module_source(spec, dtype), re.MULTILINE)
        data = bytes.fromhex(blob.group(1))[4:]  # after the blob's alignment
        assert data == np.ascontiguousarray(padded, dtype=numpy_dtype).tobytes()


# --- the command line and the files on their own -------------------------------------------------------------------
def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(argv))
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def compiled_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("mlir-counters")
    status, out, err = run_cli("compile", str(case("counters").source_path), "--target", "mlir", "-o", str(directory))
    assert status == 0, err
    return directory


def test_lsrl_compile_writes_the_module_the_vmfb_and_the_runner(compiled_dir: Path) -> None:
    files = ["config.json", "model.mlir", "model.py", "model.safetensors", "model.vmfb"]
    assert sorted(p.name for p in compiled_dir.iterdir()) == files
    config = json.loads((compiled_dir / "config.json").read_text())
    assert config["target"] == "mlir" and sorted(config["files"]) == files
    assert config["iree"]["target_backend"] == "llvm-cpu" and config["state_plans"]
    status, out, _ = run_cli("ir", str(case("counters").source_path), "--emit", "mlir")
    assert status == 0 and out == (compiled_dir / "model.mlir").read_text()


def test_lsrl_ir_emits_the_module_in_either_dtype() -> None:
    source = str(case("more_ones").source_path)
    status, out, _ = run_cli("ir", source, "--emit", "mlir", "--dtype", "float64")
    assert status == 0 and "in float64" in out and "tensor<?x?x1xf64>" in out
    assert run_cli("ir", source, "--dtype", "float64")[0] == 1
    assert run_cli("ir", source, "--emit", "mlir", "--after", "dce")[0] == 1


def test_a_gated_layer_is_a_loop_over_time_in_forward_and_one_product_in_step() -> None:
    """hold_register's gated state: forward and step give what the task says (the register holds
    the value last written), and the module loops over time once, inside one dispatch."""
    compiled = built("hold_register", "float64")
    text = compiled.files["model.mlir"]
    assert text.count("scf.for %") == 1 and text.count("flow.dispatch.region") == 1 and "gated" in text
    tokens = [[1, 1], [0, 0], [0, 1], [1, 0], [0, 1], [1, 1]]  # (write, value)
    held = [1, 1, 1, 0, 0, 1]
    forward, stepped = forward_and_step(compiled, "float64", np.array([tokens], dtype=float))
    np.testing.assert_array_equal(forward[0, :, 0], held)
    np.testing.assert_array_equal(stepped[0, :, 0], held)


def test_a_gated_layer_gives_the_recurrence_at_every_length() -> None:
    """moving_average (a gated layer) in float64 against the layered model's interpreter, for
    lengths from one step on, batches of several sequences (one workgroup each), from random decays
    and values: the loop inside one dispatch computes every step."""
    row = case("moving_average")
    model = lower(row.program(), row.input_range)
    compiled = built("moving_average", "float64")
    rng = np.random.default_rng(3)
    for length in (1, 2, 17, 53):
        inputs = rng.integers(0, 9, (3, length, 2)) / 8
        forward, stepped = forward_and_step(compiled, "float64", inputs)
        assert_close(forward, model.run(inputs), RTOL["float64"])
        assert_close(stepped, forward, RTOL["float64"])


def test_lsrl_run_and_stats_on_the_mlir_backend() -> None:
    source = str(case("more_ones").source_path)
    status, out, _ = run_cli("run", source, "--input", "1 0 0 1 1", "--backend", "mlir", "--dtype", "float64", "--json")
    assert status == 0 and json.loads(out)["outputs"] == [[1.0], [0.0], [0.0], [0.0], [1.0]]
    status, out, _ = run_cli("stats", source, "--target", "mlir", "--json", "--input", "1 0 0 1 1")
    figures = json.loads(out)
    assert status == 0 and figures["target"] == "mlir" and figures["max_error_float64"] == 0.0


# Run in the output directory (tests/standalone.py): import model.py, load model.vmfb and print the
# outputs of forward and of step on the tokens.
STANDALONE_SCRIPT = '''
import numpy as np
sys.path.insert(0, os.getcwd())
import model
net = model.load(".")
x = np.array([json.loads(sys.argv[1])], dtype=float)
state, steps = net.init_state(1), []
for token in x[0]:
    y, state = net.step(token[None], state)
    steps.append(y[0].tolist())
print(json.dumps({"forward": net.forward(x)[0].tolist(), "step": steps}))
'''


def test_the_runner_works_alone_in_a_fresh_process(compiled_dir: Path) -> None:
    """model.py and model.vmfb as written, without lsrl: as a module and as a script (float32, in
    which the counts of the counters row are exact)."""
    row = case("counters")
    tokens = [[as_fraction(v) for v in token] for token in row.runs[0].inputs[:12]]
    want = interpret(row.program(), [tokens], exact=True)[0].astype(float)
    floats = [[float(v) for v in token] for token in tokens]
    outputs = run_alone(STANDALONE_SCRIPT, floats, str(compiled_dir))
    np.testing.assert_array_equal(np.array(outputs["forward"]), want)
    np.testing.assert_array_equal(np.array(outputs["step"]), want)
    done = subprocess.run([sys.executable, "model.py", json.dumps(floats)], cwd=compiled_dir, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(np.array([[float(v) for v in line.split()] for line in done.stdout.splitlines()]), want)


# Compile and print a program's module with IREE's packages unimportable: the user's mistake is
# a one-line error, never a traceback.
NO_IREE = '''
import importlib.abc, sys

class NoIree(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "iree":
            raise ImportError("no " + name)
        return None

sys.meta_path.insert(0, NoIree())
from lsrl.cli import main
sys.exit(main(sys.argv[1:]))
'''


@pytest.mark.parametrize("command", [["compile", "--target", "mlir", "-o", "out"], ["ir", "--emit", "mlir"],
                                     ["run", "--input", "1 0", "--backend", "mlir"]])
def test_without_iree_the_target_says_how_to_install_it(command: list[str], tmp_path: Path) -> None:
    source = str(case("more_ones").source_path)
    argv = [command[0], source, *command[1:]]
    done = subprocess.run([sys.executable, "-c", NO_IREE, *argv], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "lsrl: error: the mlir target needs IREE: pip install 'lsrl[mlir]' (iree-base-compiler and iree-base-runtime)")
    assert "Traceback" not in done.stderr
