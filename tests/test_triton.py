"""The triton target: generated Triton kernels (``kernels.py``) behind the torch target's ``model.py``.

Without a GPU the kernels run in Triton's interpreter (``TRITON_INTERPRET=1``, set by conftest.py).
Checked here: table rows through the generated files in a fresh process without lsrl (forward and
step, recurrent and chunked kernels, float32 and float64) against the exact interpreter; the real
layers (GLA, DeltaNet, Mamba, Mesa) in both kernel forms against fla's naive references and
transformers' Mamba mixer; the chunked kernels against the recurrent ones and a loop over exact
fractions on random dyadic inputs (hypothesis), decays of exactly 0 included; the plan the kernels
compute and its warnings; the command line.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from lsrl.backends import (  # noqa: E402
    Options,
    get_target,
    triton_kernels,  # noqa: E402
)
from lsrl.backends.verdict import output_bounds  # noqa: E402

import lsrl  # noqa: E402
from lsrl.corpus import CASES  # noqa: E402
from lsrl.targets import compile_to  # noqa: E402
from tests.test_cli import ROOT, run_cli  # noqa: E402
from tests.test_layers import (  # noqa: E402, F401
    FLOAT32_RTOL,
    FLOAT64_RTOL,
    REFERENCES,
    float64_references,
    inputs,
    program,
    relative_error,
)

# rows whose state layers call every kernel: gated (hold_register, moving_average), matrix heads
# with a query (mqar) and without (mesa), delta heads (mqar_delta, induction), a constant diagonal
# and a constant matrix loop (decay_and_turn)
KERNEL_ROWS = ("hold_register", "moving_average", "mqar", "mqar_delta", "induction", "mesa", "decay_and_turn")
SCHEDULES = (("recurrent", 64), ("chunk", 3))
FLOAT32_TOLERANCE = 1e-5  # relative, where the stated float32 bound is larger (or none)
FLOAT64_SLACK = 1e-9  # relative: the exact references rounded, rows with irrational weights

RUNNER = textwrap.dedent('''
    import importlib.util, json, sys
    sys.modules["lsrl"] = None  # the generated files must run without lsrl
    import numpy as np, torch
    jobs = json.loads(sys.argv[1])
    for number, (directory, dtype) in enumerate(jobs):
        spec = importlib.util.spec_from_file_location(f"generated_{number}", f"{directory}/model.py")
        generated = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(generated)
        net = generated.load(directory, dtype=getattr(torch, dtype))
        x = torch.from_numpy(np.load(f"{directory}/inputs.npy"))
        with torch.no_grad():
            forward = net(x)
            state, steps = net.init_state(x.shape[0]), []
            for t in range(x.shape[1]):
                y, state = net.step(x[:, t], state)
                steps.append(y)
        np.save(f"{directory}/forward_{dtype}.npy", forward.double().numpy())
        np.save(f"{directory}/step_{dtype}.npy", torch.stack(steps, 1).double().numpy())
''')


def case(name: str):
    return next(c for c in CASES if c.name == name)


@pytest.fixture(scope="module")
def generated_runs(tmp_path_factory) -> dict:
    """Every kernel row in every schedule, written with ``Compiled.write`` and run in one fresh
    process: (row, schedule) -> (compiled, the row's runs, outputs by dtype and interface)."""
    jobs, runs = [], {}
    for name in KERNEL_ROWS:
        row = case(name)
        references = row.references(row.program())
        padded = max(len(inputs) for inputs, _ in references)
        for schedule, chunk in SCHEDULES:
            compiled = compile_to(row.program(), "triton", row.options(schedule=schedule, chunk=chunk))
            directory = tmp_path_factory.mktemp(f"{name}-{schedule}")
            compiled.write(directory)
            # the runs as one batch, each padded at its end (later steps change no earlier output)
            batch = np.zeros((len(references), padded, compiled.config["d_in"]))
            for b, (sequence, _) in enumerate(references):
                batch[b, :len(sequence)] = sequence
            np.save(directory / "inputs.npy", batch)
            jobs += [(str(directory), dtype) for dtype in ("float32", "float64")]
            runs[name, schedule] = (compiled, references, directory)
    subprocess.run([sys.executable, "-c", RUNNER, json.dumps(jobs)], check=True, cwd=tmp_path_factory.getbasetemp())
    return runs


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("schedule", [s for s, _ in SCHEDULES])
@pytest.mark.parametrize("name", KERNEL_ROWS)
def test_generated_files_compute_the_row_without_lsrl(generated_runs, name: str, schedule: str, dtype: str) -> None:
    compiled, references, directory = generated_runs[name, schedule]
    bound = np.array(output_bounds(get_target("triton"), compiled, dtype, compiled.config["d_out"]))
    for interface in ("forward", "step"):
        outputs = np.load(directory / f"{interface}_{dtype}.npy")
        for b, (sequence, want) in enumerate(references):
            got = outputs[b, :len(sequence)]
            scale = np.maximum(1.0, np.abs(want))
            allowed = np.minimum(bound, FLOAT32_TOLERANCE * scale) if dtype == "float32" else bound
            error = np.abs(got - want)
            assert np.all(error <= allowed + FLOAT64_SLACK * scale), (
                f"{name} {schedule} {dtype} {interface} run {b}: largest error {error.max()}")


def test_generated_files_import_no_lsrl() -> None:
    from tests.test_layers import mesa_by_conjugate_gradient

    for compiled in (compile_to(case("mqar").program(), "triton", case("mqar").options(schedule="chunk")),
                     compile_to(mesa_by_conjugate_gradient(), "triton", Options(schedule="chunk", chunk=4))):
        for name in ("model.py", "kernels.py"):
            assert not re.search(r"^\s*(import|from)\s+lsrl", compiled.files[name], re.MULTILINE), name


LAYER_ROWS = [pytest.param(name, schedule, marks=[pytest.mark.slow] if name == "mamba" else [])
              for name in ("gla", "deltanet", "mamba", "mesa") for schedule in ("recurrent", "chunk")]


@pytest.mark.usefixtures("float64_references")
@pytest.mark.parametrize("name, schedule", LAYER_ROWS)
def test_kernels_compute_the_reference_layer(name: str, schedule: str) -> None:
    x = inputs(name)
    want = REFERENCES[name](x)
    built = lsrl.compile_to(program(name), "triton", Options(schedule=schedule, chunk=4))
    # the plan as the kernels run it: GLA's and Mesa's matrix heads, DeltaNet's delta heads, Mamba's gated layer
    forms = {layer["kind"]: layer["form"] for layer in built.config["schedule"]["layers"]}
    assert [form for kind, form in forms.items() if kind != "state"] == [schedule]
    assert relative_error(lsrl.run_compiled(built, x, "float64"), want) < FLOAT64_RTOL
    assert relative_error(lsrl.run_compiled(built, x, "float32"), want) < FLOAT32_RTOL


@pytest.mark.usefixtures("float64_references")
@pytest.mark.parametrize("schedule", ["recurrent", "chunk"])
def test_kernels_compute_mesa_by_conjugate_gradient_steps(schedule: str) -> None:
    """The Mesa layer with -D steps=3 against fla's naive_mesa_net_CG (its 1e-5 taken out): in the
    chunk form, the solve is the kernel solve_chunk_cg (H accumulated by chunks, never formed)."""
    from tests.test_layers import MESA_STEPS, mesa_by_conjugate_gradient, mesa_reference

    x = inputs("mesa")
    want = mesa_reference(x, MESA_STEPS)
    built = lsrl.compile_to(mesa_by_conjugate_gradient(), "triton", Options(schedule=schedule, chunk=4))
    assert ("solve_chunk_cg" in built.files["kernels.py"]) == (schedule == "chunk")
    assert relative_error(lsrl.run_compiled(built, x, "float64"), want) < FLOAT64_RTOL
    assert relative_error(lsrl.run_compiled(built, x, "float32"), want) < FLOAT32_RTOL


def test_a_chunk_plan_without_a_chunked_kernel_runs_recurrent_and_says_so_at_the_source_line() -> None:
    row = case("decay_and_turn")  # a constant state layer: a decay (diagonal) and a turn (a matrix loop)
    compiled = compile_to(row.program(), "triton", row.options(schedule="chunk", chunk=4))
    assert [(layer["form"], layer["chunk"]) for layer in compiled.config["schedule"]["layers"]] == [("recurrent", 0)]
    warning = next(w for w in compiled.warnings if "no chunked Triton kernel" in w.message)
    assert warning.loc is not None and warning.loc.file.endswith("decay_and_turn.lsrl")
    line = (ROOT / "examples" / "schedules" / "decay_and_turn.lsrl").read_text().splitlines()[warning.loc.line - 1]
    assert line.startswith("state r")  # the turning state
    chosen = compile_to(row.program(), "triton", row.options(schedule="auto", max_len=4096))  # auto chose: no warning
    assert not any("no chunked Triton kernel" in w.message for w in chosen.warnings)
    delta = compile_to(case("mqar_delta").program(), "triton", case("mqar_delta").options(schedule="chunk", chunk=4))
    assert [layer["form"] for layer in delta.config["schedule"]["layers"] if layer["kind"] == "delta"] == ["chunk"]
    assert not any("no chunked Triton kernel" in w.message for w in delta.warnings)


def test_kernels_file_names_each_state_layer_and_its_kernel() -> None:
    compiled = compile_to(case("mqar").program(), "triton", case("mqar").options(schedule="chunk", chunk=16))
    header = compiled.files["kernels.py"].split('"""')[1]
    assert re.search(r"layer \d+: matrix, \d+ units, matrix_heads_chunk \(C = 16", header)
    assert "onehot" in header  # the unit labels
    defined = set(re.findall(r"^def (\w+)_kernel\(", compiled.files["kernels.py"], re.MULTILINE))
    assert defined == {"heads_recurrent", "matrix_heads_chunk"}


# --- the kernels themselves, on dyadic numbers that float64 holds exactly ----------------------------------
@lru_cache(maxsize=None)
def kernels():
    """Every kernel and launcher, as a generated kernels.py holds them."""
    import importlib.util
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="lsrl-kernels-"))
    (directory / "kernels.py").write_text(triton_kernels.PRELUDE + "\n\n".join(triton_kernels.KERNELS.values()))
    spec = importlib.util.spec_from_file_location("lsrl_test_kernels", directory / "kernels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DYADIC = st.sampled_from([0.0, 0.25, 0.5, 1.0])  # decays, 0 included: no form may divide by them
SMALL = st.integers(-3, 3).map(float)


def exact_gated(a: np.ndarray, v: np.ndarray, init: np.ndarray) -> np.ndarray:
    out = np.zeros(v.shape)
    for b in range(v.shape[0]):
        h = [Fraction(x) for x in init]
        for t in range(v.shape[1]):
            h = [Fraction(a[b, t, i]) * h[i] + Fraction(v[b, t, i]) for i in range(v.shape[2])]
            out[b, t] = [float(x) for x in h]
    return out


@settings(max_examples=12, deadline=None)
@given(st.data(), st.integers(1, 2), st.integers(1, 11), st.integers(1, 5), st.integers(1, 5))
def test_gated_kernels_are_exact_on_dyadic_numbers(data, batch: int, time: int, width: int, chunk: int) -> None:
    a = np.array(data.draw(st.lists(DYADIC, min_size=batch * time * width, max_size=batch * time * width))).reshape(batch, time, width)
    v = np.array(data.draw(st.lists(SMALL, min_size=batch * time * width, max_size=batch * time * width))).reshape(batch, time, width)
    init = np.array(data.draw(st.lists(SMALL, min_size=width, max_size=width)))
    want = exact_gated(a, v, init)
    tensors = [torch.from_numpy(x) for x in (v, a, init)]
    assert np.array_equal(kernels().gated_recurrence(*tensors).numpy(), want)
    assert np.array_equal(kernels().gated_chunk(*tensors, chunk).numpy(), want)


def exact_matrix_heads(d, k, v, q, s):
    """q_t^T S_t of S_t = diag(d_t) S_{t-1} + k_t v_t^T, over fractions; and the last states."""
    batch, time, heads, keys = k.shape
    out, last = np.zeros((batch, time, heads, v.shape[-1])), np.zeros(s.shape)
    for b in range(batch):
        for h in range(heads):
            S = [[Fraction(x) for x in row] for row in s[b, h]]
            for t in range(time):
                decay = [Fraction(d[b, t, h, i if d.shape[-1] > 1 else 0]) for i in range(keys)]
                S = [[decay[i] * S[i][j] + Fraction(k[b, t, h, i]) * Fraction(v[b, t, h, j]) for j in range(len(S[i]))]
                     for i in range(keys)]
                out[b, t, h] = [float(sum(Fraction(q[b, t, h, i]) * S[i][j] for i in range(keys))) for j in range(len(S[0]))]
            last[b, h] = [[float(x) for x in row] for row in S]
    return out, last


@settings(max_examples=10, deadline=None)
@given(st.data(), st.integers(1, 9), st.integers(1, 2), st.integers(1, 3), st.integers(1, 3), st.booleans(),
       st.integers(1, 4))
def test_matrix_head_kernels_are_exact_on_dyadic_numbers(data, time, heads, keys, values, per_key, chunk) -> None:
    def draw(values_from, *shape):
        count = int(np.prod(shape))
        return np.array(data.draw(st.lists(values_from, min_size=count, max_size=count))).reshape(shape)

    d = draw(DYADIC, 1, time, heads, keys if per_key else 1)
    k, q = draw(SMALL, 1, time, heads, keys), draw(SMALL, 1, time, heads, keys)
    v, s = draw(SMALL, 1, time, heads, values), draw(SMALL, 1, heads, keys, values)
    want, want_last = exact_matrix_heads(d, k, v, q, s)
    parts = tuple(torch.from_numpy(x) for x in (d, k, v))
    for got, last in (kernels().heads_recurrence("matrix", parts, torch.from_numpy(q), torch.from_numpy(s)),
                      kernels().matrix_heads_chunk(parts, torch.from_numpy(q), torch.from_numpy(s), chunk)):
        assert np.array_equal(got.numpy(), want) and np.array_equal(last.numpy(), want_last)


def exact_delta_heads(alpha, beta, k, v, q, s):
    """q_t^T S_t of the delta rule S' = alpha_t S_{t-1}, S_t = S' + k_t (beta_t (v_t - S'^T k_t))^T, over fractions."""
    batch, time, heads, keys = k.shape
    out, last = np.zeros((batch, time, heads, v.shape[-1])), np.zeros(s.shape)
    for b in range(batch):
        for h in range(heads):
            S = [[Fraction(x) for x in row] for row in s[b, h]]
            columns = range(len(S[0]))
            for t in range(time):
                key = [Fraction(x) for x in k[b, t, h]]
                S = [[Fraction(alpha[b, t, h, 0]) * x for x in row] for row in S]
                written = [Fraction(beta[b, t, h, 0]) * (Fraction(v[b, t, h, j]) - sum(key[i] * S[i][j] for i in range(keys)))
                           for j in columns]
                S = [[S[i][j] + key[i] * written[j] for j in columns] for i in range(keys)]
                out[b, t, h] = [float(sum(Fraction(q[b, t, h, i]) * S[i][j] for i in range(keys))) for j in columns]
            last[b, h] = [[float(x) for x in row] for row in S]
    return out, last


@settings(max_examples=8, deadline=None)
@given(st.data(), st.integers(1, 5), st.integers(1, 2), st.integers(1, 3), st.integers(1, 3), st.integers(1, 4))
def test_delta_head_kernels_are_exact_on_dyadic_numbers(data, time, heads, keys, values, chunk) -> None:
    def draw(values_from, *shape):
        count = int(np.prod(shape))
        return np.array(data.draw(st.lists(values_from, min_size=count, max_size=count))).reshape(shape)

    # few bits per step (a half at most), few steps: every value and partial sum within float64's 53 bits
    halves = st.sampled_from([0.0, 0.5, 1.0])
    alpha, beta = draw(halves, 1, time, heads, 1), draw(halves, 1, time, heads, 1)
    k, q = draw(st.sampled_from([-1.0, 0.0, 1.0]), 1, time, heads, keys), draw(SMALL, 1, time, heads, keys)
    v, s = draw(SMALL, 1, time, heads, values), draw(SMALL, 1, heads, keys, values)
    want, want_last = exact_delta_heads(alpha, beta, k, v, q, s)
    parts = tuple(torch.from_numpy(x) for x in (alpha, beta, k, v))
    for got, last in (kernels().heads_recurrence("delta", parts, torch.from_numpy(q), torch.from_numpy(s)),
                      kernels().delta_heads_chunk(parts, torch.from_numpy(q), torch.from_numpy(s), chunk)):
        assert np.array_equal(got.numpy(), want) and np.array_equal(last.numpy(), want_last)


@settings(max_examples=10, deadline=None)
@given(st.data(), st.integers(1, 12), st.integers(1, 5), st.integers(1, 5), st.integers(1, 4))
def test_the_mesa_kernel_takes_the_conjugate_gradient_steps_of_the_formed_states(data, time, n, chunk, steps) -> None:
    """solve_chunk_cg against the same steps on the states formed one step after the other
    (ir.recurrences), float64 within 1e-12: decays of exactly 0 included."""
    from lsrl.ir.recurrences import matrix, solve

    def draw(values_from, *shape):
        count = int(np.prod(shape))
        return np.array(data.draw(st.lists(values_from, min_size=count, max_size=count))).reshape(shape)

    d, k, q = draw(DYADIC, 2, time, 1), draw(SMALL, 2, time, n), draw(SMALL, 2, time, n)
    shift = draw(st.sampled_from([0.5, 1.0, 3.0]), n)
    want = solve(matrix(d, k, k), q, tuple(shift), steps)
    got = kernels().solve_chunk_cg(*(torch.from_numpy(a) for a in (d, k, k, q, shift)), steps, chunk).numpy()
    assert np.abs(got - want).max() <= 1e-12 * max(1.0, np.abs(want).max())


# --- the command line ---------------------------------------------------------------------------------------
def test_compile_and_run_from_the_command_line(tmp_path: Path) -> None:
    program_file = str(ROOT / "examples" / "gated" / "moving_average.lsrl")
    status, out, _ = run_cli("compile", program_file, "--target", "triton", "-o", str(tmp_path))
    assert status == 0 and (tmp_path / "kernels.py").is_file() and (tmp_path / "model.py").is_file()
    tokens = "0.5,3 0.25,1 0,4 1,1 0.75,5"
    runs = {backend: run_cli("run", program_file, "--input", tokens, "--backend", backend, "--json", *dtype)
            for backend, dtype in (("interp", ()), ("triton", ("--dtype", "float64")))}
    assert all(status == 0 for status, _, _ in runs.values())
    want, got = (np.array(json.loads(runs[b][1])["outputs"]) for b in ("interp", "triton"))
    assert np.allclose(got, want, rtol=1e-12, atol=1e-12)


# --- fusion: gated layers read their drive and gate from columns of x ---------------------------------------
@pytest.mark.parametrize("schedule", ["recurrent", "chunk"])
@pytest.mark.parametrize("name", ["moving_average", "mamba"])
def test_fused_gated_layers_compute_what_the_unfused_ones_do(name: str, schedule: str, monkeypatch) -> None:
    from lsrl.backends import codegen, torch_code, triton_code

    graph = program(name) if name == "mamba" else case(name).program()
    fused = compile_to(graph, "triton", Options(schedule=schedule, chunk=3))
    assert re.search(r"^ *x = gated_(recurrence|chunk)\(\(\[", fused.files["model.py"], re.MULTILINE)
    # the same model.py with the drive and gate computed as torch tensors first (the torch target's lines)
    monkeypatch.setattr(triton_code.TritonSyntax, "gated_lines", codegen.Syntax.gated_lines)
    unfused = compile_to(graph, "triton", Options(schedule=schedule, chunk=3))
    assert "fused" not in unfused.files["model.py"] and unfused.files["kernels.py"] == fused.files["kernels.py"]
    x = torch.from_numpy(np.random.default_rng(5).integers(-8, 9, (2, 7, graph.input.dim)) / 8.0)
    for dtype in ("float64", "float32"):
        with torch.no_grad():
            got, want = (torch_code.module(c, dtype)(x) for c in (fused, unfused))
        assert torch.equal(got, want), dtype  # the same operations in the same order: the same numbers
