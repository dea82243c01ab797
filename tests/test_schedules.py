"""Schedule plans (passes/schedule.py, ir/schedule.py) and the chunk and scan forms of state layers
(ir/forms.py, the plan evaluator ir/plan_eval.py, the torch and jax code).

Over the rationals a chunked or scanned recurrence must give identical numbers to the loop over
time: every table row, several chunk sizes (1, sizes that do not divide the length, sizes longer
than it) and the scan, checked for equality of rationals against the layered model's reference
interpreter and against the row's expected outputs (plain Python). Then float64 within 1e-12
relative, random gated, delta and constant state layers (hypothesis), the generated torch and jax
code of every row that has something to schedule in every form, ``step`` against ``forward``, decays
of 1e-3 per step in float32, and the command line.
"""

from __future__ import annotations

import contextlib
import io
from fractions import Fraction
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lsrl.ir.graph import Label
from lsrl.ir.heads import NO_QUERY
from lsrl.ir.layered import Layer, LayeredModel, UnitLabel
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import exact
from lsrl.ir.plan_eval import run_plan
from lsrl.ir.schedule import CHUNK, LOOPS, RECURRENT, SCAN
from lsrl.passes import lower
from lsrl.passes.schedule import schedule

from lsrl.cli import main
from lsrl.corpus import CASES, Case
from lsrl.corpus.rows import as_fraction, has_float_weights

FORMS = [(CHUNK, 1), (CHUNK, 3), (CHUNK, 4), (CHUNK, 64), (SCAN, 0)]
EXACT_ROWS = [c for c in CASES if not has_float_weights(c.graph())]


@lru_cache(maxsize=None)
def model(name: str) -> LayeredModel:
    row = next(c for c in CASES if c.name == name)
    return lower(row.graph(), row.input_range)


def scheduled(m: LayeredModel) -> bool:
    """Whether a form changes how the model computes anything (else every form is the recurrent one)."""
    return any(p.kind != "state" or any(s.method in LOOPS for s in p.stages) for p in schedule(m, CHUNK).layers)


SCHEDULED_ROWS = [c for c in CASES if scheduled(model(c.name))]


def exact_inputs(case: Case, run: int) -> list[list[Fraction]]:
    return [[as_fraction(v) for v in token] for token in case.runs[run].inputs]


def identical(got: np.ndarray, want: np.ndarray) -> bool:
    return got.shape == want.shape and all(type(a) is type(b) and a == b for a, b in zip(got.ravel(), want.ravel()))


def test_the_table_has_rows_of_every_scheduled_kind() -> None:
    kinds = {(p.kind, s.method if p.kind == "state" else "") for c in SCHEDULED_ROWS
             for p in schedule(model(c.name), CHUNK).layers for s in (p.stages or [None]) if p.kind != "state" or s.method in LOOPS}
    assert {("gated", ""), ("matrix", ""), ("delta", ""), ("state", "scaled loop"), ("state", "matrix loop")} <= kinds


@pytest.mark.parametrize("case", EXACT_ROWS, ids=lambda c: c.name)
def test_every_form_gives_identical_rationals(case: Case) -> None:
    m = model(case.name)
    forms = FORMS if case in SCHEDULED_ROWS else [(CHUNK, 3)]
    for run in range(min(2, len(case.runs))):
        inputs = exact_inputs(case, run)
        want = m.run(inputs, exact=True)
        expected = case.runs[run].expected
        for form, size in forms:
            got = run_plan(m, schedule(m, form, size or 64), inputs, exact=True)
            assert identical(got, want), f"{case.name} run {run}: {form} {size}"
            for t, row in enumerate(expected):
                if row is not None:
                    assert [as_fraction(v) for v in row] == [Fraction(str(v)) for v in got[0, t]], (case.name, t)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_form_agrees_in_float64(case: Case) -> None:
    m = model(case.name)
    forms = FORMS if case in SCHEDULED_ROWS else [(CHUNK, 3)]
    inputs = [[float(v) for v in token] for token in exact_inputs(case, 0)]
    want = m.run(inputs)
    for form, size in forms:
        got = run_plan(m, schedule(m, form, size or 64), inputs)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * max(1.0, np.abs(want).max(initial=0)))


