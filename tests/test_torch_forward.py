"""The torch target's forward (backends/sourced_forward.py, backends/head_code.py): without a tap,
units read where they were computed and the heads' loop in place; with a tap, layer by layer.

The shared table runs every row through the torch target (tests/test_targets.py); here the
picking is checked in torch's spelling on random layouts, and the GLA- and DeltaNet-shaped layers
of benchmarks/gated_layers.py are checked to reach their heads by slices, with the interpreter's
outputs, the same outputs with a tap, and the tap seeing every unit of every layer.
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

torch = pytest.importorskip("torch")

from lsrl.backends.torch_code import TorchSyntax, module  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(layouts())
def test_a_pick_gives_the_units_it_names(layout: tuple[list[Source | None], int | None]) -> None:
    arrays, expected = arrays_and_expected(layout)
    expression = Picks(dict(WIDTHS), TorchSyntax()).pick(*layout)
    tensors = {name: torch.from_numpy(array) for name, array in arrays.items()}
    value = eval(expression, {"torch": torch, **tensors})  # noqa: S307 (an expression the test made)
    np.testing.assert_array_equal(value.numpy(), expected)


def forward_parts(source: str) -> tuple[str, str]:
    """The body of ``forward`` (no tap) and of ``forward_tapped`` in a generated model.py."""
    start, tapped, end = (source.index(name) for name in ("def forward(", "def forward_tapped", "def init_state"))
    return source[start:tapped], source[tapped:end]


@pytest.mark.parametrize("kind", sorted(GATES))
def test_gated_layers_reach_their_heads_by_slices(kind: str) -> None:
    heads, keys = 3, 4
    graph = gated_program(kind, heads, keys)
    compiled = compile_to(graph, "torch")
    forward, tapped = forward_parts(compiled.files["model.py"])
    assert "group_heads(" in forward and "state_heads(" not in forward
    assert not re.search(r"\[\.\.\., \[", forward), "a gather over [batch, time, width] arrays"
    assert "state_heads(" in tapped
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 9, graph.input.dim)) / 2
    if kind != "gla":  # betas in (0, 1), as a sigmoid gives them
        beta = x.reshape(2, 9, heads, -1)[..., 3 * keys]
        x.reshape(2, 9, heads, -1)[..., 3 * keys] = 1 / (1 + np.exp(-beta))
    net = module(compiled, "float64")
    seen: list[tuple[int, int]] = []

    def tap(layer: int, value):
        seen.append((layer, value.shape[-1]))
        return value

    with torch.no_grad():
        got, with_tap = net(torch.from_numpy(x)).numpy(), net(torch.from_numpy(x), tap=tap).numpy()
    np.testing.assert_allclose(got, interpret(graph, x), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(with_tap, got, rtol=1e-12, atol=1e-14)
    assert seen == [(i, layer.b.shape[0]) for i, layer in enumerate(net.layers)]  # every unit of every layer


def test_a_tap_replaces_what_the_next_layer_reads() -> None:
    graph = gated_program("gla", 2, 4)
    net = module(compile_to(graph, "torch"), "float64")
    x = torch.from_numpy(np.random.default_rng(2).standard_normal((1, 5, graph.input.dim)) / 2)
    with torch.no_grad():
        zeroed = net(x, tap=lambda layer, value: torch.zeros_like(value) if layer == 0 else value)
        plain = net(x)
    assert plain.abs().max() > 0
    assert zeroed.abs().max() == 0  # the heads read only layer 0's output: all zeros, so all reads 0
