"""What the tests of the forward that reads units where they were computed share
(backends/sourced_forward.py; tests/test_jax_forward.py, tests/test_torch_forward.py): random
layouts of units in named arrays, and GLA- and DeltaNet-shaped programs."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from lsrl.backends.sourced_forward import Source

from lsrl.builder import Program, concat, float_function, read

WIDTHS = {"x": 7, "a": 12, "b": 5}


@st.composite
def layouts(draw) -> tuple[list[Source | None], int | None]:
    """Units as blocks: runs up or down an array, zeros, and head-major grids at a stride."""
    sources: list[Source | None] = []
    for _ in range(draw(st.integers(1, 4))):
        array = draw(st.sampled_from(sorted(WIDTHS)))
        width = WIDTHS[array]
        shape = draw(st.sampled_from(["run", "down", "zeros", "grid", "any"]))
        if shape == "zeros":
            sources += [None] * draw(st.integers(1, 3))
        elif shape == "grid":
            stride = draw(st.integers(1, width))
            count = draw(st.integers(1, stride))
            offset = draw(st.integers(0, stride - count))
            blocks = draw(st.integers(1, max(1, width // stride)))
            sources += [Source(array, b * stride + offset + i) for b in range(blocks) for i in range(count)
                        if b * stride + offset + i < width]
        elif shape == "any":  # (short runs: one gather)
            sources += [Source(array, c) for c in draw(st.lists(st.integers(0, width - 1), min_size=1, max_size=40))]
        else:
            first, count = draw(st.integers(0, width - 1)), draw(st.integers(1, width))
            columns = range(first, min(width, first + count)) if shape == "run" else range(first, max(-1, first - count), -1)
            sources += [Source(array, c) for c in columns]
    heads = draw(st.sampled_from([None, *[h for h in (2, 3, 4) if len(sources) % h == 0]]))
    return sources, heads


def arrays_and_expected(layout: tuple[list[Source | None], int | None]) -> tuple[dict, np.ndarray]:
    """Random arrays of WIDTHS ([2, 3, width]) and the values a pick of ``layout`` must give."""
    sources, heads = layout
    rng = np.random.default_rng(0)
    arrays = {name: rng.standard_normal((2, 3, width)) for name, width in WIDTHS.items()}
    expected = np.stack([arrays[s.array][..., s.column] if s else np.zeros((2, 3)) for s in sources], axis=-1)
    return arrays, expected.reshape(2, 3, heads, -1) if heads else expected


GATES = {"gla": "keys", "deltanet": 1, "gated_deltanet": 2}  # gate units per head


def gated_program(kind: str, heads: int, keys: int):
    """Per head, from the input: q, k, v and the gates (GLA: keys log decays; DeltaNet: beta;
    gated DeltaNet: beta and alpha's logit); reads of the state with the query scaled, as
    benchmarks/gated_layers.py builds them."""
    per_head = 3 * keys + (keys if kind == "gla" else GATES[kind])
    p = Program()
    x = p.input(heads * per_head)
    reads = []
    for h in range(heads):
        q, k, v = (x[h * per_head + i * keys:h * per_head + (i + 1) * keys] for i in range(3))
        gate = x[h * per_head + 3 * keys:(h + 1) * per_head]
        if kind == "gla":
            state = p.matrix_state(float_function("exp", gate), k, v)
        elif kind == "deltanet":
            state = p.delta_state(1, gate, k, v)
        else:
            state = p.delta_state(float_function("sigmoid", gate[1:2]), gate[0:1], k, v)
        reads.append(read(state, q * (1 / keys**0.5)))
    p.output(concat(reads))
    return p.finish()