# --- random layers ------------------------------------------------------------------------------------------
SMALL = [0, 0, 1, -1, Fraction(1, 2), 2]
GATES = [0, 1, Fraction(1, 2), -1, Fraction(-1, 3)]  # exact zeros: resets, no division anywhere


def _matrix(rng: np.random.Generator, rows: int, cols: int, values=SMALL, density: float = 0.5) -> Matrix:
    return Matrix(rows, cols, {(i, j): exact(values[int(rng.integers(len(values)))])
                               for i in range(rows) for j in range(cols) if rng.random() < density})


def _vector(rng: np.random.Generator, n: int, values=SMALL) -> tuple:
    return tuple(exact(values[int(rng.integers(len(values)))]) for _ in range(n))


def random_model(seed: int) -> LayeredModel:
    """Input 2 -> gated layer (3 units) -> matrix layer (one head, a decay per row, 2 keys, 2
    values, emitting its state) -> delta layer (one head, 2 keys, 2 values, emitting its read
    q^T S) -> constant state layer (4 units, random sparse transition): every kind a form
    rewrites, with exact zero gates and decays."""
    rng = np.random.default_rng(seed)

    def labels(name: str, n: int) -> tuple:
        return tuple(UnitLabel(Label(name, i)) for i in range(n))

    def head_layer(kind: str, heads: tuple, operands: int, first: tuple, reads: int) -> Layer:
        """10 units: the head's operands (``first`` their biases' choices, then random), then the
        units it fills (zero rows: the head writes them)."""
        weights = Matrix(10, reads, dict(_matrix(rng, operands, reads, density=0.3).entries))
        bias = (*first, *_vector(rng, operands - len(first)), *(exact(0),) * (10 - operands))
        return Layer(kind, {"W": weights, "b": bias, "heads": heads}, labels(kind, 10))

    gated = Layer("gated", {"W": _matrix(rng, 3, 2), "b": _vector(rng, 3), "W2": _matrix(rng, 3, 2, GATES, 0.3),
                            "b2": _vector(rng, 3, GATES), "init": _vector(rng, 3)}, labels("g", 3))
    # decays 0-1, key 2-3, value 4-5, no query, the state 6-9
    matrix = head_layer("matrix", (0, 2, 2, 2, 4, 2, NO_QUERY, 6), 6, _vector(rng, 2, GATES), 3)
    # alpha 0, beta 1, key 2-3, value 4-5, query 6-7, the read 8-9
    beta = exact([0, Fraction(1, 2), 1][int(rng.integers(3))])
    delta = head_layer("delta", (0, 1, 2, 2, 4, 2, 6, 8), 8, (*_vector(rng, 1, GATES), beta), 10)
    state = Layer("state", {"A": _matrix(rng, 4, 4, [1, 1, Fraction(1, 2), -1, 0], 0.3), "W": _matrix(rng, 4, 10, density=0.3),
                            "b": _vector(rng, 4), "init": _vector(rng, 4)}, labels("s", 4))
    return LayeredModel(2, [gated, matrix, delta, state], [Label("x", 0), Label("x", 1)], [Label("s", i) for i in range(4)])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(1, 13), size=st.integers(1, 6), scan=st.booleans())
def test_random_state_layers_give_identical_rationals(seed: int, length: int, size: int, scan: bool) -> None:
    m = random_model(seed)
    rng = np.random.default_rng(seed + 1)
    inputs = [[exact(SMALL[int(rng.integers(len(SMALL)))]) for _ in range(2)] for _ in range(length)]
    plan = schedule(m, SCAN if scan else CHUNK, size)
    assert identical(run_plan(m, plan, inputs, exact=True), m.run(inputs, exact=True))


# --- the plan -----------------------------------------------------------------------------------------------
def test_auto_chunks_from_the_crossover() -> None:
    from lsrl.backends import get_target

    m = model("mqar_delta")
    crossovers = get_target("torch").crossovers
    assert [p.form for p in schedule(m, "auto", 16, crossovers["delta"] - 1, crossovers).layers if p.kind == "delta"] == [RECURRENT]
    assert [p.form for p in schedule(m, "auto", 16, crossovers["delta"], crossovers).layers if p.kind == "delta"] == [CHUNK]
    assert all(p.form == RECURRENT for p in schedule(m, "auto", 16, 10**6, {}).layers)


