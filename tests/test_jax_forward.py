"""The jax target's forward (backends/sourced_forward.py): units read where they were computed.

The shared table runs every row through the jax target (tests/test_targets.py); here the picking
itself is checked on random layouts, and the GLA- and DeltaNet-shaped layers of
benchmarks/gated_layers.py (operands carried through a map layer, a scaled query, a constant
alpha) are checked to reach their heads by slices, with the interpreter's outputs.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from lsrl.backends.sourced_forward import Picks, Source
from lsrl.ir.interpret import run as interpret

from lsrl.targets import compile_to
from tests.sourced_layouts import (
    GATES,
    WIDTHS,
    arrays_and_expected,
    gated_program,
    layouts,
)

jax = pytest.importorskip("jax")

from lsrl.backends.jax_code import JaxSyntax, functions  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(layouts())
def test_a_pick_gives_the_units_it_names(layout: tuple[list[Source | None], int | None]) -> None:
    arrays, expected = arrays_and_expected(layout)
    expression = Picks(dict(WIDTHS), JaxSyntax()).pick(*layout)
    # the generated code's own names: jnp for the arrays (numpy computes the same here), np for indices
    value = eval(expression, {"jnp": np, "np": np, **arrays})  # noqa: S307 (an expression the test made)
    np.testing.assert_array_equal(value, expected)


def test_head_major_operands_are_one_slice_and_a_reshape() -> None:
    picks = Picks(dict(WIDTHS), JaxSyntax())
    grid = [Source("a", 4 * h + 1 + i) for h in range(3) for i in range(2)]
    assert picks.pick(grid, 3) == "a.reshape(*x.shape[:-1], 3, 4)[..., 1:3]"
    grid = [Source("a", 3 + 3 * h + i) for h in range(2) for i in range(2)]
    assert picks.pick(grid, 2) == "a[..., 3:9].reshape(*x.shape[:-1], 2, 3)[..., 0:2]"
    assert picks.pick(grid) == "a[..., 3:9].reshape(*x.shape[:-1], 2, 3)[..., 0:2].reshape(*x.shape[:-1], 4)"
    assert picks.pick([Source("a", c) for c in range(2, 8)], 2) == "a[..., 2:8].reshape(*x.shape[:-1], 2, 3)"
    assert picks.pick([Source("b", c) for c in range(5)]) == "b"


@pytest.mark.parametrize("kind", sorted(GATES))
def test_gated_layers_reach_their_heads_by_slices(kind: str) -> None:
    heads, keys = 3, 4
    graph = gated_program(kind, heads, keys)
    compiled = compile_to(graph, "jax")
    source = compiled.files["model.py"]
    forward = source[source.index("def forward"):source.index("def init_state")]
    assert "group_heads(" in forward
    assert not re.search(r"\[\.\.\., np\.array", forward), "a gather over [batch, time, width] arrays"
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 9, graph.input.dim)) / 2
    if kind != "gla":  # betas in (0, 1), as a sigmoid gives them
        beta = x.reshape(2, 9, heads, -1)[..., 3 * keys]
        x.reshape(2, 9, heads, -1)[..., 3 * keys] = 1 / (1 + np.exp(-beta))
    model = functions(compiled, "float64")
    got = np.asarray(jax.jit(model.forward)(model.params, x))
    np.testing.assert_allclose(got, interpret(graph, x), rtol=1e-10, atol=1e-12)
