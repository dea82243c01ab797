"""Float rows: the real layers of ``examples/layers/`` (GLA, DeltaNet, a Mamba mixer, an RG-LRU
block, a Mesa layer), with random weights loaded from ``.safetensors`` files.

They are kept apart from ``CASES``, whose every row has an exact reference that the interpreter's
exact mode computes: these programs apply float functions, so exact mode refuses them (at the
source line of the first, ``exact_refusal``), and their truth is an implementation nobody here
wrote (flash-linear-attention's naive recurrences, transformers' Mamba and RecurrentGemma blocks),
which needs torch, fla-core and transformers. ``tests/test_layers.py`` drives them: against those
references on the interpreter and the torch and jax targets, after every pass, through the text
form, and refused at the source line by every other target. Runs hold inputs only (expected
outputs None): the references compute them.
"""

from __future__ import annotations

import random
from fractions import Fraction

from lsrl.corpus.cases_lsrl import NOT_A_CONDITION
from lsrl.corpus.rows import EXAMPLES, Case, Run
from lsrl.ir.graph import Graph

NO_MAP_LAYERS = "(a map layer); torch, jax, mlir and triton can"
REFUSED_BY = {"lstm": NO_MAP_LAYERS, "gru": NO_MAP_LAYERS, "mamba": NO_MAP_LAYERS, "hawk": NO_MAP_LAYERS,
              # (targets without products refuse a product of two real values first)
              "linear-rnn": NOT_A_CONDITION, "rnn": NOT_A_CONDITION}


def _layer(name: str):
    def build() -> Graph:
        from lsrl.load import compile_file

        return compile_file(EXAMPLES / "layers" / f"{name}.lsrl")

    build.__name__ = name
    return build


def _runs(width: int, seed: int) -> list[Run]:
    """Two sequences of 12 tokens of values k/8 in [-2, 2]."""
    rng = random.Random(seed)
    return [Run([[Fraction(rng.randint(-16, 16), 8) for _ in range(width)] for _ in range(12)], [None] * 12)
            for _ in range(2)]


def _row(name: str, width: int, seed: int, exact_refusal: int) -> Case:
    return Case(name, _layer(name), _runs(width, seed), source=f"layers/{name}.lsrl", refused_by=REFUSED_BY,
                float32_default="unproven", exact_refusal=exact_refusal)


FLOAT_CASES: list[Case] = [
    _row("gla", 8, 1, 21),  # decay = exp(-softplus(...))
    _row("deltanet", 8, 2, 21),  # beta = sigmoid(...)
    _row("mamba", 4, 3, 28),  # u = silu(...)
    _row("rglru", 4, 4, 29),  # the tanh GELU's irrational constant sqrt(2 / pi)
    _row("mesa", 8, 5, 27),  # decay = exp(-softplus(...))
]
