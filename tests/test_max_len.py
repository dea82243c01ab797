"""Long ``--max-len``: the diagonalize pass computes a state's values without input only until they
repeat, so its lookups cost what their periods cost, not what ``max_len`` does; what would need
all ``max_len`` steps is refused, before the work, at the state's source line."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from lsrl.ir.errors import LsrlError
from lsrl.ir.interpret import run
from lsrl.passes import lower
from lsrl.passes.diagonalize import constant_sequence, decompose_all, diagonalize

import lsrl
from lsrl.corpus import case

ROOT = Path(__file__).resolve().parents[1]
HUGE = 10**9


def _lookup_state(model):
    """The state layer that diagonalize rewrites (its values without input are not affine)."""
    from lsrl.passes.diagonalize import NotDiagonal, decompose_state

    for i, layer in enumerate(model.layers):
        if layer.kind == "state":
            try:
                decompose_state(layer, i)
            except NotDiagonal:
                return layer
    raise AssertionError("no state layer needs a lookup")


def _exact_runs(diagonal, graph, runs) -> None:
    for inputs in runs:
        inputs = [[Fraction(str(v)) for v in token] for token in inputs]
        assert (diagonal.run(inputs, exact=True) == run(graph, inputs, exact=True)).all()


def test_modulo_counters_are_computed_until_they_repeat() -> None:
    from lsrl.passes.diagonalize import GroupSequence

    model = lower(case("counters").graph(), case("counters").input_range, HUGE)
    groups = constant_sequence(_lookup_state(model), HUGE)
    assert all(isinstance(g, GroupSequence) and g.period for g in groups)
    # counters.lsrl: the step counter (its increments repeat at once) and one-hot cycles modulo 2, 3,
    # 5 and 20 (modulo 1 is the constant 0): each group computes one period and a step, no more
    assert [(g.period, len(g.values), [int(d) for d in g.drift]) for g in groups] == [
        (1, 2, [1]), (2, 3, [0] * 2), (3, 4, [0] * 3), (5, 6, [0] * 5), (20, 21, [0] * 20)]


def test_a_huge_max_len_costs_division_layers_only() -> None:
    from lsrl.passes.diagonalize import LOOKUP_LIMIT

    row = case("counters")
    graph = row.graph()
    small = diagonalize(lower(graph, row.input_range, LOOKUP_LIMIT), LOOKUP_LIMIT)
    huge = diagonalize(lower(graph, row.input_range, HUGE), HUGE)
    decompose_all(huge)
    assert max(layer.width for layer in huge.layers) == max(layer.width for layer in small.layers)
    # one more division layer per doubling of max_len
    assert len(huge.layers) - len(small.layers) == (HUGE - 1).bit_length() - (LOOKUP_LIMIT - 1).bit_length()
    _exact_runs(huge, graph, [r.inputs for r in row.runs])


def _kicked() -> lsrl.Program:
    """A state whose values without input are a staircase (a <- b, b <- a + 1: a trend with a
    periodic residual), a flip-flop (y <- 1 - y) and a unit m <- y + w that w kicks once (w starts
    at 5 and is 0 after): not periodic, not affine, and not periodic from its first step."""
    p = lsrl.Program()
    x = p.input(1)
    transition = [[0, 1, 0, 0, 0], [1, 0, 0, 0, 0], [0, 0, -1, 0, 0], [0, 0, 0, 0, 0], [0, 0, 1, 1, 0]]
    state = p.linear_state(x, transition, [[0], [0], [0], [0], [1]], [0, 0, 0, 5, 0], bias=[0, 1, 1, 0, 0], name="kicked")
    p.output(state)
    return p.finish()


def _kicked_by_hand(inputs: list[int]) -> list[list[Fraction]]:
    a, b, y, w, m = 0, 0, 0, 5, 0
    out = []
    for x in inputs:
        a, b, y, w, m = b, a + 1, 1 - y, 0, y + w + x
        out.append([Fraction(v) for v in (a, b, y, w, m)])
    return out


def test_trends_and_first_steps_are_looked_up_exactly_at_a_huge_max_len() -> None:
    from lsrl.passes.diagonalize import LOOKUP_LIMIT

    graph = _kicked()
    diagonal = diagonalize(lower(graph, None, HUGE), HUGE)
    decompose_all(diagonal)
    inputs = [3, 0, -1, 0, 0, 2, 0, 0, 0, 1] * 4
    assert (diagonal.run([[Fraction(v)] for v in inputs], exact=True)[0] == _kicked_by_hand(inputs)).all()
    assert max(layer.width for layer in diagonal.layers) < 40 < LOOKUP_LIMIT


def _halving() -> lsrl.Program:
    p = lsrl.Program()
    x = p.input(1)
    halves = p.state(0, lambda prev: prev * Fraction(1, 2) + 1, name="halves")
    p.output(halves + x)
    return p.finish()


def test_a_lookup_of_every_step_is_refused_above_the_limit() -> None:
    from lsrl.passes.diagonalize import LOOKUP_LIMIT

    graph = _halving()
    with pytest.raises(LsrlError, match=rf"--max-len {10 * LOOKUP_LIMIT} needs a lookup over all .* state 'halves'.*"
                       rf"\(limit {LOOKUP_LIMIT}\)") as refused:
        diagonalize(lower(graph, None, 10 * LOOKUP_LIMIT), 10 * LOOKUP_LIMIT)
    assert refused.value.node is not None
    diagonal = diagonalize(lower(graph, None, 64), 64)  # within the limit: every step is looked up
    _exact_runs(diagonal, graph, [[[0]] * 64])


def test_the_refusal_points_at_the_state(tmp_path, capsys) -> None:
    from lsrl.passes.diagonalize import LOOKUP_LIMIT

    from lsrl.cli import main

    source = tmp_path / "halves.lsrl"
    source.write_text("input x[1]\n\nstate halves[1] = 0 <- halves / 2 + 1\noutput halves + x\n")
    too_long = 10 * LOOKUP_LIMIT
    assert main(["compile", str(source), "--target", "mamba", "--max-len", str(too_long), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{source}:3:1: error: --max-len {too_long} needs a lookup") and f"(limit {LOOKUP_LIMIT})" in err
    assert "state halves[1] = 0 <- halves / 2 + 1\n^" in err


@pytest.mark.parametrize("target", ["mamba", "hawk"])
def test_the_reported_command_runs_in_bounded_time_and_memory(target: str) -> None:
    """The user's report: --max-len 1000000000 on counters aborted after minutes with
    "GNU MP: Cannot allocate memory"; now it compiles and runs within 2 GB and two minutes."""

    # the shell caps the address space (a preexec_fn would fork this process, which may run JAX's threads)
    capped = ["/bin/sh", "-c", f'ulimit -v {2 * 2**20} && exec "$0" "$@"', sys.executable]
    done = subprocess.run(
        [*capped, "-m", "lsrl", "run", "examples/counters.lsrl", "--input", "1 0 1 0 1 1", "--backend", target,
         "--max-len", str(HUGE)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows = [[float(v) for v in line.split()] for line in done.stdout.splitlines()]
    assert rows == [[t, t % 1, t % 2, t % 3, t % 5, t % 20] for t in range(6)]


def test_hawk_float64_refuses_counting_beyond_its_limit_at_the_counter(tmp_path, capsys) -> None:
    from lsrl.backends.hawk import OFFSET_MAX_LEN

    from lsrl.cli import main

    out = str(tmp_path / "out")
    source = "examples/counters.lsrl"
    assert main(["compile", source, "--target", "hawk", "--dtype", "float64", "--max-len", str(HUGE), "-o", out]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{source}:8:1: error: --max-len {HUGE} needs the hawk target's float64 accumulators")
    assert f"(limit {OFFSET_MAX_LEN})" in err and "output counter = counter()\n^" in err
    assert main(["compile", source, "--target", "hawk", "--max-len", str(HUGE), "-o", out]) == 0  # float32: no limit