def test_the_plan_prints_every_state_layer() -> None:
    text = schedule(model("decay_and_turn"), CHUNK, 5).format()
    assert text.splitlines() == [
        "schedule chunk: 1 state layer",
        "layer 0: state, chunk, C = 5",
        "  unit 0: h_t = a * h_{t-1} + u_t (diagonal part of A) [chunk]",
        "  units 1-2: h_t = A h_{t-1} + v_t; v_t = u_t + A h_{t-1} on unit 0 [chunk]",
    ]


def test_bad_schedules_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown schedule"):
        schedule(model("hold_register"), "parallel")
    with pytest.raises(ValueError, match="at least 1"):
        schedule(model("hold_register"), CHUNK, 0)


# --- generated code -----------------------------------------------------------------------------------------
torch = pytest.importorskip("torch")


def compiled_row(target: str, case: Case, form: str, size: int):
    from lsrl.targets import compile_to

    return compile_to(case.program(), target, case.options(schedule=form, chunk=size, dtype="float64"))


@pytest.mark.parametrize("target", ["torch", "jax"])
@pytest.mark.parametrize("case", SCHEDULED_ROWS, ids=lambda c: c.name)
def test_generated_code_computes_every_row_in_every_form(target: str, case: Case) -> None:
    pytest.importorskip(target)
    from lsrl.targets import run_compiled

    references = case.references()
    for form, size in FORMS if target == "torch" else [(CHUNK, 3), (SCAN, 0)]:
        built = compiled_row(target, case, form, size or 64)
        assert built.config["schedule"]["requested"] == form
        for inputs, want in references:
            got = run_compiled(built, inputs, "float64")[0]
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * max(1.0, np.abs(want).max(initial=0)),
                                       err_msg=f"{target} {case.name} {form} {size}")


@pytest.mark.parametrize("form", [CHUNK, SCAN])
def test_step_agrees_with_forward_in_every_form(form: str) -> None:
    from tests.test_codegen import forward_and_step

    for name in ("hold_register", "mqar_delta", "decay_and_turn"):
        case = next(c for c in CASES if c.name == name)
        inputs = np.array([references[0] for references in case.references()[1:]], dtype=np.float64)
        full, steps = forward_and_step(compiled_row("torch", case, form, 5), "float64", inputs)
        np.testing.assert_allclose(steps, full, rtol=1e-12, atol=1e-12)


def gated_decays() -> tuple[LayeredModel, np.ndarray, np.ndarray]:
    """A gated layer h_t = x0_t * h_{t-1} + x1_t with decays between 1e-3 and 1e-2 every step, and its
    float64 loop over time."""
    units = (UnitLabel(Label("h", 0)),)
    layer = Layer("gated", {"W": Matrix(1, 2, {(0, 1): exact(1)}), "b": (exact(0),), "W2": Matrix(1, 2, {(0, 0): exact(1)}),
                            "b2": (exact(0),), "init": (exact(1),)}, units)
    m = LayeredModel(2, [layer], [Label("x", 0), Label("x", 1)], [Label("h", 0)])
    rng = np.random.default_rng(3)
    x = np.stack([10 ** rng.uniform(-3, -2, (4, 500)), rng.uniform(0.5, 1.0, (4, 500))], axis=-1)
    h, want = np.ones(4), []
    for t in range(500):
        h = x[:, t, 0] * h + x[:, t, 1]
        want.append(h)
    return m, x, np.stack(want, axis=1)[..., None]


@pytest.mark.parametrize("form", [CHUNK, SCAN])
def test_decays_of_a_thousandth_per_step_keep_float32_accurate(form: str) -> None:
    """Products of 64 decays of 1e-3 underflow float32 (1e-192): no form divides by them, so the
    float32 result stays within a few float32 roundings of float64 (a log-decay form taking
    exp(-sum log a) from the chunk's start would overflow at the thirteenth step)."""
    from dataclasses import replace

    from lsrl.backends import Options, get_target

    m, x, want = gated_decays()
    target = get_target("torch")
    built = target.build(m, replace(Options(), plan=schedule(m, form, 64)))
    got = target.run(built, x, "float32")
    assert np.all(np.isfinite(got))
    assert np.max(np.abs(got - want) / np.abs(want)) < 1e-6


