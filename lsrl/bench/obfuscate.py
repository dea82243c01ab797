"""Obfuscations that keep a layered model's function (docs/bench.md).

Each changes the basis of some layers' outputs: the new units are ``M`` times the old ones, the
layer's own weights are rewritten to compute them, and the layer that reads them gets ``M^-1`` on
its input side, so every output of the model is unchanged (exactly: ``M`` and ``M^-1`` have
integer or power-of-two entries). The basis of every layer is returned with the model, so the
ground truth moves with it: old unit ``j`` is the direction ``M^-1[j, :]`` of the new units.

- ``permute``: a random permutation of every layer's units but the output layer's.
- ``scale``: a random positive power of two per ReLU unit (``relu(c z) = c relu(z)`` for c > 0).
- ``distract``: the units of every hidden layer in a random order, as ``permute``, of a model
  that ``distract.add_distractors`` grew with distractor units (``case.py`` grows it first, so
  that the labels are the grown model's).
- ``mix``: a random unimodular integer matrix (det +-1) on every affine and state layer, whose
  units are linear in what they read (``A -> M A M^-1`` for the recurrence): units mixed in
  random groups of two to four, among those whose values are bounded by ``MIX_BOUND``.

The last layer (the model's outputs) keeps its basis, and so do layers with heads (delta, solve),
whose units have positions the heads depend on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from lsrl.ir.graph import Label
from lsrl.ir.layered import Layer, LayeredModel, UnitLabel
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import exact

OBFUSCATIONS = ("none", "permute", "scale", "mix", "distract")
ROW_VECTORS = ("b", "init")  # per-unit attributes that move with the unit's basis
MIXABLE = ("affine", "state")  # layers whose units are linear in what they read
PERMUTABLE = ("affine", "relu", "gate", "state", "map", "gated")
MIX_BOUND = 2**16


@dataclass
class Basis:
    """New units = ``forward`` @ old units; old units = ``inverse`` @ new units (exact)."""

    forward: Matrix
    inverse: Matrix

    @classmethod
    def identity(cls, width: int) -> "Basis":
        return cls(Matrix.eye(width), Matrix.eye(width))

    @property
    def is_identity(self) -> bool:
        return self.forward.is_identity()

    @property
    def is_monomial(self) -> bool:
        """Each new unit is one old unit, scaled: the basis is still one unit per label."""
        return _monomial(self.forward)


def obfuscate(model: LayeredModel, kind: str, seed: int, bounds: Sequence[Sequence[float]] | None = None
              ) -> tuple[LayeredModel, list[Basis]]:
    """The model with ``kind`` applied (deterministic for ``seed``), and each layer's basis.

    ``bounds`` (per layer, a bound on each unit's magnitude) limits ``mix`` to the units bounded
    by :data:`MIX_BOUND`: a sum of a unit of LSRL's ``1e10`` scale and a small one would lose the
    small one to float64 rounding, and the model would no longer compute the program."""
    if kind not in OBFUSCATIONS:
        raise ValueError(f"unknown obfuscation {kind!r} (obfuscations: {', '.join(OBFUSCATIONS)})")
    rng = random.Random(f"{kind}:{seed}")
    layers = [Layer(l.kind, dict(l.attrs), l.units) for l in model.layers]
    bases = [Basis.identity(l.width) for l in layers]
    for i, layer in enumerate(layers[:-1]):
        small = [j for j in range(layer.width) if bounds is None or bounds[i][j] <= MIX_BOUND]
        basis = _choose(kind, layer, rng, small)
        if basis is None:
            continue
        _rebase_rows(layer, basis)
        _rebase_reader(layers[i + 1], basis.inverse)
        bases[i] = basis
    return LayeredModel(model.d_in, layers, model.input_labels, model.output_labels), bases


def anonymous(model: LayeredModel) -> LayeredModel:
    """The same model with every hidden unit labelled only by its position (``layer{i}[k]``), so
    the files a benchmark hands out carry no ground truth (labels.json does); the output layer
    keeps its labels, the program's outputs."""
    layers = [Layer(l.kind, l.attrs, tuple(UnitLabel(Label(f"layer{i}", k)) for k in range(l.width)))
              for i, l in enumerate(model.layers[:-1])]
    return LayeredModel(model.d_in, [*layers, model.layers[-1]], model.input_labels, model.output_labels)


def _choose(kind: str, layer: Layer, rng: random.Random, small: list[int]) -> Basis | None:
    n = layer.width
    if kind in ("permute", "distract") and layer.kind in PERMUTABLE and n > 1:
        order = list(range(n))
        while order == sorted(order):  # a permutation that moves some unit
            rng.shuffle(order)
        forward = Matrix.selection(n, n, enumerate(order))
        return Basis(forward, Matrix.selection(n, n, [(j, i) for i, j in enumerate(order)]))
    if kind == "scale" and layer.kind == "relu":
        powers = [rng.choice((-2, -1, 1, 2)) for _ in range(n)]
        return Basis(Matrix.diag([exact(2) ** p for p in powers]), Matrix.diag([exact(2) ** -p for p in powers]))
    if kind == "mix" and layer.kind in MIXABLE and len(small) > 1:
        return _unimodular(n, small, rng)
    return None


def _unimodular(n: int, units: list[int], rng: random.Random) -> Basis:
    """A random integer matrix with an integer inverse that mixes ``units`` (the others stay) in
    random groups of two to four: per group a product of row additions (add +-1 times row j to
    row i), two per unit, so entries stay small."""
    forward, inverse = np.eye(n, dtype=np.int64), np.eye(n, dtype=np.int64)
    order = list(units)
    rng.shuffle(order)
    while len(order) > 1:
        size = min(len(order), rng.randint(2, 4))
        group, order = order[:size], order[size:]
        while np.count_nonzero(forward[np.ix_(group, group)]) == len(group):  # until the group is mixed
            for _ in range(2 * len(group)):
                i, j = rng.sample(group, 2)
                sign = rng.choice((-1, 1))
                forward[i] += sign * forward[j]  # E @ forward, E = I + sign e_i e_j^T
                inverse[:, j] -= sign * inverse[:, i]  # inverse @ E^-1
    return Basis(_exact_matrix(forward), _exact_matrix(inverse))


def _exact_matrix(array: np.ndarray) -> Matrix:
    return Matrix(*array.shape, {(i, j): exact(int(v)) for (i, j), v in np.ndenumerate(array) if v})


def _rebase_rows(layer: Layer, basis: Basis) -> None:
    """Make ``layer`` output ``basis.forward`` times its old units. A gate or gated layer's second
    factor (its gate) only follows the permutation: the scale sits on the first factor."""
    m, a = basis.forward, layer.attrs
    follows = Matrix(m.rows, m.cols, {k: 1 for k in m.entries})  # the permutation of a monomial m
    a["W"] = m @ a["W"]
    for name in ROW_VECTORS:
        if name in a:
            a[name] = tuple(m.apply(a[name]))
    if "W2" in a:
        a["W2"], a["b2"] = follows @ a["W2"], tuple(follows.apply(a["b2"]))
    if "A" in a:
        a["A"] = m @ a["A"] @ basis.inverse
    if _monomial(m):  # (mixed units hold no one label: ``anonymous`` relabels every unit)
        order = [j for _, j in sorted(m.entries)]
        layer.units = tuple(layer.units[j] for j in order)
        if "functions" in a:
            a["functions"] = tuple(a["functions"][j] for j in order)


def _rebase_reader(reader: Layer, inverse: Matrix) -> None:
    for name in ("W", "W2"):
        if name in reader.attrs:
            reader.attrs[name] = reader.attrs[name] @ inverse


def _monomial(m: Matrix) -> bool:
    return m.nnz == m.rows and len({j for _, j in m.entries}) == m.rows


def unit_bounds(model: LayeredModel, options) -> list[list[float]]:
    """Per layer, a bound on each unit's magnitude (``backends.layer_ranges``; inf if none)."""
    from lsrl.backends.layer_ranges import layer_bounds

    return [[v.magnitude for v in bounds.values] for bounds in layer_bounds(model, options)]
