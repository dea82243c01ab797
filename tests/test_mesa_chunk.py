"""Mesa's chunk form (``ir.forms.solve_chunk``): the solve over a matrix head's states, the states
accumulated by chunks and solved per step, as ``ir.plan_eval`` runs it for a solve layer after a
chunked matrix layer (``ir.heads.solved_states``).

Over the rationals it must give identical numbers to the loop over time followed by the solve
(``ir.recurrences``): random heads (hypothesis; decays of exactly 0 included, chunk sizes that do
not divide the length), and the ``mesa`` table row through the plan evaluator. In float64 its
conjugate-gradient steps, which never form a state, agree with those on the formed states within
1e-12 relative; and the Mesa layer of examples/layers runs through it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from gmpy2 import mpq
from hypothesis import given, settings
from hypothesis import strategies as st
from lsrl.ir import forms, heads
from lsrl.ir.interpret import run
from lsrl.ir.plan_eval import run_plan
from lsrl.ir.recurrences import matrix, solve
from lsrl.ir.schedule import CHUNK
from lsrl.passes import lower
from lsrl.passes.schedule import schedule

from lsrl.corpus import CASES
from lsrl.load import compile_file

LAYERS = Path(__file__).resolve().parents[1] / "examples" / "layers"
# in [0, 1], as Mesa's: H (decayed sums of k k^T) stays positive semidefinite, so H + diag(shift)
# is positive definite (a negative decay can make it singular); exact zeros: no form may divide by
# a product of decays
DECAYS = [mpq(0), mpq(1), mpq(1, 2), mpq(3, 4), mpq(1, 3)]
SMALL = [mpq(v) for v in (-2, -1, 0, 1, 2)] + [mpq(1, 2)]
SHIFTS = [mpq(1), mpq(1, 2), mpq(3)]  # positive


def draw(data, values, *shape) -> np.ndarray:
    count = int(np.prod(shape))
    return np.array(data.draw(st.lists(st.sampled_from(values), min_size=count, max_size=count)), dtype=object).reshape(shape)


@settings(max_examples=40, deadline=None)
@given(st.data(), st.integers(1, 2), st.integers(1, 9), st.integers(1, 3), st.booleans(), st.integers(1, 5))
def test_the_chunked_solve_gives_identical_rationals(data, batch: int, time: int, n: int, per_row: bool, size: int) -> None:
    decay = draw(data, DECAYS, batch, time, n if per_row else 1)
    key, query = draw(data, SMALL, batch, time, n), draw(data, SMALL, batch, time, n)
    shift = tuple(data.draw(st.lists(st.sampled_from(SHIFTS), min_size=n, max_size=n)))
    want = solve(matrix(decay, key, key), query, shift, 0)  # H = sum of decayed k k^T, as Mesa's
    got = forms.solve_chunk(decay, key, key, query, shift, 0, size)
    assert got.shape == want.shape and all(type(a) is type(b) and a == b for a, b in zip(got.ravel(), want.ravel()))


@settings(max_examples=25, deadline=None)
@given(st.data(), st.integers(1, 9), st.integers(1, 4), st.integers(1, 5), st.integers(1, 6))
def test_conjugate_gradient_steps_by_chunks_apply_the_states_without_forming_them(data, time, n, size, steps) -> None:
    floats = np.vectorize(float, otypes=[float])
    decay = floats(draw(data, DECAYS[1:4], 2, time, 1))
    key, query = floats(draw(data, SMALL, 2, time, n)), floats(draw(data, SMALL, 2, time, n))
    shift = tuple(float(v) for v in data.draw(st.lists(st.sampled_from(SHIFTS), min_size=n, max_size=n)))
    want = solve(matrix(decay, key, key), query, shift, steps)
    got = forms.solve_chunk(decay, key, key, query, shift, steps, size)
    assert np.abs(got - want).max() <= 1e-12 * max(1.0, np.abs(want).max())


def mesa_row():
    return next(c for c in CASES if c.name == "mesa")


@lru_cache(maxsize=None)
def mesa_model():
    row = mesa_row()
    return lower(row.graph(), row.input_range)


def test_the_solve_layer_of_mesa_reads_its_matrix_head_by_chunks() -> None:
    m = mesa_model()
    solve_layer = next(i for i, layer in enumerate(m.layers) if layer.kind == "solve")
    before = m.layers[solve_layer - 1]
    found = heads.solved_states(before.kind, before.attrs, m.layers[solve_layer].attrs)
    assert list(found) == [0] and found[0].query == heads.NO_QUERY and found[0].keys == 2
    # a solve layer that reads anything else does not: not after a gated layer, nor over a moved unit
    assert heads.solved_states("gated", before.attrs, m.layers[solve_layer].attrs) == {}


@pytest.mark.parametrize("size", [1, 2, 3, 64])
def test_the_mesa_row_runs_its_chunk_form_and_gives_identical_rationals(size: int, monkeypatch) -> None:
    calls = []
    chunked = forms.solve_chunk
    monkeypatch.setattr(forms, "solve_chunk", lambda *a: calls.append(a[-1]) or chunked(*a))
    m = mesa_model()
    for sequence in mesa_row().runs:
        inputs = [[mpq(str(v)) for v in token] for token in sequence.inputs]
        got = run_plan(m, schedule(m, CHUNK, size), inputs, exact=True)
        assert got.tolist() == m.run(inputs, exact=True).tolist()
        assert [[mpq(str(v)) for v in row] for row in sequence.expected] == got[0].tolist()
    assert calls == [size] * len(mesa_row().runs)


@pytest.mark.parametrize("steps", [0, 3])
def test_the_mesa_layer_runs_its_chunk_form_in_float64(steps: int, monkeypatch) -> None:
    calls = []
    chunked = forms.solve_chunk
    monkeypatch.setattr(forms, "solve_chunk", lambda *a: calls.append(a[-2]) or chunked(*a))
    graph = compile_file(LAYERS / "mesa.lsrl", params={"steps": steps})
    m = lower(graph)
    x = np.random.default_rng(3).standard_normal((2, 11, graph.input.dim))
    want = run(graph, x)
    got = run_plan(m, schedule(m, CHUNK, 4), x)
    assert np.abs(got - want).max() <= 1e-12 * max(1.0, np.abs(want).max())
    assert calls and set(calls) == {steps}  # every head's solve by chunks


# --- the generated code -------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["torch", "jax", "triton"])
def test_generated_code_solves_the_mesa_row_by_chunks(target: str) -> None:
    from lsrl.backends import Options

    import lsrl

    pytest.importorskip(target)
    row = mesa_row()
    for size in (1, 3):
        built = lsrl.compile_to(row.program(), target, row.options(schedule=CHUNK, chunk=size))
        assert "solve_heads_chunk(" in built.files["model.py"]
        for sequence in row.runs:
            x = np.array([[[float(v) for v in token] for token in sequence.inputs]])
            want = np.array([[float(v) for v in token] for token in sequence.expected])
            got = lsrl.run_compiled(built, x, "float64")[0]
            assert np.abs(got - want).max() <= 1e-12 * max(1.0, np.abs(want).max()), (target, size)
    recurrent = lsrl.compile_to(row.program(), target, Options(schedule="recurrent"))
    assert "solve_heads_chunk(" not in recurrent.files["model.py"]


@pytest.mark.parametrize("steps", [0, 3])
@pytest.mark.parametrize("target", ["torch", pytest.param("jax", marks=pytest.mark.slow)])
def test_generated_code_runs_the_mesa_layer_by_chunks(target: str, steps: int) -> None:
    from lsrl.backends import Options

    import lsrl

    pytest.importorskip(target)
    graph = compile_file(LAYERS / "mesa.lsrl", params={"steps": steps})
    x = np.random.default_rng(4).standard_normal((2, 11, graph.input.dim))
    want = run(graph, x)
    built = lsrl.compile_to(graph, target, Options(schedule=CHUNK, chunk=4))
    assert "solve_heads_chunk(" in built.files["model.py"]
    got = lsrl.run_compiled(built, x, "float64")
    assert np.abs(got - want).max() <= 1e-12 * max(1.0, np.abs(want).max())


def test_a_tap_sees_the_states_that_forward_leaves_unformed() -> None:
    """Without a tap the matrix layer leaves Mesa's H out (the next layer solves it by chunks); with
    one it forms H as the recurrent form does, so that what a tap sees is what the labels say."""
    torch = pytest.importorskip("torch")
    from lsrl.backends import Options, torch_code

    import lsrl

    row = mesa_row()
    x = torch.tensor([[[float(v) for v in token] for token in row.runs[1].inputs]], dtype=torch.float64)

    def layer_outputs(schedule: str, tapped: bool):
        built = lsrl.compile_to(row.program(), "torch", Options(schedule=schedule, chunk=3))
        seen = {}

        def tap(index, value):
            seen[index] = value.clone()
            return value

        with torch.no_grad():
            y = torch_code.module(built, "float64")(x, tap if tapped else None)
        return y, seen

    chunked, seen = layer_outputs(CHUNK, True)
    recurrent, seen_recurrent = layer_outputs("recurrent", True)
    assert torch.allclose(seen[0], seen_recurrent[0], rtol=1e-12, atol=1e-12)  # H formed for the tap
    assert torch.allclose(layer_outputs(CHUNK, False)[0], chunked, rtol=1e-12, atol=1e-12)
    assert torch.allclose(chunked, recurrent, rtol=1e-12, atol=1e-12)
    assert seen[0].abs().sum() > 0