# --- the command line ---------------------------------------------------------------------------------------
def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(argv))
    return status, out.getvalue(), err.getvalue()


def test_lsrl_ir_prints_the_plan() -> None:
    status, out, _ = run_cli("ir", "examples/mqar_delta.lsrl", "--after", "chunk", "--chunk", "16")
    assert status == 0 and "delta, chunk, C = 16" in out
    status, out, _ = run_cli("ir", "examples/gated/hold_register.lsrl", "--after", "scan")
    assert status == 0 and "gated, scan" in out


def test_lsrl_run_in_every_schedule() -> None:
    tokens = "1 2 3 4 3 5 0 1 3 2"  # the later binding of key 3 wins
    outputs = {run_cli("run", "examples/mqar_delta.lsrl", "--backend", backend, "--input", tokens, "--schedule", form,
                       "--chunk", "3", *extra)[1]
               for backend, extra in [("layers", ["--exact"]), ("torch", ["--dtype", "float64"]), ("jax", ["--dtype", "float64"])]
               for form in ("recurrent", "chunk", "scan")}
    assert {" ".join(text.split()) for text in outputs} == {"0 0 0 0 0 0 0 2 5 0"} | {"0.0 0.0 0.0 0.0 0.0 0.0 0.0 2.0 5.0 0.0"}


def test_schedules_are_refused_where_they_do_not_apply() -> None:
    status, _, err = run_cli("run", "examples/more_ones.lsrl", "--input", "1 0", "--schedule", "chunk")
    assert status == 1 and "--schedule applies to" in err
    status, _, err = run_cli("run", "examples/more_ones.lsrl", "--input", "1 0", "--backend", "rnn", "--schedule", "scan")
    assert status == 1 and "target 'rnn' has no --schedule scan" in err


@pytest.mark.parametrize("name", ["gla", "deltanet", "mamba", "rglru", "mesa"])
def test_the_real_layers_agree_in_every_form(name: str) -> None:
    """examples/layers (float weights, no exact reference): the chunked and scanned torch code
    against the float64 interpreter, within 1e-12 of max(1, |y|)."""
    from pathlib import Path

    from lsrl.backends import Options
    from lsrl.ir.interpret import run

    from lsrl.load import compile_file
    from lsrl.targets import compile_to, run_compiled

    graph = compile_file(Path(__file__).resolve().parents[1] / "examples" / "layers" / f"{name}.lsrl")
    x = np.random.default_rng(0).standard_normal((2, 37, graph.input.dim))
    want = run(graph, x)
    for form, size in [(CHUNK, 5), (SCAN, 0)]:
        got = run_compiled(compile_to(graph, "torch", Options(schedule=form, chunk=size or 64, dtype="float64")), x,
                           "float64")
        assert np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want))) < 1e-12, (name, form)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(1, 20), sub=st.integers(1, 4), subs=st.integers(1, 3),
       rows=st.sampled_from([1, 3]))
def test_secondary_chunks_give_identical_rationals(seed: int, length: int, sub: int, subs: int, rows: int) -> None:
    """The GLA chunk form with its sub-chunk factorization (``chunk_scores``) against the loop over
    time, exactly: decays per row or one per head, exact zeros among them."""
    from lsrl.ir import forms
    from lsrl.ir.recurrences import matrix, read

    rng = np.random.default_rng(seed)

    def values(shape: tuple, choices=SMALL) -> np.ndarray:
        out = np.empty(shape, dtype=object)
        for index in np.ndindex(shape):
            out[index] = exact(choices[int(rng.integers(len(choices)))])
        return out

    decay, key, value, query = values((2, length, rows), GATES), values((2, length, 3)), values((2, length, 2)), values((2, length, 3))
    want = read(matrix(decay, key, value), query)
    assert identical(forms.matrix_head_chunk(decay, key, value, query, sub * subs, sub), want)
