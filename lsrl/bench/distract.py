"""The ``distract`` obfuscation's growth (docs/bench.md, "Obfuscations"): distractor units.

``add_distractors`` grows the compiler's labelled model with the growth morphisms
(``passes.growth``, docs/growth.md): maybe an affine identity layer between two hidden layers
(its units carry the values they copy), then one or two free units in every hidden layer that
growth can widen (free state units in a state layer). A free unit reads what its layer reads
through seeded free weights, and nothing reads it (its readers' weights on it are 0), so it
carries no program value and the model computes the same function exactly. ``obfuscate`` then
permutes the grown layers (kind ``distract``), so the distractors sit among the other units.

The free weights are uniform in [-``FREE_SCALE``, ``FREE_SCALE``], so that a distractor varies
like the units it reads, except the transition among a state layer's free units, which is set to
0 (as free weights, any value keeps the function): a free state unit then reads the layer's input
and the other units' previous values, and is a filter of the inputs that the diagonal targets
(mamba, hawk: transitions with eigenvalues 0 and 1 only) hold too, and that cannot grow without
bound.
"""

from __future__ import annotations

import random

from lsrl.ir.free_weights import Initializer
from lsrl.ir.layered import FREE, Layer, LayeredModel
from lsrl.ir.matrix import Matrix
from lsrl.passes.growth import AddState, InsertIdentity, Widen, grow

FREE_SCALE = 0.5
MAX_DISTRACTORS = 2  # per layer
WIDENED = ("affine", "relu", "gate", "map", "state", "gated")  # layers whose units growth widens freely


def add_distractors(model: LayeredModel, seed: int) -> LayeredModel:
    """``model`` with distractor units (role ``free``) in its hidden layers, deterministic for ``seed``."""
    rng = random.Random(f"distract:{seed}")
    expansions: list = []
    layers = [layer.kind for layer in model.layers]
    if len(layers) > 2 and rng.random() < 0.5:  # an identity layer after a hidden layer, before its reader
        position = rng.randint(1, len(layers) - 1)
        expansions.append(InsertIdentity(position, "affine"))
        layers.insert(position, "affine")
    for i, kind in enumerate(layers[:-1]):
        if kind in WIDENED:
            count = rng.randint(1, MAX_DISTRACTORS)
            expansions.append(AddState(i, count) if kind in ("state", "gated") else Widen(i, count))
    grown = grow(model, expansions, rng.randrange(2**31), Initializer("uniform", FREE_SCALE))
    return LayeredModel(grown.d_in, [_without_free_recurrence(layer) for layer in grown.layers],
                        grown.input_labels, grown.output_labels)


def _without_free_recurrence(layer: Layer) -> Layer:
    """A state layer whose free units do not read each other (or themselves) through ``A``."""
    if layer.kind != "state":
        return layer
    free = {j for j, unit in enumerate(layer.units) if unit.role == FREE}
    a = layer.attrs["A"]
    kept = {(r, c): v for (r, c), v in a.entries.items() if not (r in free and c in free)}
    return Layer(layer.kind, {**layer.attrs, "A": Matrix(a.rows, a.cols, kept)}, layer.units)
